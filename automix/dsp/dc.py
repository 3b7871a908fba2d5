"""DC offset: measure it and remove it with a DC-blocking high-pass (numpy, for file rendering).

A DC offset (a constant or slowly drifting shift of the waveform) is inaudible but eats
headroom: the limiter and the peak meters see it. Mixing removes it from stems at load,
mastering from the mix before its chain, both with :func:`remove_dc`.
"""
from __future__ import annotations

import numpy as np
from numba import njit

DC_CUTOFF_HZ = 5.0
"""Corner (Hz) of the DC-blocking high-pass: 2nd-order Butterworth, -3 dB at 5 Hz, -0.0001 dB at 50 Hz."""


def dc_offset(x: np.ndarray) -> float:
    """Largest per-channel mean of ``x`` ``(channels, T)``, as a fraction of full scale.

    Summed in float64 without a whole-signal temporary.
    """
    if x.shape[-1] == 0:
        return 0.0
    return float(np.abs(np.mean(x, axis=-1, dtype=np.float64)).max())


def remove_dc(x: np.ndarray, sample_rate: int, cutoff_hz: float = DC_CUTOFF_HZ, out: np.ndarray | None = None,
              block: int = 1 << 18) -> np.ndarray:
    """DC-blocking high-pass: 2nd-order Butterworth at ``cutoff_hz`` (Hz), causal, block by block.

    One compiled pass per channel (float64 state, transposed direct form II); the state
    carries across blocks, so the result does not depend on ``block`` and long files need
    no second whole-file copy.

    Parameters
    ----------
    x : np.ndarray ``(channels, T)``
    sample_rate : int, Hz
    cutoff_hz : float, Hz
    out : np.ndarray, optional
        Float32 array of ``x``'s shape to write into (may be ``x`` itself); default a new one.

    Returns
    -------
    np.ndarray ``(channels, T)`` float32
    """
    coef = dc_blocker_coefficients(sample_rate, cutoff_hz)
    state = np.zeros((x.shape[0], 2))
    y = np.empty(x.shape, dtype=np.float32) if out is None else out
    for start in range(0, x.shape[-1], block):
        _biquad_block(x[:, start:start + block], coef, state, y[:, start:start + block])
    return y


def dc_blocker_coefficients(sample_rate: int, cutoff_hz: float = DC_CUTOFF_HZ) -> np.ndarray:
    """``(b0, b1, b2, a1, a2)`` (float64, ``a0 = 1``) of the 2nd-order Butterworth high-pass at ``cutoff_hz`` (Hz).

    The console's RBJ high-pass at ``q = 1/sqrt(2)`` (:func:`automix.dsp.biquad.design_highpass`)
    is the bilinear-transformed Butterworth, pre-warped at the corner: scipy's ``butter``
    design (the tests compare them).
    """
    from automix.dsp.biquad import design_highpass

    b, a = design_highpass(np.float64(cutoff_hz), 1.0 / np.sqrt(2.0), sample_rate)
    return np.concatenate([b, a[1:]]).astype(np.float64)


@njit(cache=True, nogil=True)
def _biquad_block(x, coef, state, y):  # pragma: no cover - compiled
    """``y = biquad(x)`` per channel of ``x`` ``(C, n)``; ``coef`` = (b0, b1, b2, a1, a2), ``state`` (C, 2) carried."""
    b0, b1, b2, a1, a2 = coef[0], coef[1], coef[2], coef[3], coef[4]
    for c in range(x.shape[0]):
        s1, s2 = state[c, 0], state[c, 1]
        for i in range(x.shape[1]):
            v = np.float64(x[c, i])
            o = b0 * v + s1
            s1 = b1 * v - a1 * o + s2
            s2 = b2 * v - a2 * o
            y[c, i] = o
        state[c, 0], state[c, 1] = s1, s2
