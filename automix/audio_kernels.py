"""Numba kernels of :mod:`automix.audio`: interleaved blocks from libsndfile to planar ``float32``.

Decoding a file is mostly memory traffic, so each block is converted, de-interleaved
and scanned for its extremes in one pass while it is still in cache. Compiled on first
use and cached on disk (``cache=True``).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
from numba import njit

#: libsndfile's integer encodings read here as integer codes -> (numpy dtype of the codes,
#: scale to full scale). 24-bit codes arrive left-justified in 32 bits. Each ``float32(code)
#: * scale`` is the value libsndfile's own float conversion gives (exact: a power-of-two scale).
INTEGER_READS: dict[str, tuple[str, float]] = {
    "PCM_16": ("int16", 2.0**-15),
    "PCM_24": ("int32", 2.0**-31),
    "PCM_32": ("int32", 2.0**-31),
}


@njit(cache=True, nogil=True)
def int_block_to_planar(flat, channels, frames, out, pos, extremes, scale):  # pragma: no cover - compiled
    """Write ``frames`` interleaved integer frames as ``float32`` into ``out[:, pos:pos + frames]``.

    Parameters
    ----------
    flat : (>= frames * channels,) int16 or int32, interleaved codes (frame-major)
    channels, frames : int
    out : (channels, T) float32, planar output: ``float32(code) * scale``
    pos : int, first output frame
    extremes : (channels, 2) int64, running ``(max, min)`` code per channel, updated
    scale : float, full scale per code (a power of two)
    """
    factor = np.float32(scale)
    if channels == 2:  # the common case, with the channel stride known: vectorises
        hi0, lo0 = np.int32(extremes[0, 0]), np.int32(extremes[0, 1])
        hi1, lo1 = np.int32(extremes[1, 0]), np.int32(extremes[1, 1])
        left = out[0, pos: pos + frames]
        right = out[1, pos: pos + frames]
        src = flat[: 2 * frames]
        for i in range(frames):
            u = np.int32(src[2 * i])
            v = np.int32(src[2 * i + 1])
            left[i] = np.float32(u) * factor
            right[i] = np.float32(v) * factor
            hi0 = max(hi0, u)
            lo0 = min(lo0, u)
            hi1 = max(hi1, v)
            lo1 = min(lo1, v)
        extremes[0, 0], extremes[0, 1], extremes[1, 0], extremes[1, 1] = hi0, lo0, hi1, lo1
        return
    for c in range(channels):
        hi = extremes[c, 0]
        lo = extremes[c, 1]
        row = out[c, pos: pos + frames]
        for i in range(frames):
            v = flat[i * channels + c]
            row[i] = np.float32(v) * factor
            hi = max(hi, np.int64(v))
            lo = min(lo, np.int64(v))
        extremes[c, 0] = hi
        extremes[c, 1] = lo


#: Float samples smaller than this (2**-40, -240.8 dBFS) are read as exact zeros. They carry no
#: sound (a 24-bit file's smallest step is -138 dBFS, a 32-bit integer's -187 dBFS), but a
#: float export's fade-outs and reverb tails are full of them, down to subnormals: those and
#: their squares (subnormal from about -380 dBFS) take x86 CPUs ~100 times longer per operation
#: in every later stage (analysis, filters, sums).
FLOAT_FLOOR = 2.0**-40
_FLOOR_EXPONENT_BITS = (127 - 40) << 23  # float32 bits: |v| >= 2**-40 <=> exponent field >= this
_EXPONENT_MASK = 0x7F800000


@njit(cache=True, nogil=True)
def float_block_to_planar(flat, channels, frames, out, pos, extremes):  # pragma: no cover - compiled
    """Write ``frames`` interleaved ``float32`` frames into ``out[:, pos:pos + frames]``.

    Samples below :data:`FLOAT_FLOOR` in magnitude become 0 (decided on the bits: no
    arithmetic on a subnormal). ``extremes`` ((channels, 2) float64) holds the running
    ``(max, min)`` per channel; a NaN anywhere makes both NaN (and they stay NaN:
    comparisons with NaN are false), so a damaged file is noticed.
    """
    bits = flat.view(np.int32)
    if channels == 2:  # the common case, with the channel stride known: vectorises
        hi0, lo0, hi1, lo1 = extremes[0, 0], extremes[0, 1], extremes[1, 0], extremes[1, 1]
        nan = False
        left = out[0, pos: pos + frames]
        right = out[1, pos: pos + frames]
        for i in range(frames):
            u = flat[2 * i] if (bits[2 * i] & _EXPONENT_MASK) >= _FLOOR_EXPONENT_BITS else np.float32(0.0)
            v = flat[2 * i + 1] if (bits[2 * i + 1] & _EXPONENT_MASK) >= _FLOOR_EXPONENT_BITS else np.float32(0.0)
            left[i] = u
            right[i] = v
            a = np.float64(u)
            b = np.float64(v)
            hi0 = a if a > hi0 else hi0
            lo0 = a if a < lo0 else lo0
            hi1 = b if b > hi1 else hi1
            lo1 = b if b < lo1 else lo1
            nan |= (a != a) | (b != b)
        if nan:
            hi0 = lo0 = hi1 = lo1 = np.nan
        extremes[0, 0], extremes[0, 1], extremes[1, 0], extremes[1, 1] = hi0, lo0, hi1, lo1
        return
    for c in range(channels):
        hi = extremes[c, 0]
        lo = extremes[c, 1]
        row = out[c]
        nan = False
        for i in range(frames):
            k = i * channels + c
            v = flat[k] if (bits[k] & _EXPONENT_MASK) >= _FLOOR_EXPONENT_BITS else np.float32(0.0)
            row[pos + i] = v
            w = np.float64(v)
            hi = w if w > hi else hi
            lo = w if w < lo else lo
            nan |= w != w
        if nan:
            hi = lo = np.nan
        extremes[c, 0] = hi
        extremes[c, 1] = lo


@njit(cache=True, nogil=True)
def pcm24_block_to_planar(raw, channels, frames, out, pos, extremes, scale):  # pragma: no cover - compiled
    """Write ``frames`` interleaved 24-bit little-endian frames (``raw`` bytes) as ``float32``
    into ``out[:, pos:pos + frames]``.

    Each code is taken left-justified in 32 bits (``b0 << 8 | b1 << 16 | b2 << 24``, as
    libsndfile delivers 24-bit integers) and ``out = float32(code) * scale``;
    ``extremes`` ((channels, 2) int64) holds the running ``(max, min)`` code per channel.
    """
    factor = np.float32(scale)
    for c in range(channels):
        hi = np.int32(extremes[c, 0])
        lo = np.int32(extremes[c, 1])
        row = out[c, pos: pos + frames]
        for i in range(frames):
            k = 3 * (i * channels + c)
            code = np.int32((np.uint32(raw[k]) << 8) | (np.uint32(raw[k + 1]) << 16) | (np.uint32(raw[k + 2]) << 24))
            row[i] = np.float32(code) * factor
            hi = max(hi, code)
            lo = min(lo, code)
        extremes[c, 0] = hi
        extremes[c, 1] = lo


@njit(cache=True, nogil=True)
def quantize_interleaved(x, bits, out, start, stop):  # pragma: no cover - compiled
    """Round planar float samples to ``bits``-bit codes, interleaved for libsndfile, in one pass.

    The same codes as :func:`automix.audio.quantize` without dither (round half to even,
    clipped to the code range, left-justified in 32 bits), written frame-major.

    Parameters
    ----------
    x : (channels, frames) float32 or float64, full scale +-1.0
    bits : int, 16 or 24
    out : (frames, channels) int32, written for frames ``start`` to ``stop``
    start, stop : int, the frames to do (separate ranges can run on separate threads)

    Returns
    -------
    int : how many samples of the range were beyond full scale (clipped)
    """
    scale = 2.0 ** (bits - 1)
    top, bottom = scale - 1.0, -scale
    shift = 32 - bits
    clipped = 0
    channels = x.shape[0]
    for c in range(channels):
        for i in range(start, stop):
            v = np.rint(np.float64(x[c, i]) * scale)
            if v > top:
                v = top
                clipped += 1
            elif v < bottom:
                v = bottom
                clipped += 1
            out[i, c] = np.int32(v) << shift
    return clipped


def warm_up() -> None:
    """Load a decoder from numba's on-disk cache now (numba's start-up, about half a second
    of Python work in a fresh process, happens here rather than mid-read).

    Numba's start-up also probes for a BLAS by importing ``scipy.linalg`` (0.3-0.5 s here,
    most of it scipy cloning numpy's namespace), which only decides whether jitted
    ``np.convolve``/``np.correlate`` use BLAS for their inner products; no automix kernel
    calls those (``np.dot`` and ``np.linalg`` in jitted code import it themselves when
    compiled). :func:`without_blas_probe` skips that import for this one call.
    """
    from automix.precompile import ready

    args = (np.zeros(6, dtype=np.uint8), 2, 1, np.zeros((2, 1), dtype=np.float32), 0,
            np.zeros((2, 2), dtype=np.int64), 2.0**-31)
    with without_blas_probe():
        if ready(pcm24_block_to_planar, *args):  # a first run (automix.precompile): started, not compiled
            pcm24_block_to_planar(*args)


#: The module numba's start-up imports to probe for a BLAS (numba.np.linalg.ensure_blas).
_BLAS_PROBE = "scipy.linalg.cython_blas"


@contextmanager
def without_blas_probe() -> Iterator[None]:
    """Numba's start-up (its first compile or cache load in a process) inside this block
    finds no BLAS, without importing scipy; afterwards scipy imports as usual.

    Only while numba has not started (``numba.np.arraymath`` not yet imported) and scipy's
    BLAS is not loaded; otherwise it does nothing. A ``None`` in ``sys.modules`` makes
    that one import fail at once (Python's documented way to block an import).
    """
    import sys

    if "numba.np.arraymath" in sys.modules or _BLAS_PROBE in sys.modules:
        yield
        return
    sys.modules[_BLAS_PROBE] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if sys.modules.get(_BLAS_PROBE, 0) is None:
            del sys.modules[_BLAS_PROBE]
