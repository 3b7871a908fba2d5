"""Tonal matching: fit readable parametric EQ bands to a target curve, plus a fine correction.

The target curve (dB per 1/6-octave band) is what the mix must gain to sound like the
reference. :func:`fit_parametric_eq` fits the master EQ of :data:`automix.dsp.params.MASTERING`
(low shelf, three bells, high shelf) to it by gradient descent on the exact biquad
response (the bands a person reads: "+2.1 dB high shelf at 8.2 kHz"). What the five bands
cannot follow is left to an optional **fine correction curve**, applied as a zero-phase
(linear-phase, latency-compensated) FIR designed by frequency sampling
(:func:`fine_correction_fir`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from automix.dsp.eq import eq_response
from automix.dsp.params import MASTERING

#: EQ parameters the fit may move (the high-pass stays bypassed).
FITTED = ("eq.low_shelf.freq_hz", "eq.low_shelf.gain_db",
          "eq.peak1.freq_hz", "eq.peak1.gain_db", "eq.peak1.q",
          "eq.peak2.freq_hz", "eq.peak2.gain_db", "eq.peak2.q",
          "eq.peak3.freq_hz", "eq.peak3.gain_db", "eq.peak3.q",
          "eq.high_shelf.freq_hz", "eq.high_shelf.gain_db")

#: Largest boost or cut of the fine correction curve (dB).
FINE_LIMIT_DB = 12.0

#: Length of the linear-phase tonal filters (s, rounded up to a power of two minus one):
#: 0.74 s gives about 2 Hz bins, enough for 1/6-octave detail down to 40 Hz.
FIR_SECONDS = 0.37

#: Fitting range of the tonal match (Hz): outside it the target is faded to 0 dB.
FIT_RANGE_HZ = (25.0, 18000.0)


@dataclass
class TonalMatch:
    """Result of fitting an EQ to a target curve.

    Attributes
    ----------
    values : np.ndarray or torch.Tensor
        ``(P,)`` float32 MASTERING settings with the fitted ``eq.*`` values (others neutral/default); the
        array type of the fit's ``base`` (torch when there was none).
    freqs_hz : np.ndarray
        Grid of the curves.
    target_db, parametric_db, fine_db : np.ndarray
        Wanted curve, response of the parametric bands, fine correction (target - bands, limited).
    """

    values: torch.Tensor
    freqs_hz: np.ndarray
    target_db: np.ndarray
    parametric_db: np.ndarray
    fine_db: np.ndarray

    @property
    def residual_db(self) -> float:
        """RMS (dB) of what the parametric bands alone leave unmatched."""
        return float(np.sqrt(np.mean((self.target_db - self.parametric_db) ** 2)))


def fit_weights(freqs_hz: np.ndarray) -> np.ndarray:
    """Fit weight per band: 1 in 31.5 Hz - 16 kHz, fading to 0.1 outside."""
    f = np.asarray(freqs_hz)
    w = np.ones_like(f)
    w[f < 31.5] = 0.3
    w[f > 16000] = 0.3
    return w


def smooth_curve(db: np.ndarray, bands: int = 1) -> np.ndarray:
    """Moving average over ``2 * bands + 1`` neighbouring grid points (edges held)."""
    if bands <= 0:
        return np.asarray(db, dtype=np.float64)
    padded = np.pad(np.asarray(db, dtype=np.float64), bands, mode="edge")
    kernel = np.ones(2 * bands + 1) / (2 * bands + 1)
    return np.convolve(padded, kernel, mode="valid")


def fit_parametric_eq(freqs_hz: np.ndarray, target_db: np.ndarray, sample_rate: int,
                      max_evaluations: int = 10, base: torch.Tensor | None = None) -> TonalMatch:
    """Fit the five parametric bands of :data:`MASTERING` to ``target_db``.

    Bounded least squares (trust region) on the parameters' unit positions, with the
    exact biquad magnitude response; the Jacobian comes from one batched evaluation
    of the response (finite differences), so a fit takes a fraction of a second.
    A small penalty on the gains keeps unneeded bands flat (readable settings).

    Parameters
    ----------
    freqs_hz : np.ndarray (F,)
        Frequencies of the target, Hz.
    target_db : np.ndarray (F,)
        Wanted EQ gain per frequency, dB.
    sample_rate : int
        Hz (the biquads are designed for it).
    max_evaluations : int
        Trust-region iterations at most (the fine correction curve takes what the bands
        leave, so a rough fit only costs readability, not accuracy).
    base : np.ndarray or torch.Tensor (P,), optional
        MASTERING settings to start from (defaults: neutral). The fit computes in numpy either way;
        the result's ``values`` are of ``base``'s type (torch without a ``base``).

    Returns
    -------
    TonalMatch
    """
    from scipy.optimize import least_squares

    from automix.dsp.biquad import _is_torch

    freqs = np.asarray(freqs_hz, dtype=np.float64)
    target = np.asarray(target_db, dtype=np.float64)
    torch_out = base is None or _is_torch(base)
    if base is None:
        values0 = MASTERING.defaults(dtype=np.float64)
    elif _is_torch(base):
        values0 = base.detach().cpu().double().numpy().copy()
    else:
        values0 = np.array(base, dtype=np.float64)
    values0[MASTERING.index("eq.hpf.mix")] = 0.0
    idx = np.array([MASTERING.index(n) for n in FITTED])
    gain_pos = [i for i, n in enumerate(FITTED) if n.endswith("gain_db")]
    unit_base = MASTERING.to_unit(values0)
    u0 = np.clip(unit_base[idx], 0.0, 1.0)
    sqrt_w = np.sqrt(fit_weights(freqs) / fit_weights(freqs).mean())
    penalty = math.sqrt(1e-3)

    def responses(units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        unit = np.repeat(unit_base[None], units.shape[0], axis=0)
        unit[:, idx] = units
        values = MASTERING.from_unit(unit)
        resp = 20.0 * np.log10(np.maximum(np.abs(eq_response(values, MASTERING, freqs, sample_rate)), 1e-9))
        return resp, values[:, idx[gain_pos]]

    def residuals_of(resp: np.ndarray, gains: np.ndarray) -> np.ndarray:
        return np.concatenate([sqrt_w * (resp - target), penalty * gains], axis=-1)

    def fun(u: np.ndarray) -> np.ndarray:
        resp, gains = responses(u[None])
        return residuals_of(resp, gains)[0]

    def jac(u: np.ndarray) -> np.ndarray:
        step = 1e-4
        shifted = u[None, :] + step * np.eye(u.size)
        over = shifted[:, :] > 1.0
        shifted[over] -= 2 * step
        resp, gains = responses(np.concatenate([u[None], shifted]))
        r = residuals_of(resp, gains)
        signs = np.where(over.any(axis=1), -1.0, 1.0)
        return ((r[1:] - r[0]) / (step * signs[:, None])).T

    solution = least_squares(fun, u0, jac=jac, bounds=(0.0, 1.0), method="trf", max_nfev=max_evaluations,
                             x_scale=1.0)
    resp, _ = responses(solution.x[None])
    unit = unit_base.copy()
    unit[idx] = solution.x
    values = MASTERING.from_unit(unit).astype(np.float32)
    if torch_out:
        import torch

        values = torch.from_numpy(values)
    fine = np.clip(target - resp[0], -FINE_LIMIT_DB, FINE_LIMIT_DB)
    return TonalMatch(values=values, freqs_hz=freqs, target_db=target, parametric_db=resp[0], fine_db=fine)


def fir_length(sample_rate: int) -> int:
    """Default odd FIR length (:data:`FIR_SECONDS` rounded up to a power of two, minus one)."""
    return int(2 ** math.ceil(math.log2(sample_rate * FIR_SECONDS))) - 1


def zero_phase_fir(magnitude: np.ndarray, length: int) -> np.ndarray:
    """Centred, Hann-windowed FIR ``(length,)`` from a magnitude sampled on the ``length + 1``-point rfft grid."""
    impulse = np.fft.irfft(magnitude, n=length + 1)
    impulse = np.roll(impulse, length // 2)[:length]
    return impulse * np.hanning(length + 2)[1:-1]


def curve_on_bins(freqs_hz: np.ndarray, gain_db: np.ndarray, bins_hz: np.ndarray) -> np.ndarray:
    """``gain_db`` interpolated on a log-frequency axis at ``bins_hz`` (held beyond its ends), dB."""
    return np.interp(np.log(np.maximum(bins_hz, 1.0)), np.log(freqs_hz), gain_db)


def fine_correction_fir(freqs_hz: np.ndarray, gain_db: np.ndarray, sample_rate: int,
                        length: int | None = None) -> np.ndarray:
    """Zero-phase FIR (odd length, centred) whose magnitude follows ``gain_db`` over ``freqs_hz``.

    Frequency sampling: the curve is interpolated on a log-frequency axis onto the DFT
    grid (held constant beyond its ends), the zero-phase impulse response is centred and
    Hann-windowed.

    Parameters
    ----------
    freqs_hz, gain_db : np.ndarray
        Curve to follow (Hz, dB).
    sample_rate : int
        Hz.
    length : int, optional
        Taps (odd); default :func:`fir_length`.

    Returns
    -------
    np.ndarray
        ``(length,)`` float64 taps; the filter delays by ``length // 2`` samples.
    """
    length = length or fir_length(sample_rate)
    bins = np.fft.rfftfreq(length + 1, 1.0 / sample_rate)
    return zero_phase_fir(10.0 ** (curve_on_bins(freqs_hz, gain_db, bins) / 20.0), length)


def apply_fir(x: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Filter ``x`` ``(channels, T)`` by the centred FIR ``taps`` (``(L,)`` shared, or ``(channels, L)``);
    no delay: the output is aligned with the input."""
    from scipy.signal import oaconvolve

    taps = np.atleast_2d(taps).astype(np.float32)
    delay = taps.shape[-1] // 2
    x = np.asarray(x, dtype=np.float32)
    n = x.shape[-1]
    y = oaconvolve(x, taps, mode="full", axes=-1)  # overlap-add: fast and cache-friendly at any length
    return np.ascontiguousarray(y[:, delay: delay + n], dtype=np.float32)
