"""Numba kernels of the meters in :mod:`automix.loudness` (one pass each, no temporaries).

Analysing a whole song must cost about as much as decoding it, so the per-sample work
is fused: K-weighting and 100 ms block energies in one recursion (run on SIMD lanes over
stretches of the signal), the 4x true-peak interpolation with its running maximum, and
every level/stereo sum in one vectorised sweep.
Compiled on first use and cached on disk (``cache=True``).
"""
from __future__ import annotations

import numpy as np
from numba import njit

#: fastmath flags that allow vectorised reductions but keep inf/NaN semantics.
_REDUCE = {"reassoc", "contract", "nsz", "arcp"}
#: Outputs per vectorised pass of the true-peak interpolator.
_CHUNK = 512


#: Independent stretches of the signal the K-weighting recursion runs on side by side
#: (SIMD lanes: the recursion is serial in time, so parallelism comes from splitting time).
LANES = 16
#: Samples per lane gathered into the cache-resident lane buffer at a time.
_LANE_CHUNK = 256


@njit(cache=True, nogil=True, fastmath={"contract"})
def k_weighted_hop_energies(x, sos, weights, hop, out, warmup_hops):  # pragma: no cover - compiled
    """Add the channel-weighted energy of each hop of the K-weighted signal to ``out``.

    ``out[h] += sum_c weights[c] * sum(y_c[h*hop : (h+1)*hop]**2)`` where ``y_c`` is
    ``x[c]`` (zero before it starts) through both sections of ``sos``.

    The hops are split into :data:`LANES` consecutive runs that are filtered side by
    side, one SIMD lane each. Each run but the first starts ``warmup_hops`` hops early
    from a zero state, so that its state has converged to the true one (to rounding) by
    the time its own hops begin: the caller sizes the warm-up from the filter's
    slowest pole (``|pole|**warm-up`` far below float64 rounding). The first run
    starts at the signal's start, exactly as a plain recursion does.

    Parameters
    ----------
    x : (C, T) float32 or float64
    sos : (2, 6) float64, normalised sections ``(b0, b1, b2, 1, a1, a2)`` (transposed DF-II)
    weights : (C,) float64, BS.1770 channel weights
    hop : int, samples per hop
    out : (n_hops,) float64, accumulated in place; ``n_hops * hop <= T``
    warmup_hops : int, hops each run is started early
    """
    n_hops = out.shape[0]
    if n_hops == 0:
        return
    channels = x.shape[0]
    end = n_hops * hop
    per_lane = (n_hops + LANES - 1) // LANES
    span = per_lane * hop
    warm = warmup_hops * hop
    # Transposed DF-II rewritten so that each state update needs one multiply-add of
    # the previous state (y = b0 u + s0; s0' = (b1 - a1 b0) u + s1 - a1 s0;
    # s1' = (b2 - a2 b0) u - a2 s0): a shorter dependency chain per sample.
    b00, a01, a02 = sos[0, 0], sos[0, 4], sos[0, 5]
    k01, k02 = sos[0, 1] - a01 * b00, sos[0, 2] - a02 * b00
    b10, a11, a12 = sos[1, 0], sos[1, 4], sos[1, 5]
    k11, k12 = sos[1, 1] - a11 * b10, sos[1, 2] - a12 * b10
    buf = np.empty(_LANE_CHUNK * LANES, dtype=np.float64)  # buf[k * LANES + j]: step k of lane j
    s0 = np.empty(LANES)
    s1 = np.empty(LANES)
    s2 = np.empty(LANES)
    s3 = np.empty(LANES)
    acc = np.empty(LANES)
    for c in range(channels):
        s0[:] = 0.0
        s1[:] = 0.0
        s2[:] = 0.0
        s3[:] = 0.0
        for h in range(-warmup_hops, per_lane):
            acc[:] = 0.0
            for k0 in range(0, hop, _LANE_CHUNK):
                m = min(_LANE_CHUNK, hop - k0)
                for j in range(LANES):
                    t0 = j * span + h * hop + k0
                    if t0 >= 0 and t0 + m <= end:
                        for k in range(m):
                            buf[k * LANES + j] = x[c, t0 + k]
                    else:  # before the start: silence; past the end: any signal (its hops are
                        # dropped) but not silence, whose decaying tail would go denormal
                        for k in range(m):
                            t = t0 + k
                            buf[k * LANES + j] = 0.0 if t < 0 else x[c, t % end]
                for k in range(m):
                    base = k * LANES
                    for j in range(LANES):
                        u = buf[base + j]
                        p = s0[j]
                        y = b00 * u + p
                        s0[j] = k01 * u + s1[j] - a01 * p
                        s1[j] = k02 * u - a02 * p
                        q = s2[j]
                        z = b10 * y + q
                        s2[j] = k11 * y + s3[j] - a11 * q
                        s3[j] = k12 * y - a12 * q
                        acc[j] += z * z
            if h >= 0:
                for j in range(LANES):
                    index = j * per_lane + h
                    if index < n_hops:
                        out[index] += weights[c] * acc[j]


@njit(cache=True, nogil=True, fastmath=_REDUCE)
def level_sums(x, clip_level, sums, stereo):  # pragma: no cover - compiled
    """Level sums of ``x`` in one vectorised pass; returns the clipped-sample count.

    Fills ``sums[c] = (sum, sum of squares)`` of each channel and, for stereo,
    ``stereo = (sum(L*R), sum((L-R)**2))``; counts samples with ``|x| >= clip_level``.
    NaN/Inf samples make the sums non-finite (how callers detect them).

    Parameters
    ----------
    x : (C, T) float32 or float64
    clip_level : float
    sums : (C, 2) float64, output
    stereo : (2,) float64, output (left untouched unless ``C == 2``)
    """
    channels, frames = x.shape
    clipped = 0
    if channels == 2:  # one pass over both channels
        left = x[0]
        right = x[1]
        total_l = total_r = square_l = square_r = cross = side = 0.0
        for t in range(frames):
            u = np.float64(left[t])
            v = np.float64(right[t])
            total_l += u
            total_r += v
            square_l += u * u
            square_r += v * v
            cross += u * v
            side += (u - v) * (u - v)
            clipped += (abs(u) >= clip_level) + (abs(v) >= clip_level)
        sums[0, 0], sums[0, 1], sums[1, 0], sums[1, 1] = total_l, square_l, total_r, square_r
        stereo[0], stereo[1] = cross, side
        return clipped
    for c in range(channels):
        row = x[c]
        total = 0.0
        square = 0.0
        for t in range(frames):
            u = np.float64(row[t])
            total += u
            square += u * u
            clipped += abs(u) >= clip_level
        sums[c, 0], sums[c, 1] = total, square
    return clipped


@njit(cache=True, nogil=True, fastmath=_REDUCE)
def interpolated_abs_max(src, h, start, stop):  # pragma: no cover - compiled
    """``max |sum_i h[p, i] * src[n + i]|`` over the 3 phases ``p`` of a 12-tap ``h`` and ``start <= n < stop``.

    Taps are held in registers and the outputs of a chunk are computed side by side
    (vectorised), each keeping its own running maximum (``lanes``).
    """
    a0, a1, a2, a3, a4, a5 = h[0, 0], h[0, 1], h[0, 2], h[0, 3], h[0, 4], h[0, 5]
    a6, a7, a8, a9, a10, a11 = h[0, 6], h[0, 7], h[0, 8], h[0, 9], h[0, 10], h[0, 11]
    b0, b1, b2, b3, b4, b5 = h[1, 0], h[1, 1], h[1, 2], h[1, 3], h[1, 4], h[1, 5]
    b6, b7, b8, b9, b10, b11 = h[1, 6], h[1, 7], h[1, 8], h[1, 9], h[1, 10], h[1, 11]
    c0, c1, c2, c3, c4, c5 = h[2, 0], h[2, 1], h[2, 2], h[2, 3], h[2, 4], h[2, 5]
    c6, c7, c8, c9, c10, c11 = h[2, 6], h[2, 7], h[2, 8], h[2, 9], h[2, 10], h[2, 11]
    lanes = np.zeros(_CHUNK, dtype=np.float32)
    for n0 in range(start, stop, _CHUNK):
        m = min(_CHUNK, stop - n0)
        s = src[n0: n0 + m + 11]  # a slice: plain non-negative indices vectorise
        for j in range(m):
            x0, x1, x2, x3, x4, x5 = s[j], s[j + 1], s[j + 2], s[j + 3], s[j + 4], s[j + 5]
            x6, x7, x8, x9, x10, x11 = s[j + 6], s[j + 7], s[j + 8], s[j + 9], s[j + 10], s[j + 11]
            u = (a0 * x0 + a1 * x1 + a2 * x2 + a3 * x3 + a4 * x4 + a5 * x5
                 + a6 * x6 + a7 * x7 + a8 * x8 + a9 * x9 + a10 * x10 + a11 * x11)
            v = (b0 * x0 + b1 * x1 + b2 * x2 + b3 * x3 + b4 * x4 + b5 * x5
                 + b6 * x6 + b7 * x7 + b8 * x8 + b9 * x9 + b10 * x10 + b11 * x11)
            w = (c0 * x0 + c1 * x1 + c2 * x2 + c3 * x3 + c4 * x4 + c5 * x5
                 + c6 * x6 + c7 * x7 + c8 * x8 + c9 * x9 + c10 * x10 + c11 * x11)
            u = max(max(abs(u), abs(v)), abs(w))
            lanes[j] = u if u > lanes[j] else lanes[j]
    best = np.float32(0.0)
    for j in range(_CHUNK):
        best = max(best, lanes[j])
    return best


@njit(cache=True, nogil=True, fastmath=_REDUCE)
def windowed_pairs(left, right, hop, window, first, z, clip_level, tally):  # pragma: no cover - compiled
    """Fill ``z[b]`` with segment ``first + b`` of ``left`` (real part) and of ``right``
    (imaginary part), both multiplied by ``window``.

    Segment ``s`` of a channel is ``channel[s * hop: s * hop + len(window)]``. Packing two
    real segments into one complex transform gives both their spectra at once (see
    :func:`accumulate_pair_power`), in place in ``z`` (``(B, n)`` complex64).

    When ``tally`` has 7 entries (give it only for adjacent segments, so that each sample
    is seen once), the level sums of the segments' samples are added to it on the way:
    ``(sum L, sum R, sum L**2, sum R**2, sum L*R, sum (L-R)**2, count of |x| >= clip_level)``.
    """
    n = window.shape[0]
    sums = tally.shape[0] == 7
    for b in range(z.shape[0]):
        start = (first + b) * hop
        re = left[start: start + n]
        im = right[start: start + n]
        row = z[b]
        if sums:
            total_l = total_r = square_l = square_r = cross = side = clipped = 0.0
            for i in range(n):
                u = re[i]
                v = im[i]
                row[i] = complex(u * window[i], v * window[i])
                p = np.float64(u)
                q = np.float64(v)
                total_l += p
                total_r += q
                square_l += p * p
                square_r += q * q
                cross += p * q
                side += (p - q) * (p - q)
                clipped += (abs(p) >= clip_level) + (abs(q) >= clip_level)
            tally[0] += total_l
            tally[1] += total_r
            tally[2] += square_l
            tally[3] += square_r
            tally[4] += cross
            tally[5] += side
            tally[6] += clipped
        else:
            for i in range(n):
                row[i] = complex(re[i] * window[i], im[i] * window[i])


@njit(cache=True, nogil=True, fastmath=_REDUCE)
def accumulate_power(spectra, acc):  # pragma: no cover - compiled
    """``acc[k] += sum_s |spectra[s, k]|**2`` (complex spectra, float64 accumulator)."""
    for s in range(spectra.shape[0]):
        for k in range(spectra.shape[1]):
            v = spectra[s, k]
            acc[k] += np.float64(v.real * v.real + v.imag * v.imag)


@njit(cache=True, nogil=True, fastmath=_REDUCE)
def accumulate_pair_power(z, acc):  # pragma: no cover - compiled
    """``acc[k] += |A_k|**2 + |B_k|**2`` summed over the rows of ``z``, each the transform of ``a + i b``.

    For real ``a`` and ``b``, ``Z_k = A_k + i B_k`` and ``Z_{n-k} = conj(A_k) + i conj(B_k)``,
    so ``|Z_k|**2 + |Z_{n-k}|**2 = 2 (|A_k|**2 + |B_k|**2)`` (bins ``0 <= k <= n/2``).
    """
    n = z.shape[1]
    for s in range(z.shape[0]):
        row = z[s]
        v = row[0]
        acc[0] += np.float64(v.real * v.real + v.imag * v.imag)
        mirror = row[::-1]  # mirror[k - 1] = Z_{n-k}
        for k in range(1, (n + 1) // 2):
            a = row[k]
            b = mirror[k - 1]
            acc[k] += 0.5 * np.float64(a.real * a.real + a.imag * a.imag + b.real * b.real + b.imag * b.imag)
        if n % 2 == 0:
            v = row[n // 2]
            acc[n // 2] += np.float64(v.real * v.real + v.imag * v.imag)
