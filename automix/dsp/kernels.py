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

How the fused strip is fast (about 4x less CPU than its per-sample scalar predecessor):
the EQ cascades of four channels run as one SIMD recursion (straight-line code on
4-tuples, vectorised by LLVM's SLP pass, see :func:`slp_vectorisation`); everything that is
not a recursion (detector logarithm, gain computer, gain exponential, tanh saturator, output
matrix) runs over chunks of :data:`CHUNK` samples in loops the compiler vectorises, with
exp/ln written out as polynomials (libm's scalar calls cannot be vectorised); the
attack/release smoother is branch-free with two stems interleaved.
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np
from llvmlite import ir as llvm_ir
from numba import njit, prange, types
from numba.extending import intrinsic
from numba.core import config as numba_config

_CACHE = True
_FASTMATH = {"contract", "arcp", "nsz"}  # FMA contraction etc.; no NaN/inf assumptions


@njit(parallel=True, cache=_CACHE)
def _touch_threads(out):  # pragma: no cover - compiled
    """A trivial parallel loop: its first call starts Numba's thread pool."""
    for i in prange(out.shape[0]):
        out[i] = i


def pin_threads(threads: int | None = None) -> int:
    """Start Numba's threads, then give torch ``threads`` CPU threads (None: the count it had).

    Numba's OpenMP thread pool, started by the first parallel kernel call, resets the
    process's OpenMP thread count to the number of cores -- torch's too. A training run
    whose first console call happens after ``torch.set_num_threads(1)`` therefore ran its
    first step with one thread and the rest with two, and summed in a different order
    from a run that had started Numba earlier (a resumed run, a second run in the same
    process): the results differed in the last bits and Adam amplified that. Call this
    once before work whose results must be reproducible. Returns torch's thread count.
    """
    import torch

    wanted = int(threads) if threads else torch.get_num_threads()
    _touch_threads(np.empty(2))
    torch.set_num_threads(wanted)
    return wanted


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


@njit(cache=_CACHE, inline="always", fastmath=_FASTMATH)
def _section(u, c, k, s1, s2):  # pragma: no cover - compiled
    """One transposed-direct-form-II biquad step: returns (output, new s1, new s2)."""
    o = c[k, 0] * u + s1
    return o, c[k, 1] * u - c[k, 3] * o + s2, c[k, 2] * u - c[k, 4] * o


@njit(cache=_CACHE, inline="always", fastmath=_FASTMATH)
def _cascade6(u, c, st):  # pragma: no cover - compiled
    """Six sections in a row; ``st`` is the 12-float state tuple ``(s1, s2) x 6``.

    Keeping the state in a tuple of scalars lets the six recursions pipeline.
    """
    u, a0, b0 = _section(u, c, 0, st[0], st[1])
    u, a1, b1 = _section(u, c, 1, st[2], st[3])
    u, a2, b2 = _section(u, c, 2, st[4], st[5])
    u, a3, b3 = _section(u, c, 3, st[6], st[7])
    u, a4, b4 = _section(u, c, 4, st[8], st[9])
    u, a5, b5 = _section(u, c, 5, st[10], st[11])
    return u, (a0, b0, a1, b1, a2, b2, a3, b3, a4, b4, a5, b5)


@njit(cache=_CACHE, inline="always")
def _load6(st):  # pragma: no cover - compiled
    """State array (6, 2) -> 12-float tuple."""
    return (st[0, 0], st[0, 1], st[1, 0], st[1, 1], st[2, 0], st[2, 1],
            st[3, 0], st[3, 1], st[4, 0], st[4, 1], st[5, 0], st[5, 1])


@njit(cache=_CACHE, inline="always")
def _store6(st, values):  # pragma: no cover - compiled
    """12-float tuple -> state array (6, 2)."""
    for k in range(6):
        st[k, 0] = values[2 * k]
        st[k, 1] = values[2 * k + 1]


@njit(parallel=True, cache=_CACHE, fastmath=_FASTMATH)
def sos6_forward(x, coef, state, y):  # pragma: no cover - compiled
    """:func:`sos_forward` for exactly six sections (the console EQ), unrolled (about 1.5x faster)."""
    for i in prange(x.shape[0]):
        _sos6_row(x[i], coef[i], state[i], y[i])


@njit(cache=_CACHE, fastmath=_FASTMATH)
def _sos6_row(x, c, state, y):  # pragma: no cover - compiled
    st = _load6(state)
    for t in range(x.shape[0]):
        u, st = _cascade6(np.float64(x[t]), c, st)
        y[t] = u
    _store6(state, st)


# ----------------------------------------------------------------------------- vectorised math
# The fused strip runs its per-sample transcendental functions (the detector's logarithm, the
# gain's exponential, the saturator's tanh) over chunks of samples in loops the compiler turns
# into SIMD code. libm's scalar exp/log cannot be vectorised here, so these are written out:
# range reduction by powers of two (exponent bits) and polynomials accurate to about 1 ulp.
_VEC = {"cache": _CACHE, "fastmath": _FASTMATH, "error_model": "numpy"}  # no division checks
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 split in two for an exact k * ln 2
_LN2_LO = 1.90821492927058770002e-10
_SQRT2 = 1.4142135623730951
_MANTISSA_BITS = 0x000FFFFFFFFFFFFF
_EXPONENT_ONE = 0x3FF0000000000000
_DB_PER_NEPER_POWER = 10.0 / math.log(10.0)  # 10 log10(p) = this * ln(p)
_NEPER_PER_DB_AMPLITUDE = math.log(10.0) / 20.0  # 10^(g / 20) = exp(this * g)
_TANH_SATURATES = 20.0  # |z| beyond which tanh(z) == +-1 in float64
CHUNK = 256
"""Samples per vectorised pass of the fused strip (its scratch buffers stay in L1 cache)."""


@intrinsic
def _as_int64(typingctx, x):  # pragma: no cover - compiled
    """The bits of a float64 as an int64 (a free register reinterpretation, vectorisable)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llvm_ir.IntType(64))
    return types.int64(types.float64), codegen


@intrinsic
def _as_float64(typingctx, i):  # pragma: no cover - compiled
    """The float64 whose bits are the int64 ``i``."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llvm_ir.DoubleType())
    return types.float64(types.int64), codegen


@njit(**_VEC)
def _exp(v):  # pragma: no cover - compiled
    """``exp(v)`` for ``v`` clamped to [-708, 709] (float64, about 1 ulp).

    ``exp(v) = 2**k exp(r)`` with ``r = v - k ln2`` in [-ln2/2, ln2/2]; the degree-12 Taylor
    polynomial of exp(r) is exact there to 2e-16 relative; ``2**k`` is built from its bits.
    """
    v = min(max(v, -708.0), 709.0)
    k = np.floor(v * _LOG2E + 0.5)
    r = (v - k * _LN2_HI) - k * _LN2_LO
    p = 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    return p * _as_float64((np.int64(k) + 1023) << 52)


@njit(**_VEC)
def _ln(x):  # pragma: no cover - compiled
    """``ln(x)`` for positive normal float64 ``x`` (about 1 ulp).

    ``x = m 2**e`` with ``m`` in [sqrt(1/2), sqrt(2)); ``ln m = 2 atanh(s)``,
    ``s = (m - 1) / (m + 1)``, ``|s| <= 0.172``: eleven odd-power terms give 1e-16.
    """
    b = _as_int64(x)
    m = _as_float64((b & _MANTISSA_BITS) | _EXPONENT_ONE)  # mantissa in [1, 2)
    e = np.float64((b >> 52) - 1023)
    big = m > _SQRT2
    m = m * 0.5 if big else m
    e = e + 1.0 if big else e
    s = (m - 1.0) / (m + 1.0)
    z = s * s
    p = 1.0 / 21.0
    p = p * z + 1.0 / 19.0
    p = p * z + 1.0 / 17.0
    p = p * z + 1.0 / 15.0
    p = p * z + 1.0 / 13.0
    p = p * z + 1.0 / 11.0
    p = p * z + 1.0 / 9.0
    p = p * z + 1.0 / 7.0
    p = p * z + 1.0 / 5.0
    p = p * z + 1.0 / 3.0
    p = p * z + 1.0
    return e * _LN2_HI + (e * _LN2_LO + 2.0 * s * p)


@njit(**_VEC)
def _tanh(z):  # pragma: no cover - compiled
    """``tanh(z) = sign(z) (1 - q) / (1 + q)`` with ``q = exp(-2 |z|)`` (about 1e-16 absolute)."""
    q = _exp(-2.0 * min(abs(z), _TANH_SATURATES))
    t = (1.0 - q) / (1.0 + q)
    return t if z >= 0.0 else -t


@njit(**_VEC)
def exp_inplace(v, n):  # pragma: no cover - compiled
    """``v[:n] = exp(v[:n])`` (float64, vectorised)."""
    for t in range(n):
        v[t] = _exp(v[t])


@njit(**_VEC)
def log_inplace(v, n):  # pragma: no cover - compiled
    """``v[:n] = ln(v[:n])`` for positive normal float64 ``v`` (vectorised)."""
    for t in range(n):
        v[t] = _ln(v[t])


# ----------------------------------------------------------------------------- fused channel strip
LANES = 4
"""Channels whose EQ cascades run side by side in one SIMD recursion (two stereo stems)."""
STATE_FLOOR = 1e-20
"""Filter states and compressor gains (dB) smaller than this are set to exactly zero after every
chunk. In digital silence the recursions decay toward zero and would end in float64 subnormals,
which x86 CPUs compute about a hundred times slower (and a recursion with a pole near 1 can stay
there for good: one stem with a silent outro made a whole render several times slower). 1e-20
is -400 dBFS, far below anything audible or any file's resolution."""


@njit(**_VEC)
def _flush4(v):  # pragma: no cover - compiled
    """A 4-tuple with entries smaller than :data:`STATE_FLOOR` set to zero."""
    return (v[0] if abs(v[0]) >= STATE_FLOOR else 0.0, v[1] if abs(v[1]) >= STATE_FLOOR else 0.0,
            v[2] if abs(v[2]) >= STATE_FLOOR else 0.0, v[3] if abs(v[3]) >= STATE_FLOOR else 0.0)


@njit(**_VEC)
def _flush_states(s):  # pragma: no cover - compiled
    """:func:`_flush4` of the twelve EQ states of a lane group."""
    return (_flush4(s[0]), _flush4(s[1]), _flush4(s[2]), _flush4(s[3]), _flush4(s[4]), _flush4(s[5]),
            _flush4(s[6]), _flush4(s[7]), _flush4(s[8]), _flush4(s[9]), _flush4(s[10]), _flush4(s[11]))


@contextmanager
def slp_vectorisation():
    """Compile with LLVM's SLP vectoriser on (Numba leaves it off by default).

    The fused strip writes its four-lane EQ as straight-line code on 4-tuples; only the SLP
    vectoriser turns that into SIMD instructions. Call the strip kernels inside this
    context (compilation happens on the first call); it restores the setting afterwards.
    """
    old = numba_config.SLP_VECTORIZE
    numba_config.SLP_VECTORIZE = 1
    try:
        yield
    finally:
        numba_config.SLP_VECTORIZE = old


#: Shortest work (samples per channel times lane groups) worth splitting over threads.
_THREADS_MIN_WORK = 1 << 16
_POOL: list = []  # the worker threads of channel_strip, started on first use


def channel_strip(x, coef, comp, sat, out_gain, sos_state, comp_state, y) -> None:
    """Fused, non-differentiable channel strip for final renders (6-section EQ, 1 or 2 channels).

    Parameters
    ----------
    x : (S, C, T) C-contiguous float32/float64 input stems, C = 1 or 2.
    coef : (S, 6, 5) float64 EQ cascade per stem (shared by its channels).
    comp : (S, 6) float64 ``threshold_db, ratio, knee_db, makeup_db, alpha_attack, alpha_release``.
    sat : (S, 3) float64 ``drive (linear), compensation (linear), mix (0..1)``.
    out_gain : (S, 2, C) float64 output matrix (fader, pan/balance).
    sos_state : (S, C, 6, 2) C-contiguous float64 filter state, updated in place.
    comp_state : (S,) float64 smoothed gain in dB, updated in place.
    y : (S, 2, T) output.

    The S x C channels run in groups of :data:`LANES`, each group in chunks of
    :data:`CHUNK` samples, stage by stage: the EQ cascades of the group's channels as
    one four-lane recursion, then per stem the detector level and gain computer, the
    attack/release smoother (serial), the gain, saturator and output matrix -- vectorised
    loops over the chunk (float64 inside) with the semantics of
    :mod:`automix.dsp.compressor` and :mod:`automix.dsp.saturation`. Compile and call it
    inside :func:`slp_vectorisation`.

    The groups are shared out over the usable CPUs by Python threads (the compiled kernel
    runs without the GIL) in the static split a Numba ``prange`` made, so the results are
    the same; unlike a ``prange`` this never starts Numba's OpenMP pool, which resets
    torch's thread count (see :func:`pin_threads`).
    """
    from automix.precompile import ready

    if not ready(_strip_groups, x, coef, comp, sat, out_gain, sos_state, comp_state, y, 0, 1):
        from automix.dsp.strip_uncompiled import channel_strip_uncompiled

        channel_strip_uncompiled(x, coef, comp, sat, out_gain, sos_state, comp_state, y)  # a first run
        return
    n_groups = (x.shape[0] * x.shape[1] + LANES - 1) // LANES
    workers = min(_usable_cpus(), n_groups)
    if workers <= 1 or x.shape[-1] * n_groups < _THREADS_MIN_WORK:
        _strip_groups(x, coef, comp, sat, out_gain, sos_state, comp_state, y, 0, n_groups)
        return
    if not _POOL:
        from concurrent.futures import ThreadPoolExecutor

        _POOL.append(ThreadPoolExecutor(max_workers=_usable_cpus(), thread_name_prefix="channel_strip"))
    bounds = [n_groups * k // workers for k in range(workers + 1)]
    jobs = [_POOL[0].submit(_strip_groups, x, coef, comp, sat, out_gain, sos_state, comp_state, y,
                            bounds[k], bounds[k + 1]) for k in range(workers)]
    for job in jobs:
        job.result()


def _usable_cpus() -> int:
    import os

    affinity = getattr(os, "sched_getaffinity", None)
    return max(1, len(affinity(0)) if affinity is not None else (os.cpu_count() or 1))


@njit(nogil=True, **_VEC)
def _strip_groups(x, coef, comp, sat, out_gain, sos_state, comp_state, y, first, stop):  # pragma: no cover
    """Lane groups ``first .. stop - 1`` of :func:`channel_strip` (arguments as there)."""
    n_stems, n_ch, n_samples = x.shape
    n_rows = n_stems * n_ch
    rows = x.reshape(n_rows, n_samples)
    states = sos_state.reshape(n_rows, 6, 2)
    for group in range(first, stop):
        _strip_group(rows, group * LANES, n_ch, coef, comp, sat, out_gain, states, comp_state, y)


# Compile time (the first run after install compiles the fused strip): every helper below is
# compiled once and LLVM inlines it, rather than numba's ``inline="always"``, which types the
# body again at every call site; and the indices passed to them are these int64 *values*, not
# integer literals, for which numba compiles one specialisation per distinct constant (it had
# compiled ``_lanes`` 42 times). Together about 40 % less compile time, same machine code speed
# and bit-identical output.
_I0, _I1, _I2, _I3, _I4, _I5 = (np.int64(k) for k in range(6))


@njit(**_VEC)
def _lanes(a, r, i, j):  # pragma: no cover - compiled
    """``a[r[l], i, j]`` for the four lanes ``l``."""
    return (a[r[0], i, j], a[r[1], i, j], a[r[2], i, j], a[r[3], i, j])


@njit(**_VEC)
def _section_coefficients(coef, stem, k):  # pragma: no cover - compiled
    return (_lanes(coef, stem, k, _I0), _lanes(coef, stem, k, _I1), _lanes(coef, stem, k, _I2),
            _lanes(coef, stem, k, _I3), _lanes(coef, stem, k, _I4))


@njit(**_VEC)
def _section4(u, cs, s1, s2):  # pragma: no cover - compiled
    """One transposed-direct-form-II biquad step on four lanes (tuples)."""
    b0, b1, b2, a1, a2 = cs
    o = (b0[0] * u[0] + s1[0], b0[1] * u[1] + s1[1], b0[2] * u[2] + s1[2], b0[3] * u[3] + s1[3])
    n1 = (b1[0] * u[0] - a1[0] * o[0] + s2[0], b1[1] * u[1] - a1[1] * o[1] + s2[1],
          b1[2] * u[2] - a1[2] * o[2] + s2[2], b1[3] * u[3] - a1[3] * o[3] + s2[3])
    n2 = (b2[0] * u[0] - a2[0] * o[0], b2[1] * u[1] - a2[1] * o[1],
          b2[2] * u[2] - a2[2] * o[2], b2[3] * u[3] - a2[3] * o[3])
    return o, n1, n2


@njit(**_VEC)
def _eq4_chunk(rows, lane_rows, lane_stems, coef, start, n, st, out):  # pragma: no cover - compiled
    """EQ ``rows[lane_rows[l], start:start + n]`` into ``out[l, :n]``; returns the new state.

    Lane ``l`` uses the cascade ``coef[lane_stems[l]]``. The coefficients and the twelve
    states ``st`` are 4-tuples over the lanes, so the whole recursion lives in registers
    (loading the coefficients here rather than passing them in keeps it that way).
    """
    r0, r1, r2, r3 = lane_rows[0], lane_rows[1], lane_rows[2], lane_rows[3]
    c0, c1 = _section_coefficients(coef, lane_stems, _I0), _section_coefficients(coef, lane_stems, _I1)
    c2, c3 = _section_coefficients(coef, lane_stems, _I2), _section_coefficients(coef, lane_stems, _I3)
    c4, c5 = _section_coefficients(coef, lane_stems, _I4), _section_coefficients(coef, lane_stems, _I5)
    s = st
    for t in range(n):
        u = (np.float64(rows[r0, start + t]), np.float64(rows[r1, start + t]),
             np.float64(rows[r2, start + t]), np.float64(rows[r3, start + t]))
        u, p0, q0 = _section4(u, c0, s[0], s[1])
        u, p1, q1 = _section4(u, c1, s[2], s[3])
        u, p2, q2 = _section4(u, c2, s[4], s[5])
        u, p3, q3 = _section4(u, c3, s[6], s[7])
        u, p4, q4 = _section4(u, c4, s[8], s[9])
        u, p5, q5 = _section4(u, c5, s[10], s[11])
        s = (p0, q0, p1, q1, p2, q2, p3, q3, p4, q4, p5, q5)
        out[0, t] = u[0]
        out[1, t] = u[1]
        out[2, t] = u[2]
        out[3, t] = u[3]
    return s


@njit(**_VEC)
def _strip_group(rows, first_row, n_ch, coef, comp, sat, out_gain, states, comp_state, y):  # pragma: no cover
    """Channels ``first_row .. first_row + LANES - 1`` (whole stems) of :func:`channel_strip`."""
    n_rows, n_samples = rows.shape
    lane_rows = np.empty(LANES, dtype=np.int64)
    lane_stems = np.empty(LANES, dtype=np.int64)
    for lane in range(LANES):  # lanes past the last channel repeat it (their output is dropped)
        lane_rows[lane] = min(first_row + lane, n_rows - 1)
        lane_stems[lane] = lane_rows[lane] // n_ch
    st = (_lanes(states, lane_rows, _I0, _I0), _lanes(states, lane_rows, _I0, _I1), _lanes(states, lane_rows, _I1, _I0),
          _lanes(states, lane_rows, _I1, _I1), _lanes(states, lane_rows, _I2, _I0), _lanes(states, lane_rows, _I2, _I1),
          _lanes(states, lane_rows, _I3, _I0), _lanes(states, lane_rows, _I3, _I1), _lanes(states, lane_rows, _I4, _I0),
          _lanes(states, lane_rows, _I4, _I1), _lanes(states, lane_rows, _I5, _I0), _lanes(states, lane_rows, _I5, _I1))
    first_stem = first_row // n_ch
    n_group_stems = (min(first_row + LANES, n_rows) - first_row) // n_ch
    eq_out = np.empty((LANES, CHUNK))
    silent = np.zeros(CHUNK)  # the second channel of a mono stem
    gain = np.empty((LANES, CHUNK))
    at_rest = np.zeros(LANES, dtype=np.bool_)
    busy = np.empty(LANES, dtype=np.int64)
    g = comp_state[first_stem:first_stem + n_group_stems].copy()
    for start in range(0, n_samples, CHUNK):
        n = min(CHUNK, n_samples - start)
        st = _flush_states(_eq4_chunk(rows, lane_rows, lane_stems, coef, start, n, st, eq_out))
        # a compressor that is off (ratio 1) with its gain at rest (0 dB) stays there: its
        # target is 0 dB throughout, so smoothing is skipped and the gain is exactly unity
        n_busy = 0
        for i in range(n_group_stems):
            at_rest[i] = comp[first_stem + i, 1] == 1.0 and g[i] == 0.0
            if not at_rest[i]:
                w = eq_out[i * n_ch + 1] if n_ch == 2 else silent
                _stem_gain_target(eq_out[i * n_ch], w, n, n_ch, comp[first_stem + i], gain[i])
                busy[n_busy] = i
                n_busy += 1
        k = 0
        while k + 1 < n_busy:  # two smoothers interleaved: their latencies overlap
            i, j = busy[k], busy[k + 1]
            c1, c2 = comp[first_stem + i], comp[first_stem + j]
            g[i], g[j] = _smooth_pair(gain[i], gain[j], n, c1[4], c1[5], g[i], c2[4], c2[5], g[j])
            k += 2
        if k < n_busy:
            i = busy[k]
            g[i] = _smooth_chunk(gain[i], n, comp[first_stem + i, 4], comp[first_stem + i, 5], g[i])
        for i in range(n_group_stems):
            if abs(g[i]) < STATE_FLOOR:  # see STATE_FLOOR
                g[i] = 0.0
        for i in range(n_group_stems):
            s = first_stem + i
            w = eq_out[i * n_ch + 1] if n_ch == 2 else silent
            _stem_output(eq_out[i * n_ch], w, n, n_ch, gain[i], comp[s, 3], sat[s], out_gain[s], y[s], start,
                         at_rest[i])
    for lane in range(min(LANES, n_rows - first_row)):
        for k in range(6):
            states[first_row + lane, k, 0] = st[2 * k][lane]
            states[first_row + lane, k, 1] = st[2 * k + 1][lane]
    for i in range(n_group_stems):  # element by element: a slice assignment compiles numba's
        comp_state[first_stem + i] = g[i]  # shape-mismatch message (string formatting, seconds)


@njit(**_VEC)
def _stem_gain_target(u, w, n, n_ch, comp, gain):  # pragma: no cover - compiled
    """``gain[:n]`` = the gain computer's target (dB) for one stem's EQ'd chunk ``u``, ``w``.

    As :func:`automix.dsp.compressor.detector_level_db` then ``gain_computer_db``, in one
    vectorised pass.
    """
    threshold_db, ratio, knee_db = comp[0], comp[1], comp[2]
    if ratio == 1.0:
        gain[:n] = 0.0
        return
    knee_db = knee_db if knee_db > 1e-6 else 1e-6  # as automix.dsp.compressor.gain_computer_db
    slope = 1.0 / ratio - 1.0
    inv_channels = 1.0 / n_ch
    half = 0.5 * knee_db
    inv_two_knee = 1.0 / (2.0 * knee_db)
    for t in range(n):
        power = (u[t] * u[t] + w[t] * w[t]) * inv_channels + 1e-10  # LEVEL_FLOOR
        over = _DB_PER_NEPER_POWER * _ln(power) - threshold_db
        h = over + half
        r = slope * h * h * inv_two_knee
        r = 0.0 if 2.0 * over <= -knee_db else r
        r = slope * over if 2.0 * over >= knee_db else r
        gain[t] = r


@njit(**_VEC)
def _stem_output(u, w, n, n_ch, gain, makeup_db, sat, m, y, start, at_rest):  # pragma: no cover - compiled
    """Apply the smoothed gain (dB) plus make-up, the saturator and the output matrix to one stem.

    Writes ``y[:, start:start + n]``; ``u`` and ``w`` are overwritten. ``at_rest``: the
    compressor's gain is 0 dB throughout (``gain`` is not read).
    """
    drive, compensation, mix = sat[0], sat[1], sat[2]
    dry = 1.0 - mix
    wet = mix * compensation
    if at_rest:
        gain[:n] = 0.0
    # two loops (signal in place, then the output matrix): few enough pointers per loop for
    # the compiler to prove they do not overlap and vectorise
    if mix == 0.0 and at_rest and makeup_db == 0.0:
        pass  # unity gain, no saturation: straight to the output matrix
    elif mix == 0.0:
        for t in range(n):
            lin = _exp(_NEPER_PER_DB_AMPLITUDE * (gain[t] + makeup_db))
            u[t] *= lin
            w[t] *= lin
    elif n_ch == 2:
        for t in range(n):
            lin = _exp(_NEPER_PER_DB_AMPLITUDE * (gain[t] + makeup_db))
            a = u[t] * lin
            b = w[t] * lin
            u[t] = dry * a + wet * _tanh(drive * a)
            w[t] = dry * b + wet * _tanh(drive * b)
    else:
        for t in range(n):
            a = u[t] * _exp(_NEPER_PER_DB_AMPLITUDE * (gain[t] + makeup_db))
            u[t] = dry * a + wet * _tanh(drive * a)
    if n_ch == 2:
        m00, m01, m10, m11 = m[0, 0], m[0, 1], m[1, 0], m[1, 1]
        for t in range(n):
            y[0, start + t] = m00 * u[t] + m01 * w[t]
            y[1, start + t] = m10 * u[t] + m11 * w[t]
    else:
        m00, m10 = m[0, 0], m[1, 0]
        for t in range(n):
            y[0, start + t] = m00 * u[t]
            y[1, start + t] = m10 * u[t]


@njit(**_VEC)
def _smooth_chunk(target, n, alpha_attack, alpha_release, g):  # pragma: no cover - compiled
    """Attack/release smoothing of ``target[:n]`` in place from state ``g``; returns the new state."""
    attack_in, release_in = 1.0 - alpha_attack, 1.0 - alpha_release
    for t in range(n):
        x = target[t]
        # both candidates, then a select: no branch to mispredict, and the recursion's
        # critical path is one multiply-add plus the select
        attack = alpha_attack * g + attack_in * x
        release = alpha_release * g + release_in * x
        g = attack if x < g else release
        target[t] = g
    return g


@njit(**_VEC)
def _smooth_pair(t1, t2, n, aa1, ar1, g1, aa2, ar2, g2):  # pragma: no cover - compiled
    """:func:`_smooth_chunk` of two stems in one loop; returns both new states."""
    ai1, ri1, ai2, ri2 = 1.0 - aa1, 1.0 - ar1, 1.0 - aa2, 1.0 - ar2
    for t in range(n):
        x1 = t1[t]
        x2 = t2[t]
        a1 = aa1 * g1 + ai1 * x1
        r1 = ar1 * g1 + ri1 * x1
        a2 = aa2 * g2 + ai2 * x2
        r2 = ar2 * g2 + ri2 * x2
        g1 = a1 if x1 < g1 else r1
        g2 = a2 if x2 < g2 else r2
        t1[t] = g1
        t2[t] = g2
    return g1, g2
