"""How much of a master is *not* a filter of its input: the non-linear residual, for any tool.

A mastering chain that only equalises, widens and changes level is linear and time-invariant
(LTI): some filter maps the input to the output exactly. Limiting, clipping and compression
are not. :func:`nonlinear_residual` fits the best LTI filter from input to output by least
squares -- per output channel, one two-sided FIR of ``taps`` coefficients from *each* input
channel (so mid/side and width processing count as linear) -- and reports the energy of what
the filter cannot explain, relative to the output's energy:

    residual_db = 10 log10( sum (y - h * x)^2 / sum y^2 )        (lower is cleaner)

over the whole file and over the loudest 10 % of 400 ms blocks (where a limiter works
hardest). It needs only the input and the output files, so it scores automix, Matchering or
any other tool the same way. Both signals are first high-passed at :data:`HIGHPASS_HZ`.

The fit solves the normal equations (block-Toeplitz, ``channels x taps`` unknowns per output
channel, built from the signals' auto- and cross-correlations taken by FFT) with conjugate
gradients, preconditioned by T. Chan's circulant approximation inverted per frequency bin;
every iteration lowers the residual energy, and the iteration stops once it no longer
improves by 0.001 dB. The filter's lags run from ``-taps/2`` to ``taps/2 - 1``
samples, which covers zero-phase (linear-phase, latency-compensated) equalisers and small
delays.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

DEFAULT_TAPS = 4096
"""FIR length per input channel of the linear fit (93 ms at 44.1 kHz, lags -46 .. +46 ms)."""

HIGHPASS_HZ = 20.0
"""Both signals are high-passed here first (4th-order Butterworth, the same filter on both, so an LTI
tool still fits exactly): infrasonic content and DC filters would need far longer filters than a few
thousand taps to follow, and are not heard."""

BLOCK_S = 0.4
"""Block length (s) of the per-block residual (the momentary-loudness window)."""

LOUD_FRACTION = 0.1
"""Share of the blocks, loudest first by output energy, in :attr:`Residual.loud_db`."""


@dataclass
class Residual:
    """Non-linear residual of an output against its input (see the module notes).

    Attributes
    ----------
    overall_db : float
        Residual energy relative to the output energy over the whole file (dB, lower is cleaner).
    loud_db : float
        The same over the loudest :data:`LOUD_FRACTION` of :data:`BLOCK_S` blocks.
    taps : int
        FIR length per input channel of the fitted filter.
    iterations : int
        Conjugate-gradient iterations of the fit (largest over output channels).
    """

    overall_db: float
    loud_db: float
    taps: int
    iterations: int

    def as_dict(self) -> dict:
        return asdict(self)


def _correlations(x: np.ndarray, y: np.ndarray, taps: int) -> tuple[np.ndarray, np.ndarray]:
    """``phi[j, k, :]``: correlation of inputs j and k at lags ``-(taps-1) .. taps-1``; ``cross[c, j, :]``:
    of input j with output c at lags ``-taps/2 .. taps/2 - 1`` (FFT, float64)."""
    from scipy import fft as sfft

    frames = x.shape[-1]
    n = sfft.next_fast_len(frames + taps, real=True)
    spec_x = sfft.rfft(x, n=n, axis=-1)
    spec_y = sfft.rfft(y, n=n, axis=-1)
    inputs = x.shape[0]
    phi = np.empty((inputs, inputs, 2 * taps - 1))
    lags = np.arange(-(taps - 1), taps)
    for j in range(inputs):
        for k in range(j, inputs):
            r = sfft.irfft(np.conj(spec_x[j]) * spec_x[k], n=n)  # r[m] = sum_t x_j[t] x_k[t + m]
            phi[j, k] = r[lags % n]
            phi[k, j] = phi[j, k][::-1]
    half = taps // 2
    cross_lags = np.arange(-half, taps - half)
    cross = np.empty((y.shape[0], inputs, taps))
    for c in range(y.shape[0]):
        for j in range(inputs):
            r = sfft.irfft(np.conj(spec_x[j]) * spec_y[c], n=n)  # r[l] = sum_t x_j[t] y[t + l]
            cross[c, j] = r[cross_lags % n]
    return phi, cross


class _Normal:
    """The block-Toeplitz normal matrix ``A[(j, l), (k, m)] = phi[j, k][l - m]`` as an FFT matvec."""

    def __init__(self, phi: np.ndarray, taps: int):
        from scipy import fft as sfft

        self.taps = taps
        self.n = sfft.next_fast_len(4 * taps, real=True)
        # A h: out_j[l] = sum_k sum_m phi[k, j][m - l] h_k[m] -- written as a convolution of h_k with the
        # reversed correlation; phi[j, k][d] at index d + taps - 1, d = l - m
        self.spectra = sfft.rfft(phi, n=self.n, axis=-1)

    def __call__(self, h: np.ndarray) -> np.ndarray:
        from scipy import fft as sfft

        spec_h = sfft.rfft(h, n=self.n, axis=-1)  # (inputs, bins)
        total = np.einsum("jkf,kf->jf", self.spectra, spec_h)
        full = sfft.irfft(total, n=self.n, axis=-1)
        return full[:, self.taps - 1: 2 * self.taps - 1]


def _preconditioner(phi: np.ndarray, taps: int):
    """T. Chan's optimal circulant approximation of the block-Toeplitz normal matrix, inverted per
    frequency bin (``inputs x inputs``): returns ``r -> C^-1 r`` for ``r`` ``(inputs, taps)``."""
    from scipy import fft as sfft

    d = np.arange(taps)
    centre = taps - 1  # phi[..., centre + lag]
    pos = phi[..., centre + d]  # lags 0 .. taps-1
    neg = np.concatenate([np.zeros(phi.shape[:-1] + (1,)), phi[..., centre - taps + d[1:]]], axis=-1)  # lags d - taps
    c = ((taps - d) * pos + d * neg) / taps
    spectra = np.moveaxis(sfft.fft(c, axis=-1), -1, 0)  # (bins, inputs, inputs), Hermitian PSD per bin
    inputs = phi.shape[0]
    ridge = 1e-10 * max(float(np.max(np.abs(np.trace(spectra, axis1=1, axis2=2)))), 1e-300)
    inverse = np.linalg.inv(spectra + ridge * np.eye(inputs)[None])

    def apply(r: np.ndarray) -> np.ndarray:
        spec = sfft.fft(r, axis=-1)  # (inputs, bins)
        return np.real(sfft.ifft(np.einsum("fjk,kf->jf", inverse, spec), axis=-1))

    return apply


def _fit(normal: _Normal, precondition, rhs: np.ndarray, energy: float, max_iterations: int,
         tolerance_db: float = 1e-3) -> tuple[np.ndarray, int]:
    """Preconditioned conjugate gradients on ``A h = rhs`` from ``h = 0``; stops when the residual energy
    ``energy - 2 h.rhs + h.A h`` improves by less than ``tolerance_db`` in an iteration."""
    h = np.zeros_like(rhs)
    r = rhs.copy()
    z = precondition(r)
    p = z.copy()
    rz = float(np.vdot(r, z))
    current = energy
    it = 0
    for it in range(1, max_iterations + 1):
        ap = normal(p)
        pap = float(np.vdot(p, ap))
        if pap <= 0 or rz <= 0:
            break
        alpha = rz / pap
        h += alpha * p
        r -= alpha * ap
        new = current - alpha * rz  # the residual energy drops by alpha * r.z (exact PCG identity)
        if new <= 0 or 10 * math.log10(max(current, 1e-300) / max(new, 1e-300)) < tolerance_db:
            break
        current = new
        z = precondition(r)
        rz_new = float(np.vdot(r, z))
        p = z + (rz_new / rz) * p
        rz = rz_new
    return h, it


def nonlinear_residual(inputs: np.ndarray, outputs: np.ndarray, sample_rate: int, taps: int = DEFAULT_TAPS,
                       max_iterations: int = 400) -> Residual:
    """Non-linear residual of ``outputs`` against ``inputs`` (see the module notes).

    Parameters
    ----------
    inputs : np.ndarray
        ``(channels_in, T)`` what went into the tool (the mix), full scale +-1.
    outputs : np.ndarray
        ``(channels_out, T')`` what came out (the master), same sample rate; both are cut to the
        shorter length (the fit's lags absorb a delay of up to ``taps / 2`` samples).
    sample_rate : int
        Hz (sets the block length).
    taps : int
        FIR length per input channel (even).

    Returns
    -------
    Residual
    """
    from scipy.signal import oaconvolve

    x = np.atleast_2d(np.asarray(inputs, dtype=np.float64))
    y = np.atleast_2d(np.asarray(outputs, dtype=np.float64))
    frames = min(x.shape[-1], y.shape[-1])
    if frames < taps:
        raise ValueError(f"the signals are {frames} samples long; the fit needs at least {taps}")
    x, y = x[:, :frames], y[:, :frames]
    if HIGHPASS_HZ > 0:
        from scipy.signal import butter, sosfilt

        sos = butter(4, HIGHPASS_HZ, btype="highpass", fs=sample_rate, output="sos")
        x, y = sosfilt(sos, x, axis=-1), sosfilt(sos, y, axis=-1)
    taps = int(taps) + int(taps) % 2
    phi, cross = _correlations(x, y, taps)
    normal = _Normal(phi, taps)
    precondition = _preconditioner(phi, taps)
    half = taps // 2
    residual = np.empty_like(y)
    iterations = 0
    for c in range(y.shape[0]):
        h, it = _fit(normal, precondition, cross[c], float(np.dot(y[c], y[c])), max_iterations)
        iterations = max(iterations, it)
        predicted = np.zeros(frames)
        for j in range(x.shape[0]):
            # y_hat[t] = sum_l h[l] x[t - l], l = -half .. taps - half - 1
            full = oaconvolve(x[j], h[j])
            predicted += full[half: half + frames]
        residual[c] = y[c] - predicted
    block = max(1, int(round(BLOCK_S * sample_rate)))
    blocks = frames // block
    out_e = (y[:, : blocks * block] ** 2).reshape(y.shape[0], blocks, block).sum(axis=(0, 2))
    res_e = (residual[:, : blocks * block] ** 2).reshape(y.shape[0], blocks, block).sum(axis=(0, 2))
    loud = np.argsort(out_e)[::-1][: max(1, int(math.ceil(LOUD_FRACTION * blocks)))]

    def ratio_db(num: float, den: float) -> float:
        return 10 * math.log10(max(num, 1e-30) / max(den, 1e-30))

    return Residual(overall_db=ratio_db(float((residual ** 2).sum()), float((y ** 2).sum())),
                    loud_db=ratio_db(float(res_e[loud].sum()), float(out_e[loud].sum())),
                    taps=taps, iterations=iterations)


def gain_residual(x: np.ndarray, y: np.ndarray, sample_rate: int, block: int = 1 << 18) -> Residual:
    """Quick non-linear residual of ``y`` against ``x`` (both ``(channels, T)``, aligned) with a single
    least-squares gain in place of the FIR: ``y - a x`` with ``a = <x, y> / <x, x>`` over all channels.

    Used by the loudness landing to score its own clipper and limiter against their input (the chain's
    output, already filtered), where no filter is needed; an upper bound of :func:`nonlinear_residual`'s
    figure for the same pair. One pass, ``block`` frames at a time (no whole-file temporaries).
    """
    frames = min(x.shape[-1], y.shape[-1])
    size = max(1, int(round(BLOCK_S * sample_rate)))
    blocks = max(1, frames // size)
    sums = np.zeros((3, blocks))  # per 400 ms block: <x, y>, <x, x>, <y, y>
    step = max(size, (block // size) * size)
    for start in range(0, blocks * size, step):
        stop = min(blocks * size, start + step)
        a = np.asarray(x[:, start:stop], dtype=np.float64).reshape(x.shape[0], -1, size)
        b = np.asarray(y[:, start:stop], dtype=np.float64).reshape(y.shape[0], -1, size)
        sl = slice(start // size, stop // size)
        sums[0, sl] = np.einsum("cbt,cbt->b", a, b)
        sums[1, sl] = np.einsum("cbt,cbt->b", a, a)
        sums[2, sl] = np.einsum("cbt,cbt->b", b, b)
    xy, xx, yy = sums
    gain = float(xy.sum() / max(xx.sum(), 1e-300))
    residual = np.maximum(yy - 2 * gain * xy + gain * gain * xx, 0.0)
    loud = np.argsort(yy)[::-1][: max(1, int(math.ceil(LOUD_FRACTION * blocks)))]

    def ratio_db(num: float, den: float) -> float:
        return 10 * math.log10(max(num, 1e-30) / max(den, 1e-30))

    return Residual(overall_db=ratio_db(float(residual.sum()), float(yy.sum())),
                    loud_db=ratio_db(float(residual[loud].sum()), float(yy[loud].sum())), taps=1, iterations=0)
