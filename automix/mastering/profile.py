"""Reference analysis: the tonal, loudness, dynamics and stereo profile of a track.

A :class:`Profile` holds what the mastering chain matches:

* the smoothed long-term spectrum of the **mid** ``(L+R)/2`` and **side** ``(L-R)/2``
  signals on a 1/6-octave grid (:data:`GRID_HZ`, 20 Hz - 20 kHz), in dB,
* integrated loudness (LUFS), loudness range (LU), peak-to-loudness ratio (PLR, dB),
  crest factor (dB),
* stereo width per region: side-to-mid level (dB) below 200 Hz, 200 Hz - 4 kHz, above 4 kHz.

Several references combine into one profile with weights (:func:`combine_profiles`):
spectra are averaged after level normalisation, so a quiet and a loud reference
contribute their *tone* equally.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from numba import njit

from automix.errors import MasteringError

GRID_HZ: np.ndarray = 1000.0 * 2.0 ** (np.arange(-35, 27) / 6.0)
"""1/6-octave grid centres, Hz (1 kHz * 2**(k/6): 17.5 Hz to 20.2 kHz)."""

WIDTH_REGIONS_HZ: tuple[float, float] = (200.0, 4000.0)
"""Crossovers between the low, mid and high stereo-width regions, Hz."""

SPECTRUM_FLOOR_DB = -150.0
"""Level given to empty bands (dB)."""

FINE_BANDS_PER_OCTAVE = 12
"""Bands per octave of the fine tonal match (:func:`fine_grid`): 1/12 octave, edges at 1 kHz * 2**(k/12), so
both the 1/6-octave grid's bands (edges at its half steps) and the base-2 1/3-octave bands of
:func:`automix.loudness.third_octave_spectrum` (edges at the 1/6-octave centres) are unions of whole fine
bands: a curve matched on it holds on either coarser grid."""


@dataclass
class Profile:
    """What a track sounds like, for matching.

    Attributes
    ----------
    freqs_hz : np.ndarray
        Grid of the spectra (:data:`GRID_HZ`, bands above Nyquist removed).
    mid_db, side_db : np.ndarray
        Long-term mean-square level per 1/6-octave band of mid and side, dB re full scale.
    integrated_lufs : float
    loudness_range_lu : float
    plr_db : float
        True peak minus integrated loudness.
    crest_db : float
        Sample peak minus RMS.
    width_db : tuple of float
        Side-to-mid level (dB) in the low, mid and high regions (:data:`WIDTH_REGIONS_HZ`).
    sample_rate : int
    bin_freqs_hz, mid_power, side_power : np.ndarray or None
        The long-term power spectra the bands were summed from (mean square per FFT bin of mid and
        side, :func:`automix.loudness.long_term_power_spectrum`'s bins, about 1.3 Hz apart at 44.1 kHz):
        for the tonal match on finer bands (:data:`FINE_BANDS_PER_OCTAVE`) and the design of the tonal
        filters' low end from the mix's own spectrum. None where the profile was combined from several.
    """

    freqs_hz: np.ndarray
    mid_db: np.ndarray
    side_db: np.ndarray
    integrated_lufs: float
    loudness_range_lu: float
    plr_db: float
    crest_db: float
    width_db: tuple[float, float, float]
    sample_rate: int
    names: list[str] = field(default_factory=list)
    bin_freqs_hz: np.ndarray | None = None
    mid_power: np.ndarray | None = None
    side_power: np.ndarray | None = None

    @property
    def total_db(self) -> np.ndarray:
        """Level per band of the stereo signal, mean over L and R (= mid + side power), dB."""
        return _db(_power(self.mid_db) + _power(self.side_db))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (spectra rounded to 0.01 dB)."""
        return {
            "names": list(self.names),
            "integrated_lufs": _num(self.integrated_lufs),
            "loudness_range_lu": _num(self.loudness_range_lu),
            "plr_db": _num(self.plr_db),
            "crest_db": _num(self.crest_db),
            "width_db": {"low": _num(self.width_db[0]), "mid": _num(self.width_db[1]), "high": _num(self.width_db[2])},
            "freqs_hz": [round(float(f), 2) for f in self.freqs_hz],
            "mid_db": [round(float(v), 2) for v in self.mid_db],
            "side_db": [round(float(v), 2) for v in self.side_db],
        }


def _num(v: float) -> float | None:
    return float(round(v, 3)) if math.isfinite(v) else None


def _power(db: np.ndarray) -> np.ndarray:
    return 10.0 ** (np.asarray(db) / 10.0)


def _db(power: np.ndarray) -> np.ndarray:
    return 10.0 * np.log10(np.maximum(power, 10.0 ** (SPECTRUM_FLOOR_DB / 10.0)))


def band_power(freqs: np.ndarray, power: np.ndarray, centres: np.ndarray, fraction: float = 6.0) -> np.ndarray:
    """Sum of a per-bin power spectrum over fractional-octave bands (bins split pro rata).

    Parameters
    ----------
    freqs, power : np.ndarray
        Bin centres (Hz, uniform) and mean-square power per bin.
    centres : np.ndarray
        Band centres, Hz; band edges at ``centre * 2**(+-1/(2 fraction))``.

    Returns
    -------
    np.ndarray
        Power per band (linear).
    """
    df = freqs[1] - freqs[0]
    edges = np.concatenate([[0.0], freqs[:-1] + df / 2, [freqs[-1] + df / 2]])
    cumulative = np.concatenate([[0.0], np.cumsum(power)])
    hi = centres * 2 ** (1 / (2 * fraction))
    lo = centres * 2 ** (-1 / (2 * fraction))
    return np.maximum(np.interp(hi, edges, cumulative) - np.interp(lo, edges, cumulative), 0.0)


def fine_grid(sample_rate: int, low_hz: float = 20.0) -> np.ndarray:
    """Centres (Hz) of the :data:`FINE_BANDS_PER_OCTAVE` bands from ``low_hz`` to the last band below Nyquist."""
    k = FINE_BANDS_PER_OCTAVE
    steps = np.arange(-10 * k, 5 * k)
    centres = 1000.0 * 2.0 ** ((steps + 0.5) / k)
    return centres[(centres >= low_hz) & (centres * 2 ** (1 / (2 * k)) <= sample_rate / 2.0)]


def grid_for(sample_rate: int) -> np.ndarray:
    """:data:`GRID_HZ` without the bands that reach above Nyquist."""
    return GRID_HZ[GRID_HZ * 2 ** (1 / 12) <= sample_rate / 2.0]


BLOCK_FRAMES = 1 << 18
"""Frames per block where a whole-file pass works block by block to bound temporary memory."""


@njit(cache=True, nogil=True)
def _square_sum_and_peak(x):  # pragma: no cover - compiled
    """``(sum of squares, largest magnitude)`` of ``x`` ``(channels, T)`` in one pass (float64 sums)."""
    total = 0.0
    peak = 0.0
    for c in range(x.shape[0]):
        acc = 0.0
        for t in range(x.shape[1]):
            v = np.float64(x[c, t])
            acc += v * v
            a = abs(v)
            if a > peak:
                peak = a
        total += acc
    return total, peak


def square_sum_and_peak(samples: np.ndarray) -> tuple[float, float]:
    """Sum of squares (float64) and sample peak of ``(channels, T)`` in one pass, no temporaries."""
    x = np.asarray(samples)
    if x.dtype not in (np.float32, np.float64) or not x.flags.c_contiguous:
        x = np.ascontiguousarray(x, dtype=np.float32)
    return _square_sum_and_peak(x.reshape(-1, x.shape[-1]))


def mean_square(samples: np.ndarray) -> float:
    """Mean square over all channels and samples of ``(channels, T)`` (float64 sum, no whole-file copy)."""
    x = np.asarray(samples)
    return square_sum_and_peak(x)[0] / max(x.size, 1)


def mid_side(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mid, side)`` = ``((L+R)/2, (L-R)/2)`` of a ``(2, T)`` array (mono: side is zero)."""
    x = np.asarray(samples, dtype=np.float32)
    if x.shape[0] == 1:
        return x[0], np.zeros_like(x[0])
    return 0.5 * (x[0] + x[1]), 0.5 * (x[0] - x[1])


def spectra_mid_side(samples: np.ndarray, sample_rate: int, bins: bool = False) -> tuple[np.ndarray, ...]:
    """1/6-octave long-term levels (dB) of mid and side: ``(freqs_hz, mid_db, side_db)``; with ``bins``
    also the per-bin powers they were summed from: ``(..., bin_freqs_hz, mid_power, side_power)``.

    Long signals (whose spectrum segments do not overlap, see
    :func:`automix.loudness.long_term_power_spectrum`) are measured in chunks of whole segments
    and the chunks' powers averaged by their segment counts -- the same segments as one call on
    the whole signal, without whole-file mid and side copies.
    """
    from automix.loudness import SPECTRUM_OVERLAP_MAX_S, _segment_length, long_term_power_spectrum

    x = np.asarray(samples)
    frames = x.shape[-1]
    seg = _segment_length(int(sample_rate), frames)
    # chunks of whole segments, each at least SPECTRUM_OVERLAP_MAX_S long (so measured without overlap too)
    chunk = int(math.ceil(SPECTRUM_OVERLAP_MAX_S * sample_rate / seg)) * seg
    long = frames >= SPECTRUM_OVERLAP_MAX_S * sample_rate and frames >= 2 * chunk
    if not long:
        chunk = frames  # one piece
    usable = (frames // seg) * seg if long else frames
    total_mid = total_side = 0.0
    count = 0
    start = 0
    while start < usable:
        stop = start + chunk
        if usable - stop < chunk:
            stop = usable  # the rest joins this chunk
        mid, side = mid_side(x[:, start:stop])
        freqs, p_mid = long_term_power_spectrum(mid[None], sample_rate)
        _, p_side = long_term_power_spectrum(side[None], sample_rate)
        n = (stop - start) // seg if long else 1
        total_mid, total_side, count = total_mid + p_mid * n, total_side + p_side * n, count + n
        start = stop
    grid = grid_for(sample_rate)
    p_mid, p_side = total_mid / count, total_side / count
    bands = (grid, _db(band_power(freqs, p_mid, grid)), _db(band_power(freqs, p_side, grid)))
    return bands + (freqs, p_mid, p_side) if bins else bands


def width_by_region(freqs_hz: np.ndarray, mid_db: np.ndarray, side_db: np.ndarray,
                    crossovers_hz: Sequence[float] = WIDTH_REGIONS_HZ) -> tuple[float, float, float]:
    """Side-to-mid level (dB) in the low, mid and high regions, from band spectra."""
    lo, hi = crossovers_hz
    out = []
    for sel in (freqs_hz < lo, (freqs_hz >= lo) & (freqs_hz < hi), freqs_hz >= hi):
        m = _power(mid_db[sel]).sum()
        s = _power(side_db[sel]).sum()
        out.append(float(10 * np.log10(max(s, 1e-15) / max(m, 1e-15))) if sel.any() else 0.0)
    return out[0], out[1], out[2]


def analyze_profile(samples: np.ndarray, sample_rate: int, name: str = "") -> Profile:
    """Measure the :class:`Profile` of ``samples`` ``(channels, T)`` at ``sample_rate`` Hz."""
    from automix.loudness import (SHORT_TERM_S, HOP_S, gated_integrated, lra_from_short_term, window_loudness,
                                  hop_energies, true_peak_dbtp)

    x = np.asarray(samples, dtype=np.float32)
    freqs, mid_db, side_db, bin_freqs, mid_power, side_power = spectra_mid_side(x, sample_rate, bins=True)
    energies, hop = hop_energies(x, sample_rate)  # one K-weighted pass for loudness and LRA
    lufs = gated_integrated(energies, hop)
    lra = lra_from_short_term(window_loudness(energies, hop, int(round(SHORT_TERM_S / HOP_S))))
    squares, peak = square_sum_and_peak(x)
    tp = true_peak_dbtp(x, sample_rate)
    rms = 10 * math.log10(max(squares / max(x.size, 1), 1e-20))
    peak_db = 20 * math.log10(peak) if peak > 0 else -math.inf
    return Profile(freqs_hz=freqs, mid_db=mid_db, side_db=side_db, integrated_lufs=float(lufs),
                   loudness_range_lu=float(lra), plr_db=float(tp - lufs), crest_db=float(peak_db - rms),
                   width_db=width_by_region(freqs, mid_db, side_db), sample_rate=int(sample_rate),
                   names=[name] if name else [], bin_freqs_hz=bin_freqs, mid_power=mid_power, side_power=side_power)


def normalised(db: np.ndarray, freqs_hz: np.ndarray) -> np.ndarray:
    """Spectrum in dB minus its mean over 31.5 Hz - 16 kHz (tone without level)."""
    sel = (freqs_hz >= 31.5) & (freqs_hz <= 16000.0)
    return db - float(np.mean(db[sel]))


def combine_profiles(profiles: Sequence[Profile], weights: Sequence[float] | None = None) -> Profile:
    """Weighted combination of several references into one target profile.

    Spectra are level-normalised before averaging (in dB) and then put back at the
    weighted mean level; loudness, LRA, PLR, crest and width are weighted means.
    All profiles must share the grid (same or higher sample rate: the common bands are used).
    """
    if not profiles:
        raise MasteringError("no reference to combine")
    if weights is None:
        weights = [1.0] * len(profiles)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (len(profiles),) or np.any(~np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise MasteringError("reference weights must be non-negative numbers, one per reference, not all zero")
    w = w / w.sum()
    if len(profiles) == 1:
        return profiles[0]
    n = min(len(p.freqs_hz) for p in profiles)
    freqs = profiles[0].freqs_hz[:n]

    def avg(attr: str) -> np.ndarray:
        levels = np.array([getattr(p, attr)[:n] for p in profiles])
        means = np.array([np.mean(getattr(p, attr)[:n]) for p in profiles])
        return (levels - means[:, None]).T @ w + float(means @ w)

    def mean(values) -> float:
        v = np.array(values, dtype=np.float64)
        ok = np.isfinite(v)
        return float(v[ok] @ w[ok] / w[ok].sum()) if ok.any() else math.nan

    mid_db, side_db = avg("mid_db"), avg("side_db")
    return Profile(freqs_hz=freqs, mid_db=mid_db, side_db=side_db,
                   integrated_lufs=mean([p.integrated_lufs for p in profiles]),
                   loudness_range_lu=mean([p.loudness_range_lu for p in profiles]),
                   plr_db=mean([p.plr_db for p in profiles]), crest_db=mean([p.crest_db for p in profiles]),
                   width_db=width_by_region(freqs, mid_db, side_db), sample_rate=min(p.sample_rate for p in profiles),
                   names=[n for p in profiles for n in p.names])
