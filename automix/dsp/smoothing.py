"""One-pole smoothing coefficients of the compressor's attack and release (torch-free).

:func:`time_constant_coefficient` takes a torch tensor (differentiable: the compressor's
training path, :mod:`automix.dsp.compressor`, which re-exports it) or a numpy array (the
console's kernel arguments at inference, without importing torch) and returns the same kind.
"""
from __future__ import annotations

import numpy as np


def time_constant_coefficient(time_ms, sample_rate: float):
    """One-pole coefficient ``exp(-1 / (time_ms * sample_rate / 1000))`` (differentiable for tensors)."""
    if isinstance(time_ms, np.ndarray):
        return np.exp(-1000.0 / (time_ms * float(sample_rate)))
    import torch

    return torch.exp(-1000.0 / (time_ms * float(sample_rate)))
