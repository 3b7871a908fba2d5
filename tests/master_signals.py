"""Synthesised music-like test signals for the mastering tests (no files needed)."""
from __future__ import annotations

import numpy as np


def song(seconds: float = 4.0, sample_rate: int = 44100, seed: int = 0, level_db: float = -20.0,
         bright: float = 1.0, width: float = 0.3) -> np.ndarray:
    """Stereo ``(2, T)`` float32: bass line, chords with harmonics, kick and hi-hat noise bursts.

    ``bright`` scales the hi-hat and upper harmonics; ``width`` the decorrelated side content.
    The result is scaled to about ``level_db`` dBFS RMS.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    beat = 0.5
    mid = np.zeros(n)
    side = np.zeros(n)
    for k in range(int(seconds / beat) + 1):
        start = int(k * beat * sample_rate)
        seg = slice(start, min(n, start + int(beat * sample_rate)))
        tt = t[seg] - k * beat
        env = np.exp(-tt * 6.0)
        f0 = [55.0, 65.4, 49.0, 73.4][k % 4]
        mid[seg] += 0.5 * env * np.sin(2 * np.pi * f0 * tt)  # bass
        mid[seg] += 0.3 * np.exp(-tt * 30.0) * np.sin(2 * np.pi * 60.0 * tt * (1 + np.exp(-tt * 40)))  # kick
        chord = [220.0, 277.2, 329.6] if (k // 2) % 2 == 0 else [196.0, 246.9, 293.7]
        for f in chord:
            for h in range(1, 6):
                amp = 0.2 / h * (bright if h > 2 else 1.0)
                mid[seg] += amp * np.exp(-tt * 2.0) * np.sin(2 * np.pi * f * h * tt + rng.uniform(0, 6.28))
                side[seg] += width * amp * np.exp(-tt * 2.0) * np.sin(2 * np.pi * f * h * 1.003 * tt)
        hat_start = start + int(0.25 * sample_rate)
        hat = slice(hat_start, min(n, hat_start + int(0.05 * sample_rate)))
        if hat.start < n:
            m = hat.stop - hat.start
            noise = rng.standard_normal(m)
            noise = np.diff(noise, prepend=0.0)  # tilt up: hi-hat
            envh = np.exp(-np.arange(m) / sample_rate * 60.0)
            mid[hat] += 0.15 * bright * noise * envh
            side[hat] += 0.1 * bright * width * rng.standard_normal(m) * envh
    x = np.stack([mid + side, mid - side])
    rms = np.sqrt(np.mean(x ** 2))
    return (x * (10 ** (level_db / 20) / rms)).astype(np.float32)


def dense_electronic(seconds: float = 3.5, sample_rate: int = 44100, seed: int = 0,
                     level_db: float = -6.0) -> np.ndarray:
    """Stereo ``(2, T)`` float32 in the style of a loud electronic master: four-on-the-floor kick,
    sawtooth bass, a detuned supersaw chord (bright, wide), open hi-hats every off-beat and a
    clap; scaled to about ``level_db`` dBFS RMS (hot: its peaks go well above full scale)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    beat = 60.0 / 128.0
    phase_in_beat = np.mod(t, beat)
    kick = np.sin(2 * np.pi * 50.0 * phase_in_beat * (1 + 3 * np.exp(-phase_in_beat * 35))) * np.exp(-phase_in_beat * 9)

    def saw(f: np.ndarray | float, ph: float = 0.0) -> np.ndarray:
        return 2.0 * np.mod(f * t + ph, 1.0) - 1.0

    bass = 0.5 * saw(np.where(np.mod(t, 4 * beat) < 2 * beat, 55.0, 41.2)) * (1 - np.exp(-phase_in_beat * 20))
    left = np.zeros(n)
    right = np.zeros(n)
    for f in (220.0, 261.6, 329.6, 392.0):
        for detune in (-0.012, -0.004, 0.004, 0.012):
            left += 0.06 * saw(f * (1 + detune), rng.uniform())
            right += 0.06 * saw(f * (1 + detune * 1.3), rng.uniform())
    off = np.mod(t + beat / 2, beat)
    hats = np.diff(rng.standard_normal(n + 1)) * 0.25 * np.exp(-off * 25)
    clap_phase = np.mod(t + beat, 2 * beat)
    clap = rng.standard_normal(n) * 0.4 * np.exp(-clap_phase * 30)
    mid = 0.9 * kick + bass + hats + clap
    x = np.stack([mid + left, mid + right])
    rms = np.sqrt(np.mean(x ** 2))
    return (x * (10 ** (level_db / 20) / rms)).astype(np.float32)
