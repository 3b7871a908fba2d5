"""Loudness and level metering, the way mastering engineers measure a file.

All functions take ``samples`` shaped ``(channels, samples)`` (``float32`` or
``float64``, full scale +-1.0; a 1-D array is taken as mono) and the sample rate in Hz.

Loudness follows ITU-R BS.1770-4 / EBU R 128: the K-weighting filter is pyloudnorm's
design for the given sample rate; one fused pass (:mod:`automix.loudness_kernels`)
filters and sums the energy of every 100 ms hop, and the gating, momentary (400 ms),
short-term (3 s) and loudness-range (EBU Tech 3342) values all come from those hop
energies. The tests check every number against pyloudnorm and textbook formulas.

True peak is measured 4x oversampled (ITU-R BS.1770-4 Annex 2) with a 12-tap-per-phase
Kaiser-windowed-sinc interpolator whose phase 0 is the original sample, so
``true_peak >= sample_peak``; its gain is flat within +-0.015 dB up to 0.7 x Nyquist.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import Any

import numpy as np

from automix.errors import AudioError

#: Hop between loudness readings, seconds (EBU R 128: at least 10 per second).
HOP_S: float = 0.1
#: Momentary loudness window, seconds.
MOMENTARY_S: float = 0.4
#: Short-term loudness window, seconds.
SHORT_TERM_S: float = 3.0
#: Absolute gate of integrated loudness and loudness range, LUFS.
ABSOLUTE_GATE_LUFS: float = -70.0
#: Relative gate of integrated loudness, LU below the absolute-gated loudness.
RELATIVE_GATE_LU: float = -10.0
#: Relative gate of loudness range (EBU Tech 3342), LU.
LRA_RELATIVE_GATE_LU: float = -20.0
#: Percentiles of the short-term distribution spanned by the loudness range.
LRA_PERCENTILES: tuple[float, float] = (10.0, 95.0)
#: BS.1770 channel weights in WAV order (L, R, C, Ls, Rs).
CHANNEL_WEIGHTS: tuple[float, ...] = (1.0, 1.0, 1.0, 1.41, 1.41)

#: Oversampling of the true-peak meter.
TRUE_PEAK_OVERSAMPLING: int = 4
#: Half length of the true-peak interpolator in input samples (12 taps per phase, as
#: the BS.1770-4 Annex 2 example filter; the compiled interpolator is written for 12).
_TP_HALF: int = 6
#: Kaiser window shape of the true-peak interpolator (5: flat to 0.7 x Nyquist,
#: -0.3 dB at 0.8 x Nyquist).
_TP_BETA: float = 5.0
#: Centre taps per side of the cheap partial true-peak estimate :func:`true_peak_phases`
#: offers (``near``) to meters that prune.
_TP_NEAR: int = 3

#: Samples at or beyond this magnitude count as clipped (16-bit positive full scale).
CLIP_LEVEL: float = 1.0 - 2.0**-15

#: Signals shorter than this (s) get half-overlapping spectrum segments.
SPECTRUM_OVERLAP_MAX_S: float = 30.0

#: Nominal 1/3-octave centre frequencies (IEC 61260), Hz, as printed on analysers.
THIRD_OCTAVE_NOMINAL_HZ: tuple[float, ...] = (
    20, 25, 31.5, 40, 50, 63, 80, 100, 125, 160, 200, 250, 315, 400, 500, 630, 800,
    1000, 1250, 1600, 2000, 2500, 3150, 4000, 5000, 6300, 8000, 10000, 12500, 16000, 20000,
)
#: Exact base-2 1/3-octave centre frequencies, Hz (1 kHz * 2**(k/3)).
THIRD_OCTAVE_HZ: np.ndarray = 1000.0 * 2.0 ** (np.arange(-17, 14) / 3.0)

# Warning thresholds (what a mastering engineer would flag).
WARN_TRUE_PEAK_DBTP: float = -1.0
WARN_DC_OFFSET: float = 10 ** (-60 / 20)
WARN_CORRELATION: float = 0.0
WARN_SIDE_MID_DB: float = 0.0


def _as_2d(samples: Any) -> np.ndarray:
    x = np.asarray(samples)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"samples must be (channels, samples); got shape {x.shape}")
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float32)
    return x


def _db(power_or_amp: float, power: bool = False) -> float:
    v = float(power_or_amp)
    if v <= 0.0:
        return -math.inf
    return (10.0 if power else 20.0) * math.log10(v)


def _lufs(mean_square: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return -0.691 + 10.0 * np.log10(np.maximum(mean_square, 0.0))


# --------------------------------------------------------------------------- K-weighting

#: K-weighting stages (BS.1770-4): high shelf +4 dB above 1.5 kHz (Q 1/sqrt 2), then
#: the RLB high-pass at 38 Hz (Q 0.5); pyloudnorm's parameters for its RBJ designs.
K_SHELF_GAIN_DB, K_SHELF_HZ, K_SHELF_Q = 4.0, 1500.0, 1.0 / math.sqrt(2.0)
K_HIGHPASS_HZ, K_HIGHPASS_Q = 38.0, 0.5


@lru_cache(maxsize=16)
def k_weighting_sos(sample_rate: int) -> np.ndarray:
    """BS.1770 K-weighting (high shelf, then RLB high-pass) as second-order sections.

    Designed for any ``sample_rate`` (Hz) with the RBJ cookbook formulas and the
    parameters pyloudnorm uses, so the loudness measured here agrees with pyloudnorm
    (the tests check the coefficients against pyloudnorm's and the response against
    the 48 kHz filter printed in BS.1770-4).

    Returns
    -------
    np.ndarray
        ``(2, 6)`` ``float64`` sections ``[b0, b1, b2, 1, a1, a2]``.
    """
    w0 = 2.0 * math.pi * K_SHELF_HZ / sample_rate
    cos, amp = math.cos(w0), 10.0 ** (K_SHELF_GAIN_DB / 40.0)
    k = 2.0 * math.sqrt(amp) * math.sin(w0) / (2.0 * K_SHELF_Q)
    shelf = [amp * ((amp + 1) + (amp - 1) * cos + k), -2 * amp * ((amp - 1) + (amp + 1) * cos),
             amp * ((amp + 1) + (amp - 1) * cos - k),
             (amp + 1) - (amp - 1) * cos + k, 2 * ((amp - 1) - (amp + 1) * cos), (amp + 1) - (amp - 1) * cos - k]
    w0 = 2.0 * math.pi * K_HIGHPASS_HZ / sample_rate
    cos, alpha = math.cos(w0), math.sin(w0) / (2.0 * K_HIGHPASS_Q)
    highpass = [(1 + cos) / 2, -(1 + cos), (1 + cos) / 2, 1 + alpha, -2 * cos, 1 - alpha]
    sections = np.array([shelf, highpass], dtype=np.float64)
    return sections / sections[:, 3:4]


def _weights(channels: int) -> np.ndarray:
    if channels > len(CHANNEL_WEIGHTS):
        raise ValueError(f"loudness is defined for at most {len(CHANNEL_WEIGHTS)} channels, got {channels}")
    return np.asarray(CHANNEL_WEIGHTS[:channels], dtype=np.float64)


def _hop_length(sample_rate: int, hop_s: float = HOP_S) -> int:
    return max(1, int(round(hop_s * sample_rate)))


@dataclass
class _Sums:
    """Level statistics of a signal (float64 sums)."""

    peak: float  # largest |sample| (NaN if the signal holds NaN)
    sums: np.ndarray  # (channels,) sum of the samples
    squares: np.ndarray  # (channels,) sum of their squares
    clipped: int
    cross: float = math.nan  # sum(L*R), stereo only
    side: float = math.nan  # sum((L-R)**2), stereo only

    @property
    def correlation(self) -> float:
        denominator = math.sqrt(self.squares[0] * self.squares[1]) if self.squares.size == 2 else 0.0
        return float(self.cross / denominator) if denominator > 0 else math.nan

    @property
    def side_mid_db(self) -> float:
        if self.squares.size != 2:
            return math.nan
        mid = self.squares[0] + self.squares[1] + 2.0 * self.cross
        if mid <= 0.0:
            return math.inf if self.side > 0 else math.nan
        return _db(self.side / mid, power=True)


def hop_energies(samples: Any, sample_rate: int, hop_s: float = HOP_S) -> tuple[np.ndarray, int]:
    """Channel-weighted K-weighted energy of each consecutive hop.

    Parameters
    ----------
    samples : array ``(channels, samples)``
    sample_rate : int
        Hz.
    hop_s : float
        Hop length in seconds (rounded to whole samples).

    Returns
    -------
    energies : np.ndarray
        ``float64`` ``(hops,)``: ``sum_c G_c * sum_t y_c[t]**2`` over each hop of the
        K-weighted signal ``y`` (a trailing partial hop is dropped).
    hop : int
        Hop length in samples.
    """
    x = _as_2d(samples)
    hop = _hop_length(int(sample_rate), hop_s)
    energies = np.zeros(x.shape[-1] // hop)
    _add_hop_energies(x, int(sample_rate), hop, energies, _weights(x.shape[0]))
    return energies, hop


#: Nepers the slowest K-weighting pole must decay over a lane's warm-up (e**-50 ~ 2e-22:
#: the state a lane starts from no longer matters to float64 precision).
_WARMUP_NEPERS: float = 50.0


@lru_cache(maxsize=64)
def _warmup_hops(sample_rate: int, hop: int) -> int:
    """Hops a K-weighting lane must run before its own to forget its zero start state."""
    radius = max(float(np.abs(np.roots([1.0, s[4], s[5]])).max()) for s in k_weighting_sos(sample_rate))
    return int(math.ceil(_WARMUP_NEPERS / -math.log(radius) / hop))


def _add_hop_energies(x: np.ndarray, sample_rate: int, hop: int, out: np.ndarray, weights: np.ndarray) -> None:
    """``out[h] +=`` channel-weighted K-weighted energy of hop ``h`` of ``x`` (``weights`` per row)."""
    from automix.loudness_kernels import k_weighted_hop_energies
    from automix.precompile import ready

    if not out.size:
        return
    sos, warmup = k_weighting_sos(sample_rate), _warmup_hops(sample_rate, hop)
    if ready(k_weighted_hop_energies, x, sos, weights, hop, out, warmup):
        k_weighted_hop_energies(x, sos, weights, hop, out, warmup)
        return
    # a first run (automix.precompile), the kernel not compiled yet: scipy's C sosfilt, the
    # plain recursion (the kernel's split runs agree with it to float64 rounding)
    from automix.dsp.strip_uncompiled import sosfilt_inplace

    hops_per_pass = max(1, (1 << 16) // hop)
    for c in range(x.shape[0]):
        zi = np.zeros((1, sos.shape[0], 2))
        for h0 in range(0, out.size, hops_per_pass):
            h1 = min(out.size, h0 + hops_per_pass)
            y = x[c: c + 1, h0 * hop: h1 * hop].astype(np.float64)
            sosfilt_inplace(sos, y, zi)
            zi[np.abs(zi) < 1e-20] = 0.0  # no float64 subnormals in a silent stretch (~100x slower)
            np.square(y, out=y)
            out[h0:h1] += weights[c] * y.reshape(h1 - h0, hop).sum(axis=1)


def _levels_from_tally(x: np.ndarray, tally: np.ndarray, start: int, peak: float | None) -> _Sums:
    """Level sums of stereo ``x`` from the spectrum pass's ``tally`` of ``x[:, :start]`` plus ``x[:, start:]``."""
    tail = _levels(x[:, start:], 0.0)
    return _Sums(float(peak) if peak is not None else _sample_peak(x),
                 tail.sums + tally[0:2], tail.squares + tally[2:4], tail.clipped + int(tally[6]),
                 (0.0 if math.isnan(tail.cross) else tail.cross) + float(tally[4]),
                 (0.0 if math.isnan(tail.side) else tail.side) + float(tally[5]))


def _sample_peak(x: np.ndarray) -> float:
    return float(max(x.max(initial=0.0), -x.min(initial=0.0))) if x.size else 0.0


def _levels(x: np.ndarray, peak: float | None = None) -> _Sums:
    """Peak, DC, energy, clipping and stereo sums of ``x`` (``peak`` when already known)."""
    from automix.loudness_kernels import level_sums

    sums = np.zeros((x.shape[0], 2))
    stereo = np.full(2, math.nan)
    clipped = int(level_sums(x, CLIP_LEVEL, sums, stereo)) if x.shape[-1] else 0
    return _Sums(float(peak) if peak is not None else _sample_peak(x), sums[:, 0], sums[:, 1], clipped,
                 float(stereo[0]), float(stereo[1]))


def window_loudness(energies: np.ndarray, hop: int, hops_per_window: int) -> np.ndarray:
    """LUFS of every window of ``hops_per_window`` consecutive hops (one per hop)."""
    if len(energies) < hops_per_window:
        return np.zeros(0)
    cumulative = np.concatenate([[0.0], np.cumsum(energies)])
    sums = cumulative[hops_per_window:] - cumulative[:-hops_per_window]
    return _lufs(sums / (hops_per_window * hop))


def gated_integrated(energies: np.ndarray, hop: int) -> float:
    """BS.1770-4 gated integrated loudness from hop energies (400 ms blocks, 75 % overlap)."""
    n = int(round(MOMENTARY_S / HOP_S))
    if len(energies) < n:
        return math.nan
    cumulative = np.concatenate([[0.0], np.cumsum(energies)])
    block_ms = (cumulative[n:] - cumulative[:-n]) / (n * hop)
    block_lufs = _lufs(block_ms)
    above = block_lufs > ABSOLUTE_GATE_LUFS
    if not np.any(above):
        return -math.inf
    relative = float(_lufs(np.mean(block_ms[above]))) + RELATIVE_GATE_LU
    gated = above & (block_lufs > relative)
    return float(_lufs(np.mean(block_ms[gated])))


def lra_from_short_term(short_term_lufs: np.ndarray) -> float:
    """EBU Tech 3342 loudness range (LU) from short-term readings."""
    values = short_term_lufs[short_term_lufs > ABSOLUTE_GATE_LUFS]
    if values.size == 0:
        return math.nan
    relative = 10.0 * math.log10(np.mean(10.0 ** (values / 10.0))) + LRA_RELATIVE_GATE_LU
    values = values[values >= relative]
    low, high = np.percentile(values, LRA_PERCENTILES)
    return float(high - low)


def integrated_loudness(samples: Any, sample_rate: int) -> float:
    """Integrated (programme) loudness, ITU-R BS.1770-4, LUFS.

    Returns ``-inf`` for silence (no block above -70 LUFS) and ``nan`` for signals
    shorter than one 400 ms block.
    """
    energies, hop = hop_energies(samples, sample_rate)
    return gated_integrated(energies, hop)


def momentary_loudness(samples: Any, sample_rate: int, hop_s: float = HOP_S) -> tuple[np.ndarray, np.ndarray]:
    """Momentary loudness (400 ms window), one reading per hop.

    Returns
    -------
    times_s : np.ndarray
        End time of each window, seconds.
    lufs : np.ndarray
        Loudness of each window, LUFS (``-inf`` for digital silence).
    """
    return _curve(samples, sample_rate, MOMENTARY_S, hop_s)


def short_term_loudness(samples: Any, sample_rate: int, hop_s: float = HOP_S) -> tuple[np.ndarray, np.ndarray]:
    """Short-term loudness (3 s window), one reading per hop; see :func:`momentary_loudness`."""
    return _curve(samples, sample_rate, SHORT_TERM_S, hop_s)


def _curve(samples: Any, sample_rate: int, window_s: float, hop_s: float) -> tuple[np.ndarray, np.ndarray]:
    energies, hop = hop_energies(samples, sample_rate, hop_s)
    n = max(1, int(round(window_s / hop_s)))
    lufs = window_loudness(energies, hop, n)
    times = (np.arange(len(lufs)) + n) * hop / float(sample_rate)
    return times, lufs


def loudness_range(samples: Any, sample_rate: int) -> float:
    """Loudness range (EBU Tech 3342), LU; ``nan`` when shorter than 3 s or silent."""
    energies, hop = hop_energies(samples, sample_rate)
    return lra_from_short_term(window_loudness(energies, hop, int(round(SHORT_TERM_S / HOP_S))))


# --------------------------------------------------------------------------- peaks

def sample_peak(samples: Any) -> float:
    """Largest absolute sample value (full scale = 1.0)."""
    x = _as_2d(samples)
    if x.size == 0:
        return 0.0
    return float(max(x.max(), -x.min()))


def sample_peak_db(samples: Any) -> float:
    """Sample peak in dBFS (``-inf`` for digital silence)."""
    return _db(sample_peak(samples))


@lru_cache(maxsize=1)
def true_peak_phases() -> tuple[np.ndarray, float, np.ndarray, float]:
    """Phases 1..3 of the 4x windowed-sinc interpolator (phase 0 is the sample itself).

    Returns
    -------
    phases : np.ndarray
        ``(3, 2 * half)`` float32 taps, applied to ``x[n-half .. n+half-1]`` for the
        outputs between ``x[n-1]`` and ``x[n]``.
    gain_bound : float
        Largest L1 norm of a phase: no output exceeds it times the peak under its taps.
    near : np.ndarray
        The ``2 * _TP_NEAR`` centre columns of ``phases`` (a cheap first estimate).
    outer_gain : float
        Largest L1 norm of the columns ``near`` leaves out (its worst-case error).
    """
    up, half = TRUE_PEAK_OVERSAMPLING, _TP_HALF
    m = np.arange(-up * half, up * half + 1)
    prototype = np.sinc(m / up) * np.kaiser(len(m), _TP_BETA)
    # coefficient of x[n-half+i] at phase p is prototype[up*(half-1-i) + p] (index offset up*half)
    phases = np.array([[prototype[up * (half - 1 - i) + p + up * half] for i in range(2 * half)]
                       for p in range(1, up)], dtype=np.float32)
    absolute = np.abs(phases.astype(np.float64))
    centre = slice(half - _TP_NEAR, half + _TP_NEAR)
    outer = absolute.sum(axis=1) - absolute[:, centre].sum(axis=1)
    return (phases, float(absolute.sum(axis=1).max()), np.ascontiguousarray(phases[:, centre]),
            float(outer.max()) * (1 + 1e-6))


def true_peak(samples: Any, sample_rate: int | None = None, peak: float | None = None) -> float:
    """True peak (largest magnitude of the 4x oversampled signal), full-scale units.

    The signal is taken as zero outside its ends. Every interpolated output is computed
    (a vectorised pass, cheaper than working out which stretches could be skipped).

    Parameters
    ----------
    samples : array ``(channels, samples)``
    sample_rate : int, optional
        Unused (true peak does not depend on it); accepted for a uniform signature.
    peak : float, optional
        The sample peak when already known (saves one pass).
    """
    x = _as_2d(samples).astype(np.float32, copy=False)
    best = sample_peak(x) if peak is None else float(peak)
    if best == 0.0:
        return 0.0
    return max([best] + [_channel_true_peak(channel) for channel in x])


def _channel_true_peak(channel: np.ndarray) -> float:
    """Largest magnitude of the interpolated outputs of one channel ``(samples,)`` (silent outside).

    Output ``n`` (``0 <= n <= T``, three phases between ``x[n-1]`` and ``x[n]``) is computed
    from ``x[n-6 .. n+5]``: the outputs whose taps lie inside the signal straight from it,
    the few at each end from a short zero-padded copy.
    """
    from automix.loudness_kernels import interpolated_abs_max

    phases = true_peak_phases()[0]
    taps = phases.shape[1]
    half = taps // 2
    x = np.ascontiguousarray(channel, dtype=np.float32)
    frames = x.shape[0]
    if frames < 4 * taps:
        padded = np.concatenate([np.zeros(half, np.float32), x, np.zeros(half, np.float32)])
        return float(interpolated_abs_max(padded, phases, 0, frames + 1))
    head = np.concatenate([np.zeros(half, np.float32), x[: taps + half - 1]])  # outputs 0 .. half-1
    tail = np.concatenate([x[frames - taps - half + 1:], np.zeros(half, np.float32)])  # outputs T-half+1 .. T
    return float(max(interpolated_abs_max(head, phases, 0, half),
                     interpolated_abs_max(x, phases, 0, frames - taps + 1),  # outputs half .. T-half
                     interpolated_abs_max(tail, phases, half, taps)))


def true_peak_dbtp(samples: Any, sample_rate: int | None = None) -> float:
    """True peak in dBTP (4x oversampled, ITU-R BS.1770-4); ``-inf`` for silence."""
    return _db(true_peak(samples, sample_rate))


# --------------------------------------------------------------------------- spectrum

def _segment_length(sample_rate: int, frames: int) -> int:
    n = 1 << int(math.ceil(math.log2(max(sample_rate * 0.5, 16))))
    while n > frames and n > 16:
        n //= 2
    return n


def long_term_power_spectrum(samples: Any, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Long-term average power spectrum, averaged over channels.

    Hann-windowed segments of about 0.5-1 s (half overlapping in signals shorter than
    :data:`SPECTRUM_OVERLAP_MAX_S`, adjacent in longer ones, where the average over
    hundreds of segments no longer needs the overlap); each bin holds the
    mean-square power (full scale = 1) of the signal in that bin, so the bins sum to
    the mean square of the signal.

    Returns
    -------
    freqs_hz : np.ndarray ``(bins,)``
    power : np.ndarray ``(bins,)`` (linear, mean square per bin)
    """
    x = _as_2d(samples).astype(np.float32, copy=False)
    plan = _SpectrumPlan.for_signal(int(sample_rate), x.shape[-1])
    acc = np.zeros(plan.bins, dtype=np.float64)
    plan.accumulate(np.ascontiguousarray(x), acc)
    return plan.finish(acc, x.shape[0])


@dataclass(frozen=True)
class _SpectrumPlan:
    """Segmenting of one signal for :func:`long_term_power_spectrum` (channels may run apart)."""

    sample_rate: int
    frames: int
    n: int  # segment length, samples
    hop: int  # segment hop, samples

    @classmethod
    def for_signal(cls, sample_rate: int, frames: int) -> _SpectrumPlan:
        n = _segment_length(sample_rate, frames)
        return cls(sample_rate, frames, n, n // 2 if frames < SPECTRUM_OVERLAP_MAX_S * sample_rate else n)

    @property
    def bins(self) -> int:
        return self.n // 2 + 1

    @property
    def window(self) -> np.ndarray:
        return _hann(self.n)

    @property
    def tiles(self) -> bool:
        """Whether the segments are adjacent and cover the signal (but a tail shorter than one)."""
        return self.hop == self.n and self.frames >= self.n

    @property
    def count(self) -> int:
        return 1 + (max(self.frames, self.n) - self.n) // self.hop

    def accumulate(self, x: np.ndarray, acc: np.ndarray, first: int = 0, stop: int | None = None,
                   tally: np.ndarray | None = None) -> None:
        """``acc[k] +=`` the power of bin ``k`` summed over the channels of ``float32`` ``x``
        ``(C, frames)`` and its segments ``first .. stop - 1`` (all of them by default).

        Channels go in pairs through one in-place complex transform per segment (no
        allocation per transform; :func:`automix.loudness_kernels.accumulate_pair_power`
        separates them); an odd last channel through real transforms. Each segment's
        power depends only on that segment of that channel pair, so any split into
        segment ranges sums to the same result.

        ``tally`` (stereo with adjacent segments only, see :attr:`tiles`): ``(7,)`` level
        sums of the segments' samples, added to on the way (see
        :func:`automix.loudness_kernels.windowed_pairs`).
        """
        from scipy import fft as sfft

        from automix.loudness_kernels import accumulate_pair_power, accumulate_power, windowed_pairs

        if x.shape[-1] < self.n:
            x = np.pad(x, ((0, 0), (0, self.n - x.shape[-1])))
        stop = self.count if stop is None else stop
        size = min(_SPECTRUM_BATCH, max(stop - first, 1))
        if x.shape[0] >= 2:
            batch = np.empty((size, self.n), dtype=np.complex64)
            for c in range(0, x.shape[0] - 1, 2):
                for start in range(first, stop, size):
                    block = batch[: min(size, stop - start)]
                    windowed_pairs(x[c], x[c + 1], self.hop, self.window, start, block, CLIP_LEVEL,
                                   _NO_TALLY if tally is None else tally)
                    accumulate_pair_power(sfft.fft(block, axis=-1, overwrite_x=True), acc)
        if x.shape[0] % 2:
            channel = x[-1]
            segments = np.lib.stride_tricks.as_strided(
                channel, shape=(self.count, self.n), strides=(self.hop * channel.strides[0], channel.strides[0]),
                writeable=False)
            batch = np.empty((size, self.n), dtype=np.float32)
            for start in range(first, stop, size):
                block = batch[: min(size, stop - start)]
                np.multiply(segments[start: start + block.shape[0]], self.window, out=block)
                accumulate_power(sfft.rfft(block, axis=-1, overwrite_x=True), acc)

    def finish(self, acc: np.ndarray, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """(freqs_hz, mean-square power per bin) from the channels' summed ``acc``."""
        window = self.window.astype(np.float64)
        power = acc / (self.count * channels * self.n * float(np.sum(window**2)))
        power[1: (self.n + 1) // 2] *= 2.0  # one-sided: fold negative frequencies
        return np.arange(self.bins) * self.sample_rate / self.n, power


_NO_TALLY = np.zeros(0)  # "no level sums wanted" for windowed_pairs

#: Complex transforms (segment pairs) per call of the spectrum's FFT.
_SPECTRUM_BATCH: int = 8


@lru_cache(maxsize=8)
def _hann(n: int) -> np.ndarray:
    """Periodic Hann window of ``n`` samples (``float32``, read-only)."""
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)
    window.flags.writeable = False
    return window


def third_octave_spectrum(samples: Any, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """1/3-octave long-term average spectrum.

    Band ``k`` spans ``fc * 2**(-1/6) .. fc * 2**(1/6)`` around the base-2 centres
    :data:`THIRD_OCTAVE_HZ` (20 Hz .. 20 kHz; bands centred above Nyquist are left out,
    a band straddling Nyquist is measured up to Nyquist). Each FFT
    bin's power is spread evenly over its width, so bands narrower than a bin still
    get their share.

    Returns
    -------
    freqs_hz : np.ndarray
        Band centres, Hz.
    level_db : np.ndarray
        Mean-square level in each band, dB re full scale (a full-scale sine in a band
        reads -3.0 dB; ``-inf`` where there is no energy).
    """
    return _third_octave_bands(*long_term_power_spectrum(samples, sample_rate), sample_rate)


def _third_octave_bands(freqs: np.ndarray, power: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Band centres (Hz) and levels (dB) of a long-term power spectrum (see above)."""
    nyquist = sample_rate / 2.0
    centres = THIRD_OCTAVE_HZ[THIRD_OCTAVE_HZ < nyquist]
    df = freqs[1] - freqs[0]
    edges = np.concatenate([[0.0], freqs[:-1] + df / 2, [nyquist]])
    cumulative = np.concatenate([[0.0], np.cumsum(power)])
    band = np.interp(centres * 2 ** (1 / 6), edges, cumulative) - np.interp(centres * 2 ** (-1 / 6), edges, cumulative)
    with np.errstate(divide="ignore"):
        level = 10.0 * np.log10(np.maximum(band, 0.0))
    return centres, level


# --------------------------------------------------------------------------- stereo, DC

def stereo_correlation(samples: Any) -> float:
    """Phase correlation of left and right (+1 mono, 0 unrelated, -1 out of phase).

    ``sum(L*R) / sqrt(sum(L**2) * sum(R**2))``; ``nan`` unless stereo and non-silent.
    """
    x = _as_2d(samples)
    return _levels(x, 0.0).correlation if x.shape[0] == 2 else math.nan  # (peak not needed)


def side_mid_ratio_db(samples: Any) -> float:
    """Energy of side ``(L-R)/2`` relative to mid ``(L+R)/2``, dB (``nan`` unless stereo)."""
    x = _as_2d(samples)
    return _levels(x, 0.0).side_mid_db if x.shape[0] == 2 else math.nan


# --------------------------------------------------------------------------- report

@dataclass
class Metrics:
    """Everything :func:`analyze` measures about one signal.

    Loudness values are ``nan`` when the signal is too short to measure them
    (integrated/momentary < 0.4 s, short-term/LRA < 3 s) and ``-inf`` for silence.
    """

    duration_s: float
    sample_rate: int
    channels: int
    integrated_lufs: float
    max_momentary_lufs: float
    max_short_term_lufs: float
    loudness_range_lu: float
    true_peak_dbtp: float
    sample_peak_dbfs: float
    plr_db: float
    rms_dbfs: float
    crest_factor_db: float
    correlation: float
    side_mid_ratio_db: float
    dc_offset: list[float]
    clipped_samples: int
    spectrum_hz: np.ndarray = field(repr=False)
    spectrum_db: np.ndarray = field(repr=False)
    short_term_times_s: np.ndarray = field(repr=False)
    short_term_lufs: np.ndarray = field(repr=False)
    warnings: list[str] = field(default_factory=list)

    #: (field, label, unit, decimals) of the scalar metrics, in table order.
    TABLE = (
        ("integrated_lufs", "Integrated loudness", "LUFS", 1),
        ("max_short_term_lufs", "Max short-term loudness", "LUFS", 1),
        ("max_momentary_lufs", "Max momentary loudness", "LUFS", 1),
        ("loudness_range_lu", "Loudness range (LRA)", "LU", 1),
        ("true_peak_dbtp", "True peak", "dBTP", 2),
        ("sample_peak_dbfs", "Sample peak", "dBFS", 2),
        ("plr_db", "Peak-to-loudness ratio (PLR)", "dB", 1),
        ("rms_dbfs", "RMS level", "dBFS", 1),
        ("crest_factor_db", "Crest factor", "dB", 1),
        ("correlation", "Stereo correlation", "", 2),
        ("side_mid_ratio_db", "Side/mid ratio", "dB", 1),
        ("dc_offset_max_pct", "DC offset (largest channel)", "%", 4),
        ("clipped_samples", "Clipped samples", "", 0),
        ("duration_s", "Duration", "s", 2),
        ("sample_rate", "Sample rate", "Hz", 0),
        ("channels", "Channels", "", 0),
    )

    @property
    def dc_offset_max_pct(self) -> float:
        """Largest absolute DC offset of any channel, percent of full scale."""
        return 100.0 * max((abs(v) for v in self.dc_offset), default=0.0)

    def table(self) -> list[str]:
        """One aligned line per metric: label, value, unit (``n/a`` where unmeasurable)."""
        lines = []
        width = max(len(label) for _, label, _, _ in self.TABLE)
        for name, label, unit, decimals in self.TABLE:
            lines.append(f"{label:<{width}}  {_format(getattr(self, name), decimals):>9}  {unit}".rstrip())
        return lines

    def to_dict(self, curves: bool = True) -> dict[str, Any]:
        """JSON-ready dict (``nan`` -> ``None``, ``-inf``/``inf`` -> ``None``).

        Parameters
        ----------
        curves : bool
            Include the 1/3-octave spectrum and the short-term loudness curve.
        """
        out: dict[str, Any] = {}
        for name, _, _, _ in self.TABLE:
            out[name] = _json_number(getattr(self, name))
        out["dc_offset"] = [_json_number(v) for v in self.dc_offset]
        out["warnings"] = list(self.warnings)
        if curves:
            out["spectrum"] = {"freqs_hz": [round(float(f), 2) for f in self.spectrum_hz],
                               "level_db": [_json_number(round(float(v), 2)) for v in self.spectrum_db]}
            out["short_term"] = {"times_s": [round(float(t), 2) for t in self.short_term_times_s],
                                 "lufs": [_json_number(round(float(v), 2)) for v in self.short_term_lufs]}
        return out


def _format(value: Any, decimals: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "-inf" if value < 0 else "inf"
    if decimals == 0:
        return f"{int(value)}"
    return f"{value:.{decimals}f}"


def _json_number(value: Any) -> Any:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    value = float(value)
    return value if math.isfinite(value) else None


def analyze(samples: Any, sample_rate: int, threads: int | None = None, peak: float | None = None) -> Metrics:
    """Measure loudness, peaks, stereo image, DC, clipping and the long-term spectrum.

    Parameters
    ----------
    samples : array ``(channels, samples)``
        Mono or stereo (up to 5 channels for loudness), full scale +-1.0.
    sample_rate : int
        Hz.
    threads : int, optional
        Threads for the independent passes (the spectrum in halves of the signal, true
        peak and K-weighted loudness per channel, the level sums -- for long stereo
        signals taken on the spectrum's pass); default: the CPUs this process may use.
        1 runs them in turn (same results).
    peak : float, optional
        Largest absolute sample value when already known (``Audio.peak``; saves a pass).

    Returns
    -------
    Metrics
        Including ``warnings``: plain-language problems a mastering engineer would flag
        (clipping, DC offset, true peak above -1 dBTP, mono-compatibility).

    Raises
    ------
    AudioError
        The samples contain NaN or infinite values.
    """
    from automix.audio import usable_cpus

    x = _as_2d(samples)
    sample_rate = int(sample_rate)
    channels, frames = x.shape
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    hop = _hop_length(sample_rate)
    weights = _weights(channels)
    plan = _SpectrumPlan.for_signal(sample_rate, frames)
    energies = np.zeros((channels, frames // hop))
    power = np.zeros((channels, plan.bins))  # one accumulator per spectrum job
    # stereo float32 with adjacent spectrum segments: the spectrum pass also sums the levels
    tallies = np.zeros((channels, 7)) if channels == 2 and x32 is x and plan.tiles else None
    # Independent passes (the kernels release the GIL), longest first.
    jobs = ([partial(plan.accumulate, x32, power[c], c * plan.count // channels, (c + 1) * plan.count // channels,
                     None if tallies is None else tallies[c]) for c in range(channels)]
            + [partial(_channel_true_peak, x32[c]) for c in range(channels)]
            + [partial(_add_hop_energies, x[c: c + 1], sample_rate, hop, energies[c], weights[c: c + 1])
               for c in range(channels)]
            + [partial(_levels, x, peak) if tallies is None else (lambda: None)])
    workers = usable_cpus() if threads is None else int(threads)
    if workers > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            results = list(pool.map(lambda job: job(), jobs))
    else:
        results = [job() for job in jobs]
    stats = results[-1] if tallies is None else _levels_from_tally(x, tallies.sum(axis=0), plan.count * plan.n, peak)
    tp_linear = max([stats.peak] + results[channels: 2 * channels])
    energies = energies.sum(axis=0)
    freqs, spectrum = _third_octave_bands(*plan.finish(power.sum(axis=0), channels), sample_rate)
    if not np.all(np.isfinite(stats.sums)):
        raise AudioError("the audio contains NaN or infinite sample values")
    peak = stats.peak
    dc = (stats.sums / max(frames, 1)).tolist()
    mean_square = float(stats.squares.sum()) / max(frames * channels, 1)
    rms_dbfs = _db(mean_square, power=True)
    peak_dbfs = _db(peak)

    integrated = gated_integrated(energies, hop)
    momentary = window_loudness(energies, hop, int(round(MOMENTARY_S / HOP_S)))
    short_n = int(round(SHORT_TERM_S / HOP_S))
    short_term = window_loudness(energies, hop, short_n)
    lra = lra_from_short_term(short_term) if short_term.size else math.nan
    tp_dbtp = _db(tp_linear)

    stereo = channels == 2
    metrics = Metrics(
        duration_s=frames / float(sample_rate),
        sample_rate=sample_rate,
        channels=channels,
        integrated_lufs=integrated,
        max_momentary_lufs=float(momentary.max()) if momentary.size else math.nan,
        max_short_term_lufs=float(short_term.max()) if short_term.size else math.nan,
        loudness_range_lu=lra,
        true_peak_dbtp=tp_dbtp,
        sample_peak_dbfs=peak_dbfs,
        plr_db=tp_dbtp - integrated if math.isfinite(integrated) and math.isfinite(tp_dbtp) else math.nan,
        rms_dbfs=rms_dbfs,
        crest_factor_db=peak_dbfs - rms_dbfs if math.isfinite(rms_dbfs) else math.nan,
        correlation=stats.correlation if stereo else math.nan,
        side_mid_ratio_db=stats.side_mid_db if stereo else math.nan,
        dc_offset=[float(v) for v in dc],
        clipped_samples=stats.clipped,
        spectrum_hz=freqs,
        spectrum_db=spectrum,
        short_term_times_s=(np.arange(short_term.size) + short_n) * hop / float(sample_rate),
        short_term_lufs=short_term,
    )
    metrics.warnings = mastering_warnings(metrics)
    return metrics


def mastering_warnings(m: Metrics) -> list[str]:
    """Plain-language problems in ``m`` that a mastering engineer would point out."""
    out = []
    if m.clipped_samples:
        out.append(f"clipping: {m.clipped_samples} samples at or beyond full scale")
    for i, v in enumerate(m.dc_offset):
        if abs(v) > WARN_DC_OFFSET:
            name = ("left", "right")[i] if m.channels == 2 else f"channel {i + 1}"
            out.append(f"DC offset on the {name} channel ({100 * v:+.3f}% of full scale): "
                       "remove it with a high-pass (DC) filter")
    if math.isfinite(m.true_peak_dbtp) and m.true_peak_dbtp > WARN_TRUE_PEAK_DBTP:
        out.append(f"true peak {m.true_peak_dbtp:+.2f} dBTP is above {WARN_TRUE_PEAK_DBTP:g} dBTP: "
                   "it may clip after MP3/AAC encoding or on playback; lower the limiter ceiling")
    if math.isfinite(m.correlation) and m.correlation < WARN_CORRELATION:
        out.append(f"negative stereo correlation ({m.correlation:+.2f}): left and right partly cancel "
                   "in mono; check polarity and stereo-widening effects")
    elif math.isfinite(m.side_mid_ratio_db) and m.side_mid_ratio_db > WARN_SIDE_MID_DB:
        out.append(f"more side than mid energy ({m.side_mid_ratio_db:+.1f} dB): the mix will lose "
                   "level and balance in mono")
    if math.isnan(m.integrated_lufs):
        out.append("shorter than 0.4 s: loudness cannot be measured")
    elif math.isinf(m.integrated_lufs):
        out.append("too quiet to measure loudness (below -70 LUFS)")
    return out
