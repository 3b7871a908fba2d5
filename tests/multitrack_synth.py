"""Tiny synthetic multitracks for the data and training tests (rendered notes per stem).

Each song has a kick (pitch-dropping sine bursts on the beat), a bass line (harmonic
tone, one note per beat), keys (three-note chords with decaying envelopes), hats
(high-passed noise bursts on the off-beats) and, optionally, a lead (vibrato tone).
Everything is seeded, so the same call writes the same audio.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

ROLE_STEMS = ("kick", "bass", "keys", "hats", "lead")


def _env(n: int, sr: int, decay_s: float) -> np.ndarray:
    return np.exp(-np.arange(n) / (decay_s * sr))


def render_stems(seed: int, seconds: float = 3.0, sample_rate: int = 22050, n_stems: int = 4,
                 bpm: float = 120.0) -> dict[str, np.ndarray]:
    """``{stem name: (2, T) float32}`` of one synthetic song."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    beat = int(sample_rate * 60.0 / bpm)
    t = np.arange(n) / sample_rate
    root = 40 + int(rng.integers(0, 12))  # MIDI note of the bass
    out: dict[str, np.ndarray] = {}
    kick = np.zeros(n)
    for start in range(0, n, beat):
        m = min(beat, n - start)
        tt = np.arange(m) / sample_rate
        kick[start:start + m] += np.sin(2 * np.pi * (50 + 80 * np.exp(-tt * 30)) * tt) * _env(m, sample_rate, 0.12)
    out["kick"] = 0.6 * kick
    bass = np.zeros(n)
    for i, start in enumerate(range(0, n, beat)):
        m = min(beat, n - start)
        f = 440.0 * 2 ** ((root + int(rng.choice([0, 3, 5, 7])) - 69) / 12)
        tt = np.arange(m) / sample_rate
        tone = sum(np.sin(2 * np.pi * k * f * tt) / k for k in range(1, 6))
        bass[start:start + m] = tone * _env(m, sample_rate, 0.4)
    out["bass"] = 0.25 * bass
    keys = np.zeros(n)
    for start in range(0, n, 2 * beat):
        m = min(2 * beat, n - start)
        tt = np.arange(m) / sample_rate
        chord = root + 24 + np.array([0, 4, 7]) + int(rng.choice([0, 5, 7]))
        keys[start:start + m] = sum(np.sin(2 * np.pi * 440.0 * 2 ** ((c - 69) / 12) * tt) for c in chord) * _env(m, sample_rate, 0.6)
    out["keys"] = 0.12 * keys
    hats = np.zeros(n)
    noise = rng.normal(size=n)
    noise = np.diff(noise, prepend=0.0)  # tilt toward highs
    for start in range(beat // 2, n, beat):
        m = min(beat // 4, n - start)
        hats[start:start + m] = noise[start:start + m] * _env(m, sample_rate, 0.03)
    out["hats"] = 0.08 * hats
    if n_stems >= 5:
        f = 440.0 * 2 ** ((root + 36 - 69) / 12)
        out["lead"] = 0.1 * np.sin(2 * np.pi * f * t + 0.5 * np.sin(2 * np.pi * 5 * t))
    names = list(out)[:n_stems]
    pans = rng.uniform(-0.6, 0.6, size=len(names))
    stereo = {}
    for name, pan in zip(names, pans):
        x = out[name]
        left, right = np.cos((pan + 1) * np.pi / 4), np.sin((pan + 1) * np.pi / 4)
        stereo[name] = (np.stack([x * left, x * right]) * np.sqrt(2)).astype(np.float32)
    return stereo


def write_song(root: Path, name: str, seed: int, seconds: float = 3.0, sample_rate: int = 22050,
               n_stems: int = 4, with_mix: bool = True, subtype: str = "FLOAT") -> dict[str, np.ndarray]:
    """Write ``root/name/<stem>.wav`` (+ ``mix.wav`` = their sum); returns the stems."""
    folder = Path(root) / name
    folder.mkdir(parents=True, exist_ok=True)
    stems = render_stems(seed, seconds, sample_rate, n_stems)
    for stem, x in stems.items():
        sf.write(folder / f"{stem}.wav", x.T, sample_rate, subtype=subtype)
    if with_mix:
        sf.write(folder / "mix.wav", sum(stems.values()).T, sample_rate, subtype=subtype)
    return stems


def write_dataset(root: Path, n_songs: int = 5, **kwargs) -> Path:
    """``n_songs`` songs named song0, song1, ... under ``root``."""
    for i in range(n_songs):
        write_song(root, f"song{i}", seed=i, n_stems=4 + i % 2, **kwargs)
    return Path(root)
