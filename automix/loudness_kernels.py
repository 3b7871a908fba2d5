"""Numba kernels of the meters in :mod:`automix.loudness` (one pass each, no temporaries).

Analysing a whole song must cost about as much as decoding it, so the per-sample work
is fused: K-weighting and 100 ms block energies in one recursion, the 4x true-peak
interpolation with its running maximum, and every level/stereo sum in one sweep.
Compiled on first use and cached on disk (``cache=True``).
"""
from __future__ import annotations

import numpy as np
from numba import njit

#: fastmath flags that allow vectorised reductions but keep inf/NaN semantics.
_REDUCE = {"reassoc", "contract", "nsz", "arcp"}
#: Outputs per vectorised pass of the true-peak interpolator.
_CHUNK = 512


@njit(cache=True)
def k_weighted_hop_energies(x, sos, weights, hop, out):  # pragma: no cover - compiled
    """Add ``weights[c] * sum(y_c**2)`` of each hop of the K-weighted signal to ``out``.

    Channels are filtered two at a time (independent recursions interleave on the CPU).

    Parameters
    ----------
    x : (C, T) float32 or float64
    sos : (2, 6) float64, normalised sections ``(b0, b1, b2, 1, a1, a2)`` (transposed DF-II)
    weights : (C,) float64, BS.1770 channel weights
    hop : int, samples per hop
    out : (n_hops,) float64, accumulated in place; ``n_hops * hop <= T``
    """
    n_hops = out.shape[0]
    b00, b01, b02, a01, a02 = sos[0, 0], sos[0, 1], sos[0, 2], sos[0, 4], sos[0, 5]
    b10, b11, b12, a11, a12 = sos[1, 0], sos[1, 1], sos[1, 2], sos[1, 4], sos[1, 5]
    channels = x.shape[0]
    for c in range(0, channels, 2):
        d = c + 1 if c + 1 < channels else c  # odd count: the last channel runs alone
        wc = weights[c]
        wd = weights[d] if d != c else 0.0
        p00 = p01 = p10 = p11 = 0.0
        q00 = q01 = q10 = q11 = 0.0
        for h in range(n_hops):
            acc_c = 0.0
            acc_d = 0.0
            for t in range(h * hop, (h + 1) * hop):
                u = np.float64(x[c, t])
                v = np.float64(x[d, t])
                yu = b00 * u + p00
                yv = b00 * v + q00
                p00 = b01 * u - a01 * yu + p01
                q00 = b01 * v - a01 * yv + q01
                p01 = b02 * u - a02 * yu
                q01 = b02 * v - a02 * yv
                zu = b10 * yu + p10
                zv = b10 * yv + q10
                p10 = b11 * yu - a11 * zu + p11
                q10 = b11 * yv - a11 * zv + q11
                p11 = b12 * yu - a12 * zu
                q11 = b12 * yv - a12 * zv
                acc_c += zu * zu
                acc_d += zv * zv
            out[h] += wc * acc_c + wd * acc_d


@njit(cache=True, fastmath=_REDUCE)
def _interpolated_abs_max(padded, phases, start, stop, acc):  # pragma: no cover - compiled
    """``max |sum_i phases[p, i] * padded[n + i]|`` over phases ``p`` and ``start <= n < stop``.

    ``acc`` is a ``(phases, _CHUNK)`` float32 scratch; the loops run tap by tap over a
    chunk of outputs so that they vectorise.
    """
    best = np.float32(0.0)
    n_phases, taps = phases.shape
    for n0 in range(start, stop, _CHUNK):
        m = min(_CHUNK, stop - n0)
        for p in range(n_phases):
            row = acc[p]
            for j in range(m):
                row[j] = 0.0
        for i in range(taps):
            x = padded[n0 + i: n0 + i + m]
            for p in range(n_phases):
                h = phases[p, i]
                row = acc[p]
                for j in range(m):
                    row[j] += h * x[j]
        for p in range(n_phases):
            row = acc[p]
            for j in range(m):
                best = max(best, abs(row[j]))
    return best


@njit(cache=True, fastmath=_REDUCE)
def true_peak_channel(padded, phases, n_out, block, gain_bound, best):  # pragma: no cover - compiled
    """Largest interpolated magnitude of one channel, at least ``best``.

    ``padded`` holds the channel with ``taps // 2`` zeros on each side; output ``n``
    (``0 <= n < n_out``) is computed from ``padded[n : n + taps]``. Blocks of ``block``
    outputs are visited loudest first; a block whose sample peak times ``gain_bound``
    (the largest L1 norm of a phase) cannot beat ``best`` ends the search.
    """
    taps = phases.shape[1]
    n_blocks = (n_out + block - 1) // block
    bound = np.empty(n_blocks)
    for b in range(n_blocks):
        lo = b * block
        hi = min(lo + block, n_out) + taps - 1
        peak = np.float32(0.0)
        for t in range(lo, hi):
            a = abs(padded[t])
            if a > peak:
                peak = a
        bound[b] = peak * gain_bound
    order = np.argsort(-bound)
    acc = np.empty((phases.shape[0], _CHUNK), dtype=np.float32)
    for b in order:
        if bound[b] <= best:
            break
        found = _interpolated_abs_max(padded, phases, b * block, min((b + 1) * block, n_out), acc)
        if found > best:
            best = found
    return best


@njit(cache=True, fastmath=_REDUCE)
def channel_stats(x, clip_level):  # pragma: no cover - compiled
    """Per-channel max, min, sum and sum of squares, and the count of ``|x| >= clip_level``.

    Returns ``(maxima (C,), minima (C,), sums (C,), squares (C,), clipped)`` in float64.
    """
    channels, frames = x.shape
    maxima = np.empty(channels)
    minima = np.empty(channels)
    sums = np.empty(channels)
    squares = np.empty(channels)
    clipped = 0
    for c in range(channels):
        hi = -np.inf
        lo = np.inf
        s = 0.0
        q = 0.0
        for t in range(frames):
            v = np.float64(x[c, t])
            hi = max(hi, v)
            lo = min(lo, v)
            s += v
            q += v * v
        maxima[c], minima[c], sums[c], squares[c] = hi, lo, s, q
        if hi >= clip_level or lo <= -clip_level:
            for t in range(frames):
                if abs(x[c, t]) >= clip_level:
                    clipped += 1
    return maxima, minima, sums, squares, clipped


@njit(cache=True, fastmath=_REDUCE)
def stereo_sums(left, right):  # pragma: no cover - compiled
    """``(sum(L*R), sum((L-R)**2))`` in float64."""
    cross = 0.0
    side = 0.0
    for t in range(left.shape[0]):
        a = np.float64(left[t])
        b = np.float64(right[t])
        cross += a * b
        d = a - b
        side += d * d
    return cross, side
