"""Mid/side width control: the side signal's level in three frequency regions.

With ``mid = (L+R)/2`` and ``side = (L-R)/2``, the side signal goes through a gain of
``width.mid_side_db``, a low shelf at ``width.low_freq_hz`` of ``low_side_db - mid_side_db``
and a high shelf at ``width.high_freq_hz`` of ``high_side_db - mid_side_db`` (RBJ biquads
from :mod:`automix.dsp.biquad`); the mid signal is untouched. Negative side levels narrow
the image (-inf would be mono), positive ones widen it. Differentiable in torch; the design and
response also take numpy settings (no torch import).
"""
from __future__ import annotations

import numpy as np

from automix.dsp import biquad as bq
from automix.dsp.params import SHELF_Q, MASTERING


def width_sos(values: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """Cascade ``(..., 2, 6)`` float64 applied to the side signal, for MASTERING settings ``(..., P)``
    (torch or numpy, returned alike)."""
    ops = bq.array_ops(values)
    v = values.to(ops.torch.float64) if bq._is_torch(values) else np.asarray(values, dtype=np.float64)

    def p(name: str):
        return v[..., MASTERING.index(f"width.{name}")]

    mid = p("mid_side_db")
    low = bq.to_sos(*bq.design_low_shelf(p("low_freq_hz"), p("low_side_db") - mid, sample_rate, SHELF_Q))
    b_hi, a_hi = bq.design_high_shelf(p("high_freq_hz"), p("high_side_db") - mid, sample_rate, SHELF_Q)
    high = bq.to_sos(b_hi * ops.unsqueeze(ops.pow(10.0, mid / 20.0), -1), a_hi)
    return ops.stack([low, high], -2)


def side_response_db(values: torch.Tensor, freqs_hz, sample_rate: float) -> torch.Tensor:
    """Side gain (dB) at ``freqs_hz`` for MASTERING settings ``values`` ``(..., P)`` -> ``(..., F)``."""
    return bq.magnitude_db(bq.sos_response(width_sos(values, sample_rate), freqs_hz, sample_rate))


def is_neutral(values: torch.Tensor) -> bool:
    """True when the settings leave the side signal untouched."""
    return all(abs(float(values[MASTERING.index(f"width.{n}_side_db")])) < 1e-6 for n in ("low", "mid", "high"))


def apply_width(x: torch.Tensor, values: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """Apply the width settings ``values`` ``(..., P)`` to stereo ``x`` ``(..., 2, T)`` (mono passes through)."""
    import torch

    if x.shape[-2] != 2:
        return x
    mid = 0.5 * (x[..., 0, :] + x[..., 1, :])
    side = 0.5 * (x[..., 0, :] - x[..., 1, :])
    side = bq.apply_sos(side, width_sos(values, sample_rate)).to(x.dtype)
    return torch.stack([mid + side, mid - side], dim=-2)


def apply_width_numpy(x: np.ndarray, values: torch.Tensor, sample_rate: float) -> np.ndarray:
    """:func:`apply_width` for a numpy ``(2, T)`` float32 array (no gradients)."""
    import torch

    with torch.no_grad():
        return apply_width(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.as_tensor(values),
                           sample_rate).numpy()
