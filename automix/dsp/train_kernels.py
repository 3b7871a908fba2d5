"""Numba kernels of the console's differentiable (training) path, forward and exact backward.

:mod:`automix.dsp.kernels` holds the recursions of final renders; these are the pieces
that training differentiates through, each a pair of kernels (forward, adjoint) wrapped
in a ``torch.autograd.Function`` by :mod:`automix.dsp.eq` and :mod:`automix.dsp.compressor`:

* :func:`cascade_response` / :func:`cascade_response_backward` -- the complex response of
  a biquad cascade on a DFT grid (the fast EQ's frequency sampling), about a hundred times
  cheaper than the same product of complex tensors in torch.
* :func:`compressor_forward` / :func:`compressor_backward` -- the whole compressor
  (linked detector, soft-knee gain computer, attack/release smoother, gain) in one pass
  over the samples, and its adjoint, which recomputes the forward pass row by row
  (nothing of size T is kept between forward and backward but the input).

Determinism: every kernel runs its rows in parallel (``prange``) but each row -- and every
sum that belongs to it (a row's parameter gradients) -- serially in sample order, so the
results do not depend on the number of threads or on how busy the machine is. Sums over
rows are left to torch on the returned per-row arrays.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

_CACHE = True
_LN10 = math.log(10.0)
_LEVEL_FLOOR = 1e-10  # automix.dsp.compressor.LEVEL_FLOOR
_MIN_KNEE_DB = 1e-6  # automix.dsp.compressor.gain_computer_db's clamp


# ----------------------------------------------------------------------------- EQ response
@njit(parallel=True, cache=_CACHE)
def cascade_response(coef, cos1, sin1, cos2, sin2, out):  # pragma: no cover - compiled
    """Response of the cascades ``coef`` (N, K, 5) = ``(b0, b1, b2, a1, a2)`` (``a0 = 1``).

    ``cos1, sin1, cos2, sin2`` (F,) are ``cos w, sin w, cos 2w, sin 2w`` of the bins;
    ``out`` (N, F, 2) receives the real and imaginary parts of ``prod_k B_k / A_k``.
    """
    n_rows, n_sec = coef.shape[0], coef.shape[1]
    n_bins = cos1.shape[0]
    for i in prange(n_rows):
        for f in range(n_bins):
            c1, s1, c2, s2 = cos1[f], sin1[f], cos2[f], sin2[f]
            hr, hi = 1.0, 0.0
            for k in range(n_sec):
                br = coef[i, k, 0] + coef[i, k, 1] * c1 + coef[i, k, 2] * c2
                bi = -(coef[i, k, 1] * s1 + coef[i, k, 2] * s2)
                ar = 1.0 + coef[i, k, 3] * c1 + coef[i, k, 4] * c2
                ai = -(coef[i, k, 3] * s1 + coef[i, k, 4] * s2)
                den = ar * ar + ai * ai
                qr = (br * ar + bi * ai) / den  # B / A
                qi = (bi * ar - br * ai) / den
                hr, hi = hr * qr - hi * qi, hr * qi + hi * qr
            out[i, f, 0] = hr
            out[i, f, 1] = hi


@njit(parallel=True, cache=_CACHE)
def cascade_response_backward(coef, cos1, sin1, cos2, sin2, grad, grad_coef):  # pragma: no cover
    """Adjoint of :func:`cascade_response`: ``grad`` (N, F, 2) -> ``grad_coef`` (N, K, 5).

    With ``P_k`` the product of the other sections' responses,
    ``dH/db_j = P_k e^{-ijw} / A_k`` and ``dH/da_j = -P_k (B_k / A_k) e^{-ijw} / A_k``; the
    real gradient is ``Re(conj(g) dH/dc)`` summed over the bins in order. ``P_k`` comes from
    prefix and suffix products, so a section with a zero on the grid (a high-pass at DC)
    needs no division by it.
    """
    n_rows, n_sec = coef.shape[0], coef.shape[1]
    n_bins = cos1.shape[0]
    for i in prange(n_rows):
        qr = np.empty(n_sec)
        qi = np.empty(n_sec)
        iar = np.empty(n_sec)  # 1 / A_k
        iai = np.empty(n_sec)
        pre_r = np.empty(n_sec + 1)
        pre_i = np.empty(n_sec + 1)
        acc = np.zeros((n_sec, 5))
        for f in range(n_bins):
            c1, s1, c2, s2 = cos1[f], sin1[f], cos2[f], sin2[f]
            for k in range(n_sec):
                br = coef[i, k, 0] + coef[i, k, 1] * c1 + coef[i, k, 2] * c2
                bi = -(coef[i, k, 1] * s1 + coef[i, k, 2] * s2)
                ar = 1.0 + coef[i, k, 3] * c1 + coef[i, k, 4] * c2
                ai = -(coef[i, k, 3] * s1 + coef[i, k, 4] * s2)
                den = ar * ar + ai * ai
                iar[k] = ar / den
                iai[k] = -ai / den
                qr[k] = br * iar[k] - bi * iai[k]
                qi[k] = br * iai[k] + bi * iar[k]
            pre_r[0], pre_i[0] = 1.0, 0.0
            for k in range(n_sec):
                pre_r[k + 1] = pre_r[k] * qr[k] - pre_i[k] * qi[k]
                pre_i[k + 1] = pre_r[k] * qi[k] + pre_i[k] * qr[k]
            gr, gi = grad[i, f, 0], grad[i, f, 1]
            suf_r, suf_i = 1.0, 0.0
            for k in range(n_sec - 1, -1, -1):
                # P_k / A_k = prefix * suffix / A_k
                pr = pre_r[k] * suf_r - pre_i[k] * suf_i
                pi = pre_r[k] * suf_i + pre_i[k] * suf_r
                dr = pr * iar[k] - pi * iai[k]
                di = pr * iai[k] + pi * iar[k]
                # e^{-ijw} for j = 0, 1, 2
                e_r = (1.0, c1, c2)
                e_i = (0.0, -s1, -s2)
                for j in range(3):
                    vr = dr * e_r[j] - di * e_i[j]
                    vi = dr * e_i[j] + di * e_r[j]
                    acc[k, j] += gr * vr + gi * vi
                    if j > 0:  # a_j: -(Q_k) * v
                        wr = -(qr[k] * vr - qi[k] * vi)
                        wi = -(qr[k] * vi + qi[k] * vr)
                        acc[k, 2 + j] += gr * wr + gi * wi
                suf_r, suf_i = suf_r * qr[k] - suf_i * qi[k], suf_r * qi[k] + suf_i * qr[k]
        grad_coef[i, :, :] = acc


# ----------------------------------------------------------------------------- compressor
@njit(cache=True, inline="always")
def _gain_computer(level_db, threshold_db, slope, knee_db):  # pragma: no cover - compiled
    """(target dB, region): region 0 below the knee, 1 inside, 2 above (as gain_computer_db)."""
    over = level_db - threshold_db
    if 2.0 * over >= knee_db:
        return slope * over, 2
    if 2.0 * over <= -knee_db:
        return 0.0, 0
    u = over + 0.5 * knee_db
    return slope * u * u / (2.0 * knee_db), 1


@njit(parallel=True, cache=_CACHE)
def compressor_forward(x, params, y):  # pragma: no cover - compiled
    """Compress rows ``x`` (M, C, T) into ``y``; ``params`` (M, 6) float64 per row:
    ``threshold_db, ratio, knee_db, makeup_db, alpha_attack, alpha_release``.

    Channels linked (mean power), smoothing from 0 dB; the semantics of
    :func:`automix.dsp.compressor.compress`, in float64 inside.
    """
    n_rows, n_ch, n_samples = x.shape
    for i in prange(n_rows):
        thr, ratio, knee, makeup, aa, ar = (params[i, 0], params[i, 1], params[i, 2], params[i, 3],
                                            params[i, 4], params[i, 5])
        knee = max(knee, _MIN_KNEE_DB)
        slope = 1.0 / ratio - 1.0
        if ratio == 1.0:  # the target is 0 dB throughout, so is the smoothed gain: make-up only
            lin = math.exp(makeup * (_LN10 / 20.0))
            for c in range(n_ch):
                for t in range(n_samples):
                    y[i, c, t] = x[i, c, t] * lin
            continue
        g = 0.0
        for t in range(n_samples):
            p = 0.0
            for c in range(n_ch):
                v = np.float64(x[i, c, t])
                p += v * v
            level = 10.0 * math.log10(p / n_ch + _LEVEL_FLOOR)
            target, _ = _gain_computer(level, thr, slope, knee)
            a = aa if target < g else ar
            g = a * g + (1.0 - a) * target
            lin = math.exp((g + makeup) * (_LN10 / 20.0))
            for c in range(n_ch):
                y[i, c, t] = x[i, c, t] * lin


@njit(parallel=True, cache=_CACHE)
def compressor_backward(x, params, grad_y, grad_x, grad_params):  # pragma: no cover - compiled
    """Adjoint of :func:`compressor_forward` (attack/release choices and knee regions held fixed).

    ``grad_params`` (M, 6) receives the gradients of the six per-row parameters (the knee's
    is zero where it was clamped). The forward pass is recomputed per row in float64.
    """
    n_rows, n_ch, n_samples = x.shape
    for i in prange(n_rows):
        thr, ratio, knee_in, makeup, aa, ar = (params[i, 0], params[i, 1], params[i, 2], params[i, 3],
                                               params[i, 4], params[i, 5])
        knee = max(knee_in, _MIN_KNEE_DB)
        slope = 1.0 / ratio - 1.0
        power = np.empty(n_samples)
        over = np.empty(n_samples)
        target = np.empty(n_samples)
        region = np.empty(n_samples, dtype=np.int8)
        prev = np.empty(n_samples)
        attack = np.empty(n_samples, dtype=np.bool_)
        lin = np.empty(n_samples)
        g = 0.0
        for t in range(n_samples):
            p = 0.0
            for c in range(n_ch):
                v = np.float64(x[i, c, t])
                p += v * v
            p = p / n_ch + _LEVEL_FLOOR
            power[t] = p
            level = 10.0 * math.log10(p)
            over[t] = level - thr
            target[t], region[t] = _gain_computer(level, thr, slope, knee)
            prev[t] = g
            attack[t] = target[t] < g
            a = aa if attack[t] else ar
            g = a * g + (1.0 - a) * target[t]
            lin[t] = math.exp((g + makeup) * (_LN10 / 20.0))
        lam_next = 0.0
        a_next = 0.0
        g_makeup = g_aa = g_ar = g_thr = g_slope = g_knee = 0.0
        for t in range(n_samples - 1, -1, -1):
            dlin = 0.0
            for c in range(n_ch):
                dlin += np.float64(grad_y[i, c, t]) * np.float64(x[i, c, t])
            d_gain_db = dlin * lin[t] * (_LN10 / 20.0)
            g_makeup += d_gain_db
            a = aa if attack[t] else ar
            lam = d_gain_db + a_next * lam_next
            d = lam * (prev[t] - target[t])
            if attack[t]:
                g_aa += d
            else:
                g_ar += d
            d_target = (1.0 - a) * lam
            lam_next = lam
            a_next = a
            d_over = 0.0
            if region[t] == 2:
                d_over = slope * d_target
                g_slope += over[t] * d_target
            elif region[t] == 1:
                u = over[t] + 0.5 * knee
                d_over = slope * u / knee * d_target
                g_slope += u * u / (2.0 * knee) * d_target
                g_knee += slope * (u / (2.0 * knee) - u * u / (2.0 * knee * knee)) * d_target
            g_thr -= d_over
            d_power = d_over * 10.0 / (_LN10 * power[t])
            for c in range(n_ch):
                v = np.float64(x[i, c, t])
                grad_x[i, c, t] = np.float64(grad_y[i, c, t]) * lin[t] + d_power * 2.0 * v / n_ch
        grad_params[i, 0] = g_thr
        grad_params[i, 1] = -g_slope / (ratio * ratio)
        grad_params[i, 2] = g_knee if knee_in > _MIN_KNEE_DB else 0.0
        grad_params[i, 3] = g_makeup
        grad_params[i, 4] = g_aa
        grad_params[i, 5] = g_ar


# ----------------------------------------------------------------------------- loss statistics
@njit(cache=True, inline="always")
def _two_sections(v, c, z):  # pragma: no cover - compiled
    """One sample through two biquads ``c`` (10,) = (b0, b1, b2, a1, a2) x 2, transposed direct form II.

    ``z`` (4,) is the state, updated in place.
    """
    y = c[0] * v + z[0]
    z[0] = c[1] * v - c[3] * y + z[1]
    z[1] = c[2] * v - c[4] * y
    w = c[5] * y + z[2]
    z[2] = c[6] * y - c[8] * w + z[3]
    z[3] = c[7] * y - c[9] * w
    return w


@njit(parallel=True, cache=_CACHE)
def signal_statistics_forward(x, coef, block, energy, k_energy, peak, mean_square, argmax):  # pragma: no cover
    """Per-row statistics the mix losses read, in one pass over rows ``x`` (N, C, T).

    * ``energy`` (N, C): mean square of every channel;
    * ``k_energy`` (N, C): mean square of every channel through the two biquads ``coef`` (10,)
      (``b0, b1, b2, a1, a2`` of each, ``a0 = 1``: the K-weighting), causal, from rest;
    * ``peak``, ``mean_square`` (N, nb): over both channels, the sample peak and mean square of
      each whole ``block`` of samples (``nb = T // block``; the tail is left out);
    * ``argmax`` (N, nb): flat index ``c * T + t`` of each block's peak (first in channel, then
      time order), for the backward.

    Float64 inside; each row serially in sample order (deterministic).
    """
    n_rows, n_ch, n_samples = x.shape
    n_blocks = peak.shape[1]
    for i in prange(n_rows):
        z = np.zeros(4)
        for b in range(n_blocks):
            peak[i, b] = -1.0
            mean_square[i, b] = 0.0
            argmax[i, b] = 0
        for c in range(n_ch):
            z[:] = 0.0
            e = 0.0
            ke = 0.0
            for b in range(n_blocks + 1):
                lo = b * block
                hi = n_samples if b == n_blocks else lo + block
                be = 0.0
                top = -1.0
                where = 0
                for t in range(lo, hi):
                    v = np.float64(x[i, c, t])
                    be += v * v
                    y = _two_sections(v, coef, z)
                    ke += y * y
                    a = abs(v)
                    if a > top:
                        top = a
                        where = t
                e += be
                if b < n_blocks:
                    mean_square[i, b] += be
                    if top > peak[i, b]:
                        peak[i, b] = top
                        argmax[i, b] = c * n_samples + where
            energy[i, c] = e / n_samples
            k_energy[i, c] = ke / n_samples
        for b in range(n_blocks):
            mean_square[i, b] /= n_ch * block


@njit(parallel=True, cache=_CACHE)
def signal_statistics_backward(x, coef, block, g_energy, g_k_energy, g_peak, g_mean_square, argmax,
                               grad_x):  # pragma: no cover - compiled
    """Adjoint of :func:`signal_statistics_forward`: ``grad_x`` (N, C, T) from the statistics' gradients.

    The filtered energy's adjoint runs the same (LTI, so commuting) sections backward in time
    over ``2 y g / T``; the filtered signal ``y`` is recomputed per row. A block's peak passes its
    gradient to the one sample that set it (times that sample's sign).
    """
    n_rows, n_ch, n_samples = x.shape
    n_blocks = g_peak.shape[1]
    for i in prange(n_rows):
        z = np.zeros(4)
        filtered = np.empty(n_samples)
        for c in range(n_ch):
            ge = 2.0 * g_energy[i, c] / n_samples
            gk = 2.0 * g_k_energy[i, c] / n_samples
            z[:] = 0.0
            for t in range(n_samples):
                filtered[t] = _two_sections(np.float64(x[i, c, t]), coef, z) * gk
            z[:] = 0.0
            for b in range(n_blocks, -1, -1):
                lo = b * block
                hi = n_samples if b == n_blocks else lo + block
                gb = ge
                if b < n_blocks:
                    gb += 2.0 * g_mean_square[i, b] / (n_ch * block)
                for t in range(hi - 1, lo - 1, -1):
                    grad_x[i, c, t] = gb * np.float64(x[i, c, t]) + _two_sections(filtered[t], coef, z)
        for b in range(n_blocks):
            k = argmax[i, b]
            c, t = k // n_samples, k % n_samples
            v = x[i, c, t]
            if v > 0:
                grad_x[i, c, t] += g_peak[i, b]
            elif v < 0:
                grad_x[i, c, t] -= g_peak[i, b]


# ----------------------------------------------------------------------------- spectral distance
@njit(parallel=True, cache=_CACHE, fastmath={"contract"})
def spectral_distance_forward(est, ref, eps2, squared, log_abs, ref_sum):  # pragma: no cover - compiled
    """Per-row sums of the STFT loss between power spectra ``est`` and ``ref`` (N, M), float32.

    ``squared[i] = sum (sqrt(ref) - sqrt(est + eps2))**2``, ``log_abs[i] = sum |log(est + eps2)
    - log(ref + eps2)| / 2`` and ``ref_sum[i] = sum ref`` (float64; each row serially).
    """
    n_rows, n = est.shape
    for i in prange(n_rows):
        sq = 0.0
        la = 0.0
        rs = 0.0
        for j in range(n):
            e = np.float64(est[i, j]) + eps2
            r = np.float64(ref[i, j])
            d = math.sqrt(r) - math.sqrt(e)
            sq += d * d
            la += abs(math.log(e / (r + eps2)))
            rs += r
        squared[i] = sq
        log_abs[i] = 0.5 * la
        ref_sum[i] = rs


@njit(parallel=True, cache=_CACHE, fastmath={"contract"})
def spectral_distance_backward(est, ref, eps2, g_squared, g_log_abs, grad):  # pragma: no cover - compiled
    """Adjoint of :func:`spectral_distance_forward` with respect to ``est``: ``grad`` (N, M) float32."""
    n_rows, n = est.shape
    for i in prange(n_rows):
        gs = g_squared[i]
        gl = 0.5 * g_log_abs[i]
        for j in range(n):
            e = np.float64(est[i, j]) + eps2
            r = np.float64(ref[i, j])
            m = math.sqrt(e)
            g = gs * (m - math.sqrt(r)) / m  # d/de (sqrt r - sqrt e)^2
            if e > r + eps2:
                g += gl / e
            elif e < r + eps2:
                g -= gl / e
            grad[i, j] = g
