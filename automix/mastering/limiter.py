"""True-peak limiter: look-ahead, 4x oversampled peak detection, guaranteed ceiling.

Signal flow (all channels linked)::

    peak[n]     = max over channels of |x| at the sample n and at the 4x-interpolated points
                  between n-1 and n+1 (polyphase windowed-sinc interpolation)
    wanted[n]   = min(1, ceiling / peak[n])                        gain that keeps sample n legal
    held[k]     = min(wanted[k .. k+L-1])                          look-ahead hold (L = look-ahead)
    released[k] = held[k] if held[k] < released[k-1]               instant attack
                  else released[k-1] + (1 - a) (held[k] - released[k-1])     exponential release
    gain[n]     = mean(released[n-L+1 .. n])                       ramp of length L
    y[n]        = x[n] * gain[n]

Every ``released[k]`` in the averaging window of ``n`` comes from a ``held[k]`` whose
look-ahead window contains ``n``, so ``gain[n] <= wanted[n]``: the detected peak of every
sample ends at or below the ceiling, and the gain reaches its minimum smoothly over the
look-ahead time *before* the peak (no clicks). The interpolated peaks of the output can
differ slightly from ``gain x`` the detected ones while the gain moves, so
:func:`limit_true_peak` measures the result with :func:`automix.loudness.true_peak_dbtp`
and repeats on the output (and, as the last safety stage, trims the level) until the
ceiling holds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

DETECTOR_MARGIN_DB = 0.02
"""The detector aims this far below the ceiling to absorb the gain's own modulation (dB)."""


@dataclass
class LimiterResult:
    """Output of :func:`limit_true_peak`.

    Attributes
    ----------
    samples : np.ndarray
        ``(channels, samples)`` float32, true peak <= ceiling.
    gain : np.ndarray
        ``(samples,)`` float32 linear gain applied (all passes and the trim).
    max_gain_reduction_db : float
        Largest gain reduction applied (dB, >= 0).
    true_peak_dbtp : float
        Measured true peak of ``samples``.
    passes : int
        Limiter passes needed (1 for almost all material).
    safety_trim_db : float
        Level trim of the final safety stage (0 unless the passes were not enough).
    """

    samples: np.ndarray
    gain: np.ndarray
    max_gain_reduction_db: float

    @property
    def gain_db(self) -> np.ndarray:
        """Applied gain per sample in dB (<= 0)."""
        return 20.0 * np.log10(np.maximum(self.gain.astype(np.float64), 1e-30))
    true_peak_dbtp: float
    passes: int
    safety_trim_db: float


def _detector_phases() -> tuple[np.ndarray, float]:
    """The interpolation phases of the BS.1770 true-peak meter (:mod:`automix.loudness`), so the
    limiter sees exactly the peaks the meter will measure; and their largest L1 norm (gain bound)."""
    from automix.loudness import true_peak_phases

    phases = np.ascontiguousarray(true_peak_phases()[0], dtype=np.float32)  # (3, taps) for x[n-half+1 .. n+half]
    return phases, float(np.abs(phases.astype(np.float64)).sum(axis=1).max()) * 1.001


@njit(cache=True, fastmath=True, parallel=True)
def _peak_envelope(x, phases, threshold, gain_bound):  # pragma: no cover - compiled
    channels, n = x.shape
    n_phases, taps = phases.shape
    half = taps // 2
    block = 64
    n_blocks = (n + block - 1) // block
    # between[k] = largest interpolated |x| between x[k-1] and x[k] over all channels (linked: one
    # row, not one per channel); each block writes only its own entries, so blocks run in parallel
    between = np.zeros(n + 1, np.float32)
    for b in prange(n_blocks):
        start = b * block
        stop = min(n, start + block)
        lo = max(0, start - half)
        hi = min(n, stop + half)
        for c in range(channels):
            local = np.float32(0.0)
            for i in range(lo, hi):
                a = abs(x[c, i])
                if a > local:
                    local = a
            if local * gain_bound < threshold:
                continue  # interpolated peaks here cannot reach the threshold
            for i in range(start, stop):
                if i - half + 1 >= 0 and i + half < n:
                    for p in range(n_phases):
                        acc = np.float32(0.0)
                        for j in range(taps):
                            acc += phases[p, j] * x[c, i - half + 1 + j]
                        a = abs(acc)
                        if a > between[i + 1]:
                            between[i + 1] = a
                else:
                    for p in range(n_phases):
                        acc = np.float32(0.0)
                        for j in range(taps):
                            idx = i - half + 1 + j
                            if 0 <= idx < n:
                                acc += phases[p, j] * x[c, idx]
                        a = abs(acc)
                        if a > between[i + 1]:
                            between[i + 1] = a
    env = np.zeros(n, np.float32)
    for i in prange(n):
        m = max(between[i], between[i + 1])
        for c in range(channels):
            v = abs(x[c, i])
            if v > m:
                m = v
        env[i] = m
    return env


def detect_peaks(x: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """Linked true-peak envelope: per sample, the largest magnitude at it and at the
    4x-interpolated points within one sample on either side.

    Parameters
    ----------
    x : np.ndarray
        ``(channels, samples)``.
    threshold : float
        Interpolation is skipped where it provably cannot reach this linear level (there
        the envelope holds the sample peaks only); 0 computes it everywhere.

    Returns
    -------
    np.ndarray
        ``(samples,)`` float32 linear peak magnitude.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    phases, bound = _detector_phases()
    return _peak_envelope(x, phases, np.float32(threshold), np.float32(bound))


@njit(cache=True, inline="always")
def _extended(wanted, j, L):  # pragma: no cover - compiled
    """``wanted`` with L-1 ones before and after it (no padded copy of a long signal), at index ``j``."""
    i = j - (L - 1)
    if i < 0 or i >= wanted.shape[0]:
        return np.float32(1.0)
    return wanted[i]


@njit(cache=True)
def _lookahead_gain(wanted, lookahead, alpha_release):  # pragma: no cover - compiled
    """Hold (sliding minimum over the next ``lookahead`` samples), release, then moving average."""
    n = wanted.shape[0]
    L = lookahead
    m = n + L - 1
    # held[k] = min(extended[k .. k+L-1]) by a monotonic deque of indices
    # (a ring buffer of L + 1 slots: the deque never holds more than L indices)
    cap = L + 1
    dq = np.empty(cap, np.int64)
    head = 0
    tail = 0
    held = np.empty(m, np.float32)
    for j in range(m + L - 1):
        v = _extended(wanted, j, L)
        while tail > head and _extended(wanted, dq[(tail - 1) % cap], L) >= v:
            tail -= 1
        dq[tail % cap] = j
        tail += 1
        k = j - (L - 1)
        if k >= 0:
            while dq[head % cap] < k:
                head += 1
            held[k] = _extended(wanted, dq[head % cap], L)
    # release smoothing (instant attack)
    r = 1.0
    for k in range(m):
        h = held[k]
        if h < r:
            r = h
        else:
            r = r + (1.0 - alpha_release) * (h - r)
        held[k] = r
    # moving average of length L: gain[t] = mean(released[t .. t+L-1]) (extended indices)
    out = np.empty(n, np.float32)
    acc = 0.0
    for k in range(L):
        acc += held[k]
    if n > 0:
        out[0] = acc / L
    for t in range(1, n):
        acc += held[t + L - 1] - held[t - 1]
        out[t] = acc / L
    return out


def gain_from_peaks(peaks: np.ndarray, sample_rate: int, ceiling_dbtp: float, lookahead_ms: float = 5.0,
                    release_ms: float = 150.0, level: float = 1.0) -> np.ndarray:
    """Limiter gain ``(samples,)`` (linear, <= 1) from a peak envelope (:func:`detect_peaks`).

    The envelope scales with the signal, so a caller trying several input levels detects
    once and passes the linear ``level`` (same as passing ``peaks * level``, without the copy).
    """
    ceiling = 10.0 ** ((ceiling_dbtp - DETECTOR_MARGIN_DB) / 20.0)
    peaks = np.asarray(peaks, dtype=np.float32)
    wanted = peaks * np.float32(level)  # the only whole-length temporary: the rest is in place
    np.maximum(wanted, np.float32(1e-30), out=wanted)
    np.divide(np.float32(ceiling), wanted, out=wanted)
    np.minimum(wanted, np.float32(1.0), out=wanted)
    lookahead = max(1, int(round(lookahead_ms * 1e-3 * sample_rate)))
    alpha = math.exp(-1000.0 / (max(release_ms, 1e-3) * sample_rate))
    return _lookahead_gain(wanted, lookahead, alpha)


def limiter_gain(x: np.ndarray, sample_rate: int, ceiling_dbtp: float, lookahead_ms: float = 5.0,
                 release_ms: float = 150.0) -> np.ndarray:
    """Linear gain per sample ``(samples,)`` that keeps the detected true peak of ``x`` at the ceiling.

    Parameters
    ----------
    x : np.ndarray
        ``(channels, samples)``.
    sample_rate : int
        Hz.
    ceiling_dbtp : float
        Ceiling in dBTP.
    lookahead_ms, release_ms : float
        Look-ahead (= attack ramp) and release time constant in ms.
    """
    threshold = 10.0 ** ((ceiling_dbtp - DETECTOR_MARGIN_DB) / 20.0)
    return gain_from_peaks(detect_peaks(x, threshold), sample_rate, ceiling_dbtp, lookahead_ms, release_ms)


def limit_true_peak(x: np.ndarray, sample_rate: int, ceiling_dbtp: float = -1.0, lookahead_ms: float = 5.0,
                    release_ms: float = 150.0, max_passes: int = 3,
                    first_gain: np.ndarray | None = None, input_gain: float = 1.0) -> LimiterResult:
    """Limit ``x`` so that its true peak (4x oversampled, BS.1770) never exceeds ``ceiling_dbtp``.

    Parameters
    ----------
    x : np.ndarray
        ``(channels, samples)`` full scale +-1 (may exceed it: float input).
    sample_rate : int
        Hz.
    ceiling_dbtp : float
        Ceiling in dBTP.
    lookahead_ms, release_ms : float
        Look-ahead and release in ms.
    max_passes : int
        Limiter passes before the safety trim.
    first_gain : np.ndarray, optional
        Gain of the first pass if already computed (:func:`gain_from_peaks`).
    input_gain : float
        Linear gain applied to ``x`` before the limiter (saves a scaled copy of a long input;
        not counted as gain reduction).

    Returns
    -------
    LimiterResult
    """
    from automix.loudness import true_peak_dbtp

    x = np.asarray(x, dtype=np.float32)
    level = np.float32(input_gain)
    y = x if input_gain == 1.0 else x * level
    total = np.ones(y.shape[-1], dtype=np.float32)
    passes = 0
    if first_gain is not None:
        total = np.asarray(first_gain, dtype=np.float32)
        y = x * (total * level)
        passes = 1
    tp = true_peak_dbtp(y, sample_rate)
    while tp > ceiling_dbtp and passes < max_passes:
        gain = limiter_gain(y, sample_rate, ceiling_dbtp - 0.02 * passes, lookahead_ms, release_ms).astype(np.float32)
        y = y * gain
        total = total * gain
        passes += 1
        tp = true_peak_dbtp(y, sample_rate)
    trim_db = 0.0
    while tp > ceiling_dbtp:  # safety stage: a plain level trim
        trim_db += (tp - ceiling_dbtp) + 0.01
        y = x * (total * (level * np.float32(10.0 ** (-trim_db / 20.0))))
        tp = true_peak_dbtp(y, sample_rate)
    if trim_db:
        total = total * np.float32(10.0 ** (-trim_db / 20.0))
    smallest = float(total.min()) if total.size else 1.0
    return LimiterResult(samples=y, gain=total, max_gain_reduction_db=max(0.0, float(-20.0 * math.log10(max(smallest, 1e-30)))),
                         true_peak_dbtp=float(tp), passes=passes, safety_trim_db=trim_db)
