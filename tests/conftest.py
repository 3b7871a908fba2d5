"""Shared test signals, synthesised on the fly (no audio files needed).

Every factory returns ``float32`` arrays shaped ``(channels, samples)``, full scale +-1.0,
and is seeded, so a test sees the same signal on every run.

Fixtures
--------
sample_rate : int
    44100 Hz, the rate most tests use.
make_sine(freq_hz, seconds=1.0, amplitude=0.5, sample_rate=44100, channels=2, phase_rad=0.0)
make_noise(seconds=1.0, rms=0.1, sample_rate=44100, channels=2, seed=0)
    White Gaussian noise, independent per channel.
make_pink_noise(seconds=1.0, rms=0.1, sample_rate=44100, channels=2, seed=0)
    Noise with equal power per octave (1/f power spectrum from 20 Hz up).
make_song(seconds=3.0, sample_rate=44100, seed=0)
    A short stereo song of rendered notes (kick, bass, chords, hats; see
    ``tests/multitrack_synth.py``), mixed, DC removed, peaking at -6 dBFS.
write_file(name, samples, sample_rate=44100, subtype="PCM_24") -> Path
    Writes with soundfile directly (independent of automix.audio) into ``tmp_path``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

SAMPLE_RATE = 44100


def sine(freq_hz: float, seconds: float = 1.0, amplitude: float = 0.5, sample_rate: int = SAMPLE_RATE,
         channels: int = 2, phase_rad: float = 0.0) -> np.ndarray:
    """``amplitude * sin(2 pi f t + phase)`` on every channel."""
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    x = amplitude * np.sin(2 * np.pi * freq_hz * t + phase_rad)
    return np.repeat(x[None, :], channels, axis=0).astype(np.float32)


def noise(seconds: float = 1.0, rms: float = 0.1, sample_rate: int = SAMPLE_RATE, channels: int = 2,
          seed: int = 0) -> np.ndarray:
    """White Gaussian noise of the given RMS, independent per channel."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((channels, int(round(seconds * sample_rate)))) * rms).astype(np.float32)


def pink_noise(seconds: float = 1.0, rms: float = 0.1, sample_rate: int = SAMPLE_RATE, channels: int = 2,
               seed: int = 0) -> np.ndarray:
    """Gaussian noise with a 1/f power spectrum above 20 Hz (equal power per octave)."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    spectrum = np.fft.rfft(rng.standard_normal((channels, n)), axis=-1)
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    shape = np.zeros_like(freqs)
    shape[freqs >= 20.0] = 1.0 / np.sqrt(freqs[freqs >= 20.0])
    x = np.fft.irfft(spectrum * shape, n=n, axis=-1)
    x *= rms / np.sqrt(np.mean(x**2))
    return x.astype(np.float32)


def song(seconds: float = 3.0, sample_rate: int = SAMPLE_RATE, seed: int = 0) -> np.ndarray:
    """Stereo mix of the synthetic multitrack's stems, DC removed, peak normalised to -6 dBFS."""
    from multitrack_synth import render_stems

    mix = sum(render_stems(seed, seconds=seconds, sample_rate=sample_rate, n_stems=5).values())
    mix = mix - mix.mean(axis=1, keepdims=True)
    mix = mix / np.abs(mix).max() * 10 ** (-6 / 20)
    return mix.astype(np.float32)


@pytest.fixture
def sample_rate() -> int:
    return SAMPLE_RATE


@pytest.fixture
def make_sine():
    return sine


@pytest.fixture
def make_noise():
    return noise


@pytest.fixture
def make_pink_noise():
    return pink_noise


@pytest.fixture
def make_song():
    return song


@pytest.fixture
def write_file(tmp_path):
    import soundfile as sf

    def write(name: str, samples: np.ndarray, sample_rate: int = SAMPLE_RATE, subtype: str = "PCM_24",
              **kwargs) -> Path:
        path = tmp_path / name
        sf.write(str(path), np.asarray(samples).T, sample_rate, subtype=subtype, **kwargs)
        return path

    return write
