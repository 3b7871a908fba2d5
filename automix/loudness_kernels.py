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
_CHUNK = 256


@njit(cache=True, nogil=True)
def k_weighted_hop_energies(x, sos, weights, hop, out, levels, stereo):  # pragma: no cover - compiled
    """One sweep over ``x``: K-weighted hop energies plus the plain level statistics.

    Adds ``weights[c] * sum(y_c**2)`` of each hop of the K-weighted signal ``y`` to
    ``out``, and fills ``levels[c] = (max, min, sum, sum of squares)`` of ``x`` and, for
    stereo, ``stereo = (sum(L*R), sum((L-R)**2))``. Channels run two at a time (the
    independent recursions interleave on the CPU; the sums come for free beside them).

    Parameters
    ----------
    x : (C, T) float32 or float64
    sos : (2, 6) float64, normalised sections ``(b0, b1, b2, 1, a1, a2)`` (transposed DF-II)
    weights : (C,) float64, BS.1770 channel weights
    hop : int, samples per hop
    out : (n_hops,) float64, accumulated in place; ``n_hops * hop <= T``
    levels : (C, 4) float64, output
    stereo : (2,) float64, output (left untouched unless ``C == 2``)
    """
    n_hops = out.shape[0]
    channels, frames = x.shape
    # Transposed DF-II rewritten so that each state update needs one multiply-add of
    # the previous state (y = b0 u + s0; s0' = (b1 - a1 b0) u + s1 - a1 s0;
    # s1' = (b2 - a2 b0) u - a2 s0): a shorter dependency chain per sample.
    b00, a01, a02 = sos[0, 0], sos[0, 4], sos[0, 5]
    k01, k02 = sos[0, 1] - a01 * b00, sos[0, 2] - a02 * b00
    b10, a11, a12 = sos[1, 0], sos[1, 4], sos[1, 5]
    k11, k12 = sos[1, 1] - a11 * b10, sos[1, 2] - a12 * b10
    for c in range(0, channels, 2):
        d = c + 1 if c + 1 < channels else c  # odd count: the last channel runs alone
        wc = weights[c]
        wd = weights[d] if d != c else 0.0
        p00 = p01 = p10 = p11 = 0.0
        q00 = q01 = q10 = q11 = 0.0
        hi_c = hi_d = -np.inf
        lo_c = lo_d = np.inf
        sum_c = sum_d = sq_c = sq_d = cross = side = 0.0
        for h in range(n_hops + 1):
            acc_c = 0.0
            acc_d = 0.0
            stop = (h + 1) * hop if h < n_hops else frames
            for t in range(h * hop, stop):
                u = np.float64(x[c, t])
                v = np.float64(x[d, t])
                yu = b00 * u + p00
                yv = b00 * v + q00
                p00, p01 = k01 * u + p01 - a01 * p00, k02 * u - a02 * p00
                q00, q01 = k01 * v + q01 - a01 * q00, k02 * v - a02 * q00
                zu = b10 * yu + p10
                zv = b10 * yv + q10
                p10, p11 = k11 * yu + p11 - a11 * p10, k12 * yu - a12 * p10
                q10, q11 = k11 * yv + q11 - a11 * q10, k12 * yv - a12 * q10
                acc_c += zu * zu
                acc_d += zv * zv
                hi_c = max(hi_c, u)
                hi_d = max(hi_d, v)
                lo_c = min(lo_c, u)
                lo_d = min(lo_d, v)
                sum_c += u
                sum_d += v
                sq_c += u * u
                sq_d += v * v
                cross += u * v
                side += (u - v) * (u - v)
            if h < n_hops:
                out[h] += wc * acc_c + wd * acc_d
        levels[c, 0], levels[c, 1], levels[c, 2], levels[c, 3] = hi_c, lo_c, sum_c, sq_c
        levels[d, 0], levels[d, 1], levels[d, 2], levels[d, 3] = hi_d, lo_d, sum_d, sq_d
        if channels == 2:
            stereo[0], stereo[1] = cross, side


@njit(cache=True, nogil=True, fastmath=_REDUCE)
def _interpolated_abs_max(src, phases, start, stop, acc, lanes):  # pragma: no cover - compiled
    """``max |sum_i phases[p, i] * src[n + i]|`` over phases ``p`` and ``start <= n < stop``.

    ``acc`` (``(phases, _CHUNK)``) and ``lanes`` (``(_CHUNK,)``) are float32 scratch. The
    loops run tap by tap over a chunk of outputs, and the running maximum is kept per
    lane (element-wise, no loop-carried dependency), so that everything vectorises.
    """
    n_phases, taps = phases.shape
    last = taps - 1
    for j in range(_CHUNK):
        lanes[j] = 0.0
    for n0 in range(start, stop, _CHUNK):
        m = min(_CHUNK, stop - n0)
        for p in range(n_phases):
            row = acc[p]
            for j in range(m):
                row[j] = 0.0
        for i in range(last):
            x = src[n0 + i: n0 + i + m]
            for p in range(n_phases):
                h = phases[p, i]
                row = acc[p]
                for j in range(m):
                    row[j] += h * x[j]
        x = src[n0 + last: n0 + last + m]
        for p in range(n_phases):
            h = phases[p, last]
            row = acc[p]
            for j in range(m):
                v = abs(row[j] + h * x[j])
                lanes[j] = v if v > lanes[j] else lanes[j]
    best = np.float32(0.0)
    for j in range(_CHUNK):
        best = max(best, lanes[j])
    return best


@njit(cache=True, nogil=True, fastmath=_REDUCE)
def true_peak_block_peaks(x, taps, block):  # pragma: no cover - compiled
    """Largest ``|x|`` under the taps of each block of ``block`` interpolated outputs.

    Output ``n`` (``0 <= n <= T``) lies between ``x[n-1]`` and ``x[n]`` and is computed
    from ``x[n - taps//2 : n + taps//2]`` (zero outside the signal), so its magnitude is
    at most a phase's L1 norm times the block's value here.
    """
    frames = x.shape[0]
    half = taps // 2
    n_out = frames + 1
    n_blocks = (n_out + block - 1) // block
    peaks = np.empty(n_blocks, dtype=np.float32)
    for b in range(n_blocks):
        lo = max(b * block - half, 0)
        hi = min(min((b + 1) * block, n_out) - 1 + half, frames)
        peak = np.float32(0.0)
        for t in range(lo, hi):
            peak = max(peak, abs(x[t]))
        peaks[b] = peak
    return peaks


@njit(cache=True, nogil=True, fastmath=_REDUCE)
def true_peak_blocks(x, phases, near, gain_bound, outer_gain, block, peaks, order, best):  # pragma: no cover - compiled
    """Largest interpolated magnitude of one channel ``x``, at least ``best``.

    Blocks are visited in ``order`` (loudest sample peak first) until a block's
    ``peaks * gain_bound`` (``gain_bound``: the largest L1 norm of a phase) cannot beat
    the running maximum. Each remaining block is first measured with the ``near`` taps
    only (the centre columns of ``phases``): the full interpolation is computed only if
    that partial sum plus ``outer_gain`` (the largest L1 norm of the left-out taps)
    times the block's peak can beat the running maximum. Blocks at the ends of the
    signal are copied with their zero padding into a scratch buffer.
    """
    frames = x.shape[0]
    taps = phases.shape[1]
    half = taps // 2
    skip = (taps - near.shape[1]) // 2  # taps left out on each side by ``near``
    n_out = frames + 1
    acc = np.empty((phases.shape[0], _CHUNK), dtype=np.float32)
    lanes = np.empty(_CHUNK, dtype=np.float32)
    scratch = np.zeros(block + taps - 1, dtype=np.float32)
    for b in order:
        if peaks[b] * gain_bound <= best:
            break
        lo = b * block
        hi = min(lo + block, n_out)
        first = lo - half  # x index of the first tap of output lo
        if first >= 0 and hi - 1 - half + taps <= frames:
            src, start = x, first
        else:
            for k in range(hi - lo + taps - 1):
                t = first + k
                scratch[k] = x[t] if 0 <= t < frames else np.float32(0.0)
            src, start = scratch, 0
        partial = _interpolated_abs_max(src, near, start + skip, start + skip + hi - lo, acc, lanes)
        if partial + outer_gain * peaks[b] <= best:
            continue
        found = _interpolated_abs_max(src, phases, start, start + hi - lo, acc, lanes)
        if found > best:
            best = found
    return best


@njit(cache=True, nogil=True, fastmath=_REDUCE)
def accumulate_power(spectra, acc):  # pragma: no cover - compiled
    """``acc[k] += sum_s |spectra[s, k]|**2`` (complex spectra, float64 accumulator)."""
    for s in range(spectra.shape[0]):
        for k in range(spectra.shape[1]):
            v = spectra[s, k]
            acc[k] += np.float64(v.real * v.real + v.imag * v.imag)
