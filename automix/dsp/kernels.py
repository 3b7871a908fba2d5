"""Numba kernels for the per-sample recursions of the console (CPU, float64 inside).

These are the only loops over samples in automix. The torch-facing wrappers (with
custom autograd backwards) live in :mod:`automix.dsp.biquad` and
:mod:`automix.dsp.compressor`; :func:`channel_strip` fuses a whole channel strip for
fast, non-differentiable final renders (tests check it equals the differentiable path).

Conventions
-----------
* Biquad sections are normalised, ``coef[..., 5] = (b0, b1, b2, a1, a2)`` with ``a0 = 1``,
  run in transposed direct form II with state ``(s1, s2)`` per section (the layout of
  ``scipy.signal.sosfilt``'s ``zi``).
* Gains handled by the smoother are in dB (0 = no gain reduction).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

_CACHE = True
_FASTMATH = {"contract", "arcp", "nsz"}  # FMA contraction etc.; no NaN/inf assumptions


@njit(parallel=True, cache=_CACHE, fastmath=_FASTMATH)
def sos_forward(x, coef, state, y):  # pragma: no cover - compiled
    """Filter rows of ``x`` (N, T) through per-row cascades ``coef`` (N, K, 5).

    ``state`` (N, K, 2) float64 is read as the initial state and overwritten with the final
    one; ``y`` (N, T) receives the output (any float dtype).
    """
    n_rows, n_samples = x.shape
    n_sec = coef.shape[1]
    for i in prange(n_rows):
        c = coef[i]
        s = state[i].copy()
        for t in range(n_samples):
            v = np.float64(x[i, t])
            for k in range(n_sec):
                out = c[k, 0] * v + s[k, 0]
                s[k, 0] = c[k, 1] * v - c[k, 3] * out + s[k, 1]
                s[k, 1] = c[k, 2] * v - c[k, 4] * out
                v = out
            y[i, t] = v
        state[i, :, :] = s


@njit(parallel=True, cache=_CACHE)
def sos_backward(x, coef, grad_y, grad_x, grad_coef):  # pragma: no cover - compiled
    """Adjoint of :func:`sos_forward` with zero initial state.

    Recomputes every section's output per row (O(K T) scratch per row, not per batch),
    then sweeps backwards in time once through all sections: with
    ``lam[n] = g[n] - a1 lam[n+1] - a2 lam[n+2]`` (``g`` the gradient reaching the section's
    output) the gradients are ``db_j = sum lam[n] in[n-j]``, ``da_j = -sum lam[n] out[n-j]``
    and the gradient reaching the section's input is ``b0 lam[n] + b1 lam[n+1] + b2 lam[n+2]``.
    """
    n_rows, n_samples = x.shape
    n_sec = coef.shape[1]
    for i in prange(n_rows):
        c = coef[i]
        # sig[k, 2 + t]: input of section k (k = n_sec: the output), two leading zeros
        sig = np.zeros((n_sec + 1, n_samples + 2))
        s = np.zeros((n_sec, 2))
        for t in range(n_samples):
            v = np.float64(x[i, t])
            sig[0, t + 2] = v
            for k in range(n_sec):
                out = c[k, 0] * v + s[k, 0]
                s[k, 0] = c[k, 1] * v - c[k, 3] * out + s[k, 1]
                s[k, 1] = c[k, 2] * v - c[k, 4] * out
                v = out
                sig[k + 1, t + 2] = v
        lam1 = np.zeros(n_sec)  # lam[t + 1] per section
        lam2 = np.zeros(n_sec)  # lam[t + 2]
        acc = np.zeros((n_sec, 5))
        for t in range(n_samples - 1, -1, -1):
            g = np.float64(grad_y[i, t])
            for k in range(n_sec - 1, -1, -1):
                lam = g - c[k, 3] * lam1[k] - c[k, 4] * lam2[k]
                acc[k, 0] += lam * sig[k, t + 2]
                acc[k, 1] += lam * sig[k, t + 1]
                acc[k, 2] += lam * sig[k, t]
                acc[k, 3] -= lam * sig[k + 1, t + 1]
                acc[k, 4] -= lam * sig[k + 1, t]
                g = c[k, 0] * lam + c[k, 1] * lam1[k] + c[k, 2] * lam2[k]
                lam2[k] = lam1[k]
                lam1[k] = lam
            grad_x[i, t] = g
        grad_coef[i, :, :] = acc


@njit(parallel=True, cache=_CACHE)
def smooth_gain_forward(target_db, alpha_attack, alpha_release, state, out):  # pragma: no cover
    """Attack/release one-pole smoothing of a gain in dB, per row of ``target_db`` (M, T).

    The attack coefficient is used while the target is below the smoothed gain (more gain
    reduction wanted), the release coefficient otherwise. ``state`` (M,) is the initial
    smoothed gain and receives the final one.
    """
    n_rows, n_samples = target_db.shape
    for i in prange(n_rows):
        aa = alpha_attack[i]
        ar = alpha_release[i]
        g = state[i]
        for t in range(n_samples):
            x = target_db[i, t]
            a = aa if x < g else ar
            g = a * g + (1.0 - a) * x
            out[i, t] = g
        state[i] = g


@njit(parallel=True, cache=_CACHE)
def smooth_gain_backward(target_db, initial, alpha_attack, alpha_release, grad_out,
                         grad_target, grad_alpha):  # pragma: no cover - compiled
    """Adjoint of :func:`smooth_gain_forward` (branch choices held fixed).

    The forward recursion is recomputed in float64 so the attack/release choices are exactly
    those of the forward pass. ``grad_alpha`` (M, 2) receives the gradients of the attack and
    release coefficients.
    """
    n_rows, n_samples = target_db.shape
    for i in prange(n_rows):
        aa = alpha_attack[i]
        ar = alpha_release[i]
        prev = np.empty(n_samples)
        attack = np.empty(n_samples, dtype=np.bool_)
        g = initial[i]
        for t in range(n_samples):
            x = target_db[i, t]
            prev[t] = g
            attack[t] = x < g
            a = aa if attack[t] else ar
            g = a * g + (1.0 - a) * x
        lam_next = 0.0
        a_next = 0.0
        ga = 0.0
        gr = 0.0
        for t in range(n_samples - 1, -1, -1):
            a = aa if attack[t] else ar
            lam = grad_out[i, t] + a_next * lam_next
            grad_target[i, t] = (1.0 - a) * lam
            d = lam * (prev[t] - target_db[i, t])
            if attack[t]:
                ga += d
            else:
                gr += d
            lam_next = lam
            a_next = a
        grad_alpha[i, 0] = ga
        grad_alpha[i, 1] = gr


@njit(cache=_CACHE)
def gain_computer_db(level_db, threshold_db, ratio, knee_db):  # pragma: no cover - compiled
    """Static compressor curve: gain change in dB (<= 0) for an input level in dB."""
    over = level_db - threshold_db
    slope = 1.0 / ratio - 1.0
    w = knee_db if knee_db > 1e-6 else 1e-6  # as automix.dsp.compressor.gain_computer_db
    if 2.0 * over >= w:
        return slope * over
    if 2.0 * over <= -w:
        return 0.0
    h = over + 0.5 * w
    return slope * h * h / (2.0 * w)


_DB_PER_NEPER_POWER = 10.0 / math.log(10.0)  # 10 log10(p) = this * ln(p)
_NEPER_PER_DB_AMPLITUDE = math.log(10.0) / 20.0  # 10^(g / 20) = exp(this * g)


@njit(cache=_CACHE, inline="always", fastmath=_FASTMATH)
def _tanh(z):  # pragma: no cover - compiled
    """tanh via one exp (faster than libm tanh here; same value to ~1e-16 absolute)."""
    e = math.exp(-2.0 * abs(z))
    t = (1.0 - e) / (1.0 + e)
    return t if z >= 0.0 else -t


@njit(cache=_CACHE, inline="always", fastmath=_FASTMATH)
def _section(u, c, k, s1, s2):  # pragma: no cover - compiled
    """One transposed-direct-form-II biquad step: returns (output, new s1, new s2)."""
    o = c[k, 0] * u + s1
    return o, c[k, 1] * u - c[k, 3] * o + s2, c[k, 2] * u - c[k, 4] * o


@njit(parallel=True, cache=_CACHE, fastmath=_FASTMATH)
def sos6_forward(x, coef, state, y):  # pragma: no cover - compiled
    """:func:`sos_forward` for exactly six sections (the console EQ), unrolled.

    The state lives in scalars, so the six recursions pipeline; about 1.5x faster.
    """
    n_rows, n_samples = x.shape
    for i in prange(n_rows):
        c = coef[i]
        st = state[i]
        p0, q0, p1, q1, p2, q2 = st[0, 0], st[0, 1], st[1, 0], st[1, 1], st[2, 0], st[2, 1]
        p3, q3, p4, q4, p5, q5 = st[3, 0], st[3, 1], st[4, 0], st[4, 1], st[5, 0], st[5, 1]
        for t in range(n_samples):
            u = np.float64(x[i, t])
            u, p0, q0 = _section(u, c, 0, p0, q0)
            u, p1, q1 = _section(u, c, 1, p1, q1)
            u, p2, q2 = _section(u, c, 2, p2, q2)
            u, p3, q3 = _section(u, c, 3, p3, q3)
            u, p4, q4 = _section(u, c, 4, p4, q4)
            u, p5, q5 = _section(u, c, 5, p5, q5)
            y[i, t] = u
        st[0, 0], st[0, 1], st[1, 0], st[1, 1], st[2, 0], st[2, 1] = p0, q0, p1, q1, p2, q2
        st[3, 0], st[3, 1], st[4, 0], st[4, 1], st[5, 0], st[5, 1] = p3, q3, p4, q4, p5, q5


@njit(parallel=True, cache=_CACHE, fastmath=_FASTMATH)
def channel_strip(x, coef, comp, sat, out_gain, sos_state, comp_state, y):  # pragma: no cover
    """Fused, non-differentiable channel strip for final renders (6-section EQ, 1 or 2 channels).

    Parameters
    ----------
    x : (S, C, T) float32/float64 input stems, C = 1 or 2.
    coef : (S, 6, 5) float64 EQ cascade per stem (shared by its channels).
    comp : (S, 6) float64 ``threshold_db, ratio, knee_db, makeup_db, alpha_attack, alpha_release``.
    sat : (S, 3) float64 ``drive (linear), compensation (linear), mix (0..1)``.
    out_gain : (S, 2, C) float64 output matrix (fader, pan/balance).
    sos_state : (S, C, 6, 2) float64 filter state, updated in place.
    comp_state : (S,) float64 smoothed gain in dB, updated in place.
    y : (S, 2, T) output.

    The cascade is unrolled with its state in scalars so the six sections pipeline. Work is
    skipped where it provably changes nothing: the level's logarithm below the knee (the gain
    computer returns 0 there), the gain's exponential while the smoothed gain is unchanged,
    and the saturator at ``mix == 0``.
    """
    n_stems, n_ch, n_samples = x.shape
    stereo = n_ch == 2
    for s in prange(n_stems):
        c = coef[s]
        st = sos_state[s]
        p0, q0, p1, q1, p2, q2 = st[0, 0, 0], st[0, 0, 1], st[0, 1, 0], st[0, 1, 1], st[0, 2, 0], st[0, 2, 1]
        p3, q3, p4, q4, p5, q5 = st[0, 3, 0], st[0, 3, 1], st[0, 4, 0], st[0, 4, 1], st[0, 5, 0], st[0, 5, 1]
        ch1 = 1 if stereo else 0
        r0, z0, r1, z1, r2, z2 = st[ch1, 0, 0], st[ch1, 0, 1], st[ch1, 1, 0], st[ch1, 1, 1], st[ch1, 2, 0], st[ch1, 2, 1]
        r3, z3, r4, z4, r5, z5 = st[ch1, 3, 0], st[ch1, 3, 1], st[ch1, 4, 0], st[ch1, 4, 1], st[ch1, 5, 0], st[ch1, 5, 1]
        thr, ratio, knee, makeup, aa, ar = comp[s, 0], comp[s, 1], comp[s, 2], comp[s, 3], comp[s, 4], comp[s, 5]
        drive, sat_comp, sat_mix = sat[s, 0], sat[s, 1], sat[s, 2]
        compressing = ratio != 1.0
        # below this mean power the level is under the knee: the gain computer gives 0 dB
        knee_start_power = 10.0 ** ((thr - 0.5 * knee) / 10.0)
        m = out_gain[s]
        g = comp_state[s]
        g_used = 1e300  # no gain computed yet (gains are in dB, never this large)
        lin = 0.0
        for t in range(n_samples):
            u = np.float64(x[s, 0, t])
            u, p0, q0 = _section(u, c, 0, p0, q0)
            u, p1, q1 = _section(u, c, 1, p1, q1)
            u, p2, q2 = _section(u, c, 2, p2, q2)
            u, p3, q3 = _section(u, c, 3, p3, q3)
            u, p4, q4 = _section(u, c, 4, p4, q4)
            u, p5, q5 = _section(u, c, 5, p5, q5)
            w = 0.0
            if stereo:
                w = np.float64(x[s, 1, t])
                w, r0, z0 = _section(w, c, 0, r0, z0)
                w, r1, z1 = _section(w, c, 1, r1, z1)
                w, r2, z2 = _section(w, c, 2, r2, z2)
                w, r3, z3 = _section(w, c, 3, r3, z3)
                w, r4, z4 = _section(w, c, 4, r4, z4)
                w, r5, z5 = _section(w, c, 5, r5, z5)
            power = (u * u + w * w) / n_ch + 1e-10
            target = 0.0
            if compressing and power > knee_start_power:
                level = _DB_PER_NEPER_POWER * math.log(power)
                target = gain_computer_db(level, thr, ratio, knee)
            a = aa if target < g else ar
            g = a * g + (1.0 - a) * target
            if g != g_used:
                lin = math.exp(_NEPER_PER_DB_AMPLITUDE * (g + makeup))
                g_used = g
            u *= lin
            w *= lin
            if sat_mix != 0.0:
                u = (1.0 - sat_mix) * u + sat_mix * (_tanh(drive * u) * sat_comp)
                w = (1.0 - sat_mix) * w + sat_mix * (_tanh(drive * w) * sat_comp)
            if stereo:
                y[s, 0, t] = m[0, 0] * u + m[0, 1] * w
                y[s, 1, t] = m[1, 0] * u + m[1, 1] * w
            else:
                y[s, 0, t] = m[0, 0] * u
                y[s, 1, t] = m[1, 0] * u
        st[0, 0, 0], st[0, 0, 1], st[0, 1, 0], st[0, 1, 1], st[0, 2, 0], st[0, 2, 1] = p0, q0, p1, q1, p2, q2
        st[0, 3, 0], st[0, 3, 1], st[0, 4, 0], st[0, 4, 1], st[0, 5, 0], st[0, 5, 1] = p3, q3, p4, q4, p5, q5
        if stereo:
            st[1, 0, 0], st[1, 0, 1], st[1, 1, 0], st[1, 1, 1], st[1, 2, 0], st[1, 2, 1] = r0, z0, r1, z1, r2, z2
            st[1, 3, 0], st[1, 3, 1], st[1, 4, 0], st[1, 4, 1], st[1, 5, 0], st[1, 5, 1] = r3, z3, r4, z4, r5, z5
        comp_state[s] = g
