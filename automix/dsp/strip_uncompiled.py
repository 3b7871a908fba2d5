"""The fused channel strip without its compiled kernel: the first run after install (issue 17).

:func:`automix.dsp.kernels.channel_strip` is one large Numba kernel; compiling it takes
about 3 s of CPU, more than a short mix takes in all, and it happens on every machine's
first run. Until it is in Numba's on-disk cache, ``automix mix`` renders through this
module instead (:func:`channel_strip_uncompiled`, same arguments and results) and compiles
the kernel for later runs in a background process once its outputs are written
(:mod:`automix.precompile`).

No compilation here beyond the attack/release smoother (:func:`automix.dsp.kernels._smooth_chunk`,
a few lines, a tenth of a second): the EQ cascades run through scipy's C ``sosfilt``
(transposed direct form II in float64, the fused kernel's recursion and state layout; loaded
without ``scipy.signal``, whose package import takes about 2 s), the detector, gain
computer, gain, saturator and output matrix in numpy over chunks of :data:`CHUNK` samples
(temporaries stay in cache), stems shared out over two threads (both release the GIL).
Filter states and the compressor's gain below :data:`automix.dsp.kernels.STATE_FLOOR`
are zeroed after every chunk, as the fused kernel does after each of its shorter chunks
(the difference is below -400 dBFS). Tests hold the two equal.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

#: Samples per stem and pass (float64 temporaries of 128 kB: in L2 cache).
CHUNK = 1 << 14


@lru_cache(maxsize=1)
def _sosfilt():
    """scipy's compiled ``_sosfilt(sos, x, zi)`` (in place on float64 ``x`` ``(C, n)`` and ``zi``
    ``(C, sections, 2)``), loaded without importing ``scipy.signal``; None where that fails."""
    try:
        import importlib.util
        from pathlib import Path

        import scipy

        folder = Path(scipy.__file__).parent / "signal"
        path = next(p for p in folder.iterdir() if p.name.startswith("_sosfilt.") and p.suffix in (".so", ".pyd"))
        spec = importlib.util.spec_from_file_location("scipy.signal._sosfilt", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        x = np.ones((1, 3))  # y[t] = x[t] - 0.5 y[t - 1]
        module._sosfilt(np.array([[1.0, 0.0, 0.0, 1.0, 0.5, 0.0]]), x, np.zeros((1, 1, 2)))
        if not np.allclose(x, [[1.0, 0.5, 0.75]]):
            return None
        return module._sosfilt
    except Exception:  # noqa: BLE001 - another scipy layout: the package's public sosfilt instead
        return None


def sosfilt_inplace(sos: np.ndarray, x: np.ndarray, zi: np.ndarray) -> None:
    """Filter float64 C-contiguous ``x`` ``(C, n)`` in place through ``sos`` ``(K, 6)`` from state ``zi``
    ``(C, K, 2)`` (updated in place): scipy's ``sosfilt`` on every row."""
    kernel = _sosfilt()
    if kernel is not None:
        kernel(sos, x, zi)
        return
    from scipy.signal import sosfilt

    y, zf = sosfilt(sos, x, axis=-1, zi=zi.transpose(1, 0, 2))
    x[...] = y
    zi[...] = zf.transpose(1, 0, 2)


def channel_strip_uncompiled(x, coef, comp, sat, out_gain, sos_state, comp_state, y) -> None:
    """:func:`automix.dsp.kernels.channel_strip` (same arguments, same results to float64
    rounding) without compiling it."""
    from automix.audio_kernels import without_blas_probe
    from automix.dsp.kernels import _smooth_chunk, _usable_cpus

    with without_blas_probe():  # compiled (or loaded) once, here, before the threads; without
        _smooth_chunk(np.zeros(1), 1, 0.5, 0.5, 0.0)  # the scipy.linalg import of Numba's BLAS probe
    n_stems = x.shape[0]
    workers = min(_usable_cpus(), n_stems, 2)
    if workers <= 1 or x.shape[-1] < CHUNK:
        for s in range(n_stems):
            _stem(x, coef, comp, sat, out_gain, sos_state, comp_state, y, s)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="channel_strip") as pool:
        for job in [pool.submit(_stem, x, coef, comp, sat, out_gain, sos_state, comp_state, y, s)
                    for s in range(n_stems)]:
            job.result()


def _stem(x, coef, comp, sat, out_gain, sos_state, comp_state, y, s: int) -> None:
    """Stem ``s`` of :func:`channel_strip_uncompiled`."""
    from automix.dsp.kernels import _DB_PER_NEPER_POWER, _NEPER_PER_DB_AMPLITUDE, STATE_FLOOR, _smooth_chunk

    n_ch, n_samples = x.shape[1], x.shape[2]
    c = coef[s]
    sos = np.ascontiguousarray(np.concatenate([c[:, :3], np.ones((c.shape[0], 1)), c[:, 3:]], axis=1))
    zi = np.ascontiguousarray(sos_state[s], dtype=np.float64)
    threshold_db, ratio, knee_db, makeup_db, alpha_attack, alpha_release = (float(v) for v in comp[s])
    drive, compensation, mix = (float(v) for v in sat[s])
    m = out_gain[s]
    dry, wet = 1.0 - mix, mix * compensation
    knee = max(knee_db, 1e-6)  # as automix.dsp.compressor.gain_computer_db
    slope = 1.0 / ratio - 1.0
    g = float(comp_state[s])
    block = np.empty((n_ch, CHUNK))
    target = np.empty(CHUNK)
    tmp = np.empty(CHUNK)
    for start in range(0, n_samples, CHUNK):
        n = min(CHUNK, n_samples - start)
        u = block[:, :n]
        u[...] = x[s, :, start:start + n]
        if n < CHUNK:
            u = np.ascontiguousarray(u)
        sosfilt_inplace(sos, u, zi)
        zi[np.abs(zi) < STATE_FLOOR] = 0.0
        at_rest = ratio == 1.0 and g == 0.0
        gain = None
        if not at_rest:
            gain = target[:n]
            t = tmp[:n]
            if ratio == 1.0:
                gain[...] = 0.0
            else:
                np.multiply(u[0], u[0], out=gain)
                if n_ch == 2:
                    np.multiply(u[1], u[1], out=t)
                    gain += t
                    gain *= 0.5
                gain += 1e-10  # LEVEL_FLOOR
                np.log(gain, out=gain)
                gain *= _DB_PER_NEPER_POWER
                gain -= threshold_db  # over (dB above the threshold)
                if 2.0 * float(gain.max()) <= -knee:  # below the knee throughout: no gain reduction
                    gain[...] = 0.0
                else:  # slope (over + knee/2)^2 / (2 knee) inside the knee, slope * over above it
                    np.add(gain, 0.5 * knee, out=t)
                    np.clip(t, 0.0, knee, out=t)
                    np.square(t, out=t)
                    t *= slope / (2.0 * knee)
                    gain -= 0.5 * knee
                    np.maximum(gain, 0.0, out=gain)
                    gain *= slope
                    gain += t
            if g == 0.0 and not gain.any():  # at rest and kept there: the smoother stays at 0 dB
                gain = None
                at_rest = True
            else:
                g = float(_smooth_chunk(gain, n, alpha_attack, alpha_release, g))
                if abs(g) < STATE_FLOOR:
                    g = 0.0
        if not (mix == 0.0 and at_rest and makeup_db == 0.0):
            if gain is None:
                lin = np.exp(_NEPER_PER_DB_AMPLITUDE * makeup_db)
            else:
                lin = gain
                lin += makeup_db
                lin *= _NEPER_PER_DB_AMPLITUDE
                np.exp(lin, out=lin)
            u *= lin
            if mix != 0.0:
                t = tmp[:n]
                for row in u:
                    np.multiply(row, drive, out=t)
                    np.tanh(t, out=t)
                    t *= wet
                    row *= dry
                    row += t
        out = y[s, :, start:start + n]
        a, b = target[:n], tmp[:n]  # the output matrix in float64, rounded once
        for row in range(2):
            np.multiply(u[0], m[row, 0], out=a)
            if n_ch == 2:
                np.multiply(u[1], m[row, 1], out=b)
                a += b
            out[row] = a
    sos_state[s] = zi
    comp_state[s] = g
