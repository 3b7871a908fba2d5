"""Constant-power pan (mono stems) and balance (stereo stems), -3 dB law, unity at centre.

For ``pan`` in [-1, 1] let ``theta = (pan + 1) pi / 4``. A mono stem goes to
``(sqrt2 cos theta, sqrt2 sin theta)``: 0 dB per side at centre, +3 dB on the hard side
and silence on the other at the extremes (left^2 + right^2 is constant). A stereo stem keeps
its channels and is balanced: the side the stem moves away from is scaled by the same law
and the near side stays at 0 dB, ``(min(1, sqrt2 cos theta), min(1, sqrt2 sin theta))``.

:func:`pan_gains` and :func:`output_matrix` take torch tensors (differentiable, training) or
numpy arrays (the console's settings at inference, without importing torch) and return the
same kind.
"""
from __future__ import annotations

import math

import numpy as np


def pan_gains(pan: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Constant-power (left, right) gains for ``pan`` (...), linear."""
    theta = (pan + 1.0) * (math.pi / 4.0)
    if isinstance(pan, np.ndarray):
        return math.sqrt(2.0) * np.cos(theta), math.sqrt(2.0) * np.sin(theta)
    import torch

    return math.sqrt(2.0) * torch.cos(theta), math.sqrt(2.0) * torch.sin(theta)


def output_matrix(pan: torch.Tensor, gain_db: torch.Tensor, n_channels: int) -> torch.Tensor:
    """Matrix (..., 2, C) taking a stem's C channels (1 or 2) to the stereo bus, fader included.

    Parameters
    ----------
    pan : Tensor (...) in [-1, 1].
    gain_db : Tensor (...) fader level in dB.
    n_channels : 1 (pan) or 2 (balance).
    """
    left, right = pan_gains(pan)
    if isinstance(pan, np.ndarray):
        fader = np.power(10.0, np.asarray(gain_db) / 20.0)
        if n_channels == 1:
            return np.stack([left, right], axis=-1)[..., None] * fader[..., None, None]
        if n_channels == 2:
            left, right = np.minimum(left, 1.0), np.minimum(right, 1.0)
            zero = np.zeros_like(left)
            m = np.stack([np.stack([left, zero], -1), np.stack([zero, right], -1)], -2)
            return m * fader[..., None, None]
        raise ValueError(f"stems must have 1 or 2 channels, not {n_channels}")
    import torch

    fader = torch.pow(10.0, gain_db / 20.0)
    if n_channels == 1:
        return torch.stack([left, right], dim=-1).unsqueeze(-1) * fader[..., None, None]
    if n_channels == 2:
        one = torch.ones_like(left)
        left, right = torch.minimum(left, one), torch.minimum(right, one)
        zero = torch.zeros_like(left)
        m = torch.stack([torch.stack([left, zero], -1), torch.stack([zero, right], -1)], -2)
        return m * fader[..., None, None]
    raise ValueError(f"stems must have 1 or 2 channels, not {n_channels}")


def apply_matrix(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """``x`` (..., C, T) through ``matrix`` (..., 2, C) -> (..., 2, T)."""
    import torch

    return torch.matmul(matrix.to(x.dtype), x)
