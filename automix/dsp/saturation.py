"""Loudness-compensated soft-clip saturation (harmonic enhancement).

``wet = tanh(drive * x) * compensation(drive)`` and ``y = (1 - mix) x + mix wet``.
The compensation makes a reference sine (peak ``REFERENCE_PEAK``, -12 dBFS) come out of
the saturator at the RMS level it went in, so turning up the drive adds harmonics and
density rather than level. It is computed in torch (64-point quadrature over a quarter
period) and is differentiable with respect to the drive. :func:`drive_gain` and
:func:`loudness_compensation` also take numpy arrays (the console's settings at inference,
without importing torch) and return numpy arrays then.
"""
from __future__ import annotations

import math

import numpy as np

REFERENCE_PEAK = 0.25
"""Peak amplitude (-12 dBFS) of the sine whose RMS the saturator preserves."""

_QUADRATURE_POINTS = 64


def drive_gain(drive_db: torch.Tensor) -> torch.Tensor:
    """Linear drive from ``drive_db`` (dB)."""
    if isinstance(drive_db, np.ndarray):
        return np.power(10.0, drive_db / 20.0)
    import torch

    return torch.pow(10.0, drive_db / 20.0)


def loudness_compensation(drive: torch.Tensor) -> torch.Tensor:
    """Gain (...) that restores the RMS of the reference sine after ``tanh(drive * x)``."""
    if isinstance(drive, np.ndarray):
        theta = (np.arange(_QUADRATURE_POINTS, dtype=drive.dtype) + 0.5) * (math.pi / 2 / _QUADRATURE_POINTS)
        sine = REFERENCE_PEAK * np.sin(theta)
        wet_rms = np.sqrt(np.mean(np.tanh(drive[..., None] * sine) ** 2, axis=-1))
        return (REFERENCE_PEAK / math.sqrt(2.0)) / wet_rms
    import torch

    theta = (torch.arange(_QUADRATURE_POINTS, dtype=drive.dtype, device=drive.device) + 0.5) * (
        math.pi / 2 / _QUADRATURE_POINTS)
    sine = REFERENCE_PEAK * torch.sin(theta)
    wet_rms = torch.sqrt(torch.mean(torch.tanh(drive.unsqueeze(-1) * sine) ** 2, dim=-1))
    return (REFERENCE_PEAK / math.sqrt(2.0)) / wet_rms


def saturate(x: torch.Tensor, drive_db: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
    """Saturate ``x`` (..., C, T); ``drive_db`` (dB) and ``mix`` (0 = dry, 1 = wet) are tensors (...)."""
    import torch

    drive = drive_gain(drive_db).to(x.dtype)
    comp = loudness_compensation(drive).unsqueeze(-1).unsqueeze(-1)
    wet = torch.tanh(drive.unsqueeze(-1).unsqueeze(-1) * x) * comp
    m = mix.to(x.dtype).unsqueeze(-1).unsqueeze(-1)
    return (1.0 - m) * x + m * wet
