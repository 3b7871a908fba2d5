"""RBJ-cookbook biquads: coefficient design, frequency response and exact filtering.

All design functions broadcast over any leading shape of their tensor arguments and are
differentiable. Design and response functions are written once for torch tensors and numpy arrays:
given no torch tensor they compute in numpy (float64) and return numpy arrays, without importing
torch (mastering runs that way). They return ``(b, a)``, each ``(..., 3)``, normalised so ``a[..., 0] == 1``
(Robert Bristow-Johnson, "Cookbook formulae for audio EQ biquad filter coefficients").

A cascade of sections is an ``sos`` tensor ``(..., K, 6)`` with rows ``(b0, b1, b2, a0, a1,
a2)`` -- the layout of :func:`scipy.signal.sosfilt`. :func:`apply_sos` filters exactly in
the time domain (float64 recursion in a Numba kernel, custom autograd backward, so it is
differentiable with respect to the signal and every coefficient). CUDA tensors are
processed on the CPU and moved back.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = [
    "design_highpass", "design_lowpass", "design_peaking", "design_low_shelf", "design_high_shelf",
    "to_sos", "biquad_response", "sos_response", "magnitude_db", "apply_biquad", "apply_sos",
    "max_design_freq_hz", "array_ops",
]


def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


class _NumpyOps:
    """The few array operations the design and response functions use, in numpy."""

    cos, sin, sqrt, exp, log10 = np.cos, np.sin, np.sqrt, np.exp, np.log10
    pow = staticmethod(np.power)

    @staticmethod
    def as_float(x, like=None):
        if like is not None:
            return np.asarray(x, dtype=like.dtype)
        x = np.asarray(x)
        return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float64)

    @staticmethod
    def clamp(x, lo=None, hi=None):
        return np.clip(x, lo, hi)

    @staticmethod
    def stack(items, dim):
        return np.stack(items, axis=dim)

    @staticmethod
    def cat(items, dim):
        return np.concatenate(items, axis=dim)

    @staticmethod
    def broadcast(*items):
        return np.broadcast_arrays(*items)

    ones_like = staticmethod(np.ones_like)

    @staticmethod
    def complex(re, im):
        return re + 1j * im

    @staticmethod
    def prod(x, dim):
        return np.prod(x, axis=dim)

    @staticmethod
    def abs(x):
        return np.abs(x)

    @staticmethod
    def unsqueeze(x, dim):
        return np.expand_dims(x, dim)


class _TorchOps:
    """The same operations in torch (differentiable; the reference the numpy ones follow)."""

    def __init__(self):
        import torch

        self.torch = torch
        self.cos, self.sin, self.sqrt, self.exp, self.log10 = torch.cos, torch.sin, torch.sqrt, torch.exp, torch.log10
        self.pow, self.ones_like, self.complex, self.abs = torch.pow, torch.ones_like, torch.complex, torch.abs

    def as_float(self, x, like=None):
        if like is not None:
            return self.torch.as_tensor(x, dtype=like.dtype, device=like.device)
        x = self.torch.as_tensor(x)
        return x if x.is_floating_point() else x.double()

    @staticmethod
    def clamp(x, lo=None, hi=None):
        return x.clamp(lo, hi)

    def stack(self, items, dim):
        return self.torch.stack(items, dim=dim)

    def cat(self, items, dim):
        return self.torch.cat(items, dim=dim)

    def broadcast(self, *items):
        return self.torch.broadcast_tensors(*items)

    def prod(self, x, dim):
        return self.torch.prod(x, dim=dim)

    @staticmethod
    def unsqueeze(x, dim):
        return x.unsqueeze(dim)


_NUMPY = _NumpyOps()


@lru_cache(maxsize=1)
def _torch_ops() -> _TorchOps:
    return _TorchOps()


def array_ops(*args: Any):
    """The operations for ``args``: torch's when any of them is a torch tensor, else numpy's."""
    return _torch_ops() if any(_is_torch(a) for a in args) else _NUMPY


def max_design_freq_hz(sample_rate: float) -> float:
    """Highest frequency the design functions accept (0.49 x sample rate, Hz); higher values are clamped."""
    return 0.49 * float(sample_rate)


def _angular(ops, freq_hz, sample_rate: float):
    freq_hz = ops.as_float(freq_hz)
    return 2.0 * math.pi * ops.clamp(freq_hz, 1e-3, max_design_freq_hz(sample_rate)) / float(sample_rate)


def _normalise(ops, b0, b1, b2, a0, a1, a2):
    b0, b1, b2, a0, a1, a2 = ops.broadcast(b0, b1, b2, a0, a1, a2)
    b = ops.stack([b0, b1, b2], -1) / ops.unsqueeze(a0, -1)
    a = ops.stack([ops.ones_like(a0), a1 / a0, a2 / a0], -1)
    return b, a


def design_highpass(freq_hz, q, sample_rate: float):
    """Second-order (12 dB/oct) high-pass; ``q = 1/sqrt(2)`` is Butterworth.

    Parameters
    ----------
    freq_hz : Tensor or array (...)  cutoff in Hz.
    q : Tensor or array (...) or float  quality factor.
    sample_rate : float  in Hz.
    """
    ops = array_ops(freq_hz, q)
    w0 = _angular(ops, freq_hz, sample_rate)
    cos, alpha = ops.cos(w0), ops.sin(w0) / (2.0 * ops.as_float(q, w0))
    return _normalise(ops, (1 + cos) / 2, -(1 + cos), (1 + cos) / 2, 1 + alpha, -2 * cos, 1 - alpha)


def design_lowpass(freq_hz, q, sample_rate: float):
    """Second-order (12 dB/oct) low-pass; arguments as :func:`design_highpass`."""
    ops = array_ops(freq_hz, q)
    w0 = _angular(ops, freq_hz, sample_rate)
    cos, alpha = ops.cos(w0), ops.sin(w0) / (2.0 * ops.as_float(q, w0))
    return _normalise(ops, (1 - cos) / 2, 1 - cos, (1 - cos) / 2, 1 + alpha, -2 * cos, 1 - alpha)


def design_peaking(freq_hz, gain_db, q, sample_rate: float):
    """Peaking (bell) EQ: ``gain_db`` at ``freq_hz`` (Hz), bandwidth set by ``q``; 0 dB is identity."""
    ops = array_ops(freq_hz, gain_db, q)
    w0 = _angular(ops, freq_hz, sample_rate)
    amp = ops.pow(10.0, ops.as_float(gain_db, w0) / 40.0)
    cos, alpha = ops.cos(w0), ops.sin(w0) / (2.0 * ops.as_float(q, w0))
    return _normalise(ops, 1 + alpha * amp, -2 * cos, 1 - alpha * amp, 1 + alpha / amp, -2 * cos, 1 - alpha / amp)


def _shelf_terms(ops, freq_hz, gain_db, q, sample_rate):
    w0 = _angular(ops, freq_hz, sample_rate)
    amp = ops.pow(10.0, ops.as_float(gain_db, w0) / 40.0)
    cos = ops.cos(w0)
    two_sqrt_a_alpha = 2.0 * ops.sqrt(amp) * ops.sin(w0) / (2.0 * ops.as_float(q, w0))
    return amp, cos, two_sqrt_a_alpha


def design_low_shelf(freq_hz, gain_db, sample_rate: float, q=1.0 / math.sqrt(2.0)):
    """Low shelf: ``gain_db`` below ``freq_hz`` (Hz, the half-gain point); ``q`` sets the slope."""
    ops = array_ops(freq_hz, gain_db, q)
    A, cos, k = _shelf_terms(ops, freq_hz, gain_db, q, sample_rate)
    return _normalise(ops, A * ((A + 1) - (A - 1) * cos + k), 2 * A * ((A - 1) - (A + 1) * cos),
                      A * ((A + 1) - (A - 1) * cos - k), (A + 1) + (A - 1) * cos + k,
                      -2 * ((A - 1) + (A + 1) * cos), (A + 1) + (A - 1) * cos - k)


def design_high_shelf(freq_hz, gain_db, sample_rate: float, q=1.0 / math.sqrt(2.0)):
    """High shelf: ``gain_db`` above ``freq_hz`` (Hz, the half-gain point); ``q`` sets the slope."""
    ops = array_ops(freq_hz, gain_db, q)
    A, cos, k = _shelf_terms(ops, freq_hz, gain_db, q, sample_rate)
    return _normalise(ops, A * ((A + 1) + (A - 1) * cos + k), -2 * A * ((A - 1) + (A + 1) * cos),
                      A * ((A + 1) + (A - 1) * cos - k), (A + 1) - (A - 1) * cos + k,
                      2 * ((A - 1) - (A + 1) * cos), (A + 1) - (A - 1) * cos - k)


def to_sos(b, a):
    """One section ``(..., 6)`` from ``b`` and ``a`` (each ``(..., 3)``)."""
    ops = array_ops(b, a)
    b, a = ops.broadcast(b, a)
    return ops.cat([b, a], -1)


# ----------------------------------------------------------------------------- responses
def biquad_response(b, a, freqs_hz, sample_rate: float):
    """Complex frequency response ``H(e^{jw})`` of ``(b, a)`` at ``freqs_hz``.

    Parameters
    ----------
    b, a : Tensor or array (..., 3)
    freqs_hz : Tensor or array (F,) in Hz.

    Returns
    -------
    Tensor (..., F) complex (differentiable), or a numpy array for numpy coefficients.
    """
    ops = array_ops(b, a)
    freqs = ops.as_float(freqs_hz, b)
    w = 2.0 * math.pi * freqs / float(sample_rate)
    cos1, sin1, cos2, sin2 = ops.cos(w), ops.sin(w), ops.cos(2 * w), ops.sin(2 * w)

    def poly(c):
        c0, c1, c2 = (c[..., i:i + 1] for i in range(3))
        return ops.complex(c0 + c1 * cos1 + c2 * cos2, -(c1 * sin1 + c2 * sin2))

    return poly(b) / poly(a)


def sos_response(sos, freqs_hz, sample_rate: float):
    """Complex response (..., F) of the cascade ``sos`` (..., K, 6): the product of its sections."""
    h = biquad_response(sos[..., :3], sos[..., 3:], freqs_hz, sample_rate)  # (..., K, F)
    return array_ops(sos).prod(h, -2)


def magnitude_db(h, floor_db: float = -240.0):
    """``20 log10 |h|`` in dB, floored at ``floor_db``."""
    ops = array_ops(h)
    return 20.0 * ops.log10(ops.clamp(ops.abs(h), 10.0 ** (floor_db / 20.0)))


# ----------------------------------------------------------------------------- filtering
def _normalised_coefficients(sos: torch.Tensor) -> torch.Tensor:
    """(..., K, 6) -> (..., K, 5) ``(b0, b1, b2, a1, a2) / a0``."""
    import torch

    a0 = sos[..., 3:4]
    return torch.cat([sos[..., :3] / a0, sos[..., 4:] / a0], dim=-1)


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy())


@lru_cache(maxsize=1)
def _sos_filter():
    """The autograd function of exact cascade filtering (defined on first use: torch imports then)."""
    import torch

    class _SosFilter(torch.autograd.Function):
        """Exact cascade filtering of rows x (N, T) with coefficients (N, K, 5) float64."""

        @staticmethod
        def forward(ctx, x, coef):
            ctx.save_for_backward(x, coef)
            return _filter_with_state(x, coef, None)[0]

        @staticmethod
        def backward(ctx, grad_y):
            x, coef = ctx.saved_tensors
            from automix.dsp.kernels import sos_backward
            xn = _to_numpy(x)
            cn = _to_numpy(coef.to(torch.float64))
            gx = np.empty_like(xn)
            gc = np.empty(cn.shape)
            sos_backward(xn, cn, _to_numpy(grad_y.to(x.dtype)), gx, gc)
            return (torch.from_numpy(gx).to(x.device),
                    torch.from_numpy(gc).to(device=coef.device, dtype=coef.dtype))

    return _SosFilter


def apply_sos(x: torch.Tensor, sos: torch.Tensor, zi: torch.Tensor | None = None,
              return_state: bool = False):
    """Filter ``x`` through the cascade ``sos`` exactly (time domain, float64 recursion).

    Parameters
    ----------
    x : Tensor (..., T) float32 or float64 signal; leading axes are channels/stems/batch.
    sos : Tensor (..., K, 6) sections ``(b0, b1, b2, a0, a1, a2)``; its leading axes
        broadcast against ``x.shape[:-1]`` (e.g. one cascade per stem shared by its channels
        with ``sos[:, :, None]`` for ``x`` (B, S, C, T)).
    zi : Tensor (..., K, 2) float64 or None
        Initial transposed-direct-form-II state per section (zeros when None). Not
        differentiable: gradients are only supported from zero state.
    return_state : bool
        Also return the final state ``(..., K, 2)`` (to continue with the next block).

    Returns
    -------
    y : Tensor like ``x``; and the final state when ``return_state``.
    """
    import torch

    lead = torch.broadcast_shapes(x.shape[:-1], sos.shape[:-2])
    n_sec = sos.shape[-2]
    coef = _normalised_coefficients(sos.to(torch.float64) if sos.dtype != torch.float64 else sos)
    coef = coef.expand(*lead, n_sec, 5).reshape(-1, n_sec, 5)
    rows = x.expand(*lead, x.shape[-1]).reshape(-1, x.shape[-1])
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or sos.requires_grad)
    if zi is None and not return_state:
        y = _sos_filter().apply(rows, coef) if needs_grad else _filter_with_state(rows, coef, None)[0]
        return y.reshape(*lead, x.shape[-1])
    if needs_grad and zi is not None:
        raise NotImplementedError("gradients through a carried filter state are not supported")
    if needs_grad:
        y = _sos_filter().apply(rows, coef)
        with torch.no_grad():
            _, state = _filter_with_state(rows.detach(), coef.detach(), None)
    else:
        y, state = _filter_with_state(rows, coef, zi if zi is None else
                                      zi.to(torch.float64).expand(*lead, n_sec, 2).reshape(-1, n_sec, 2))
    y = y.reshape(*lead, x.shape[-1])
    return (y, state.reshape(*lead, n_sec, 2)) if return_state else y


def _filter_with_state(rows: torch.Tensor, coef: torch.Tensor, zi: torch.Tensor | None):
    import torch

    from automix.dsp.kernels import sos6_forward, sos_forward
    xn = _to_numpy(rows)
    cn = _to_numpy(coef.to(torch.float64))
    state = np.zeros(cn.shape[:2] + (2,)) if zi is None else np.array(_to_numpy(zi), dtype=np.float64)
    y = np.empty_like(xn)
    (sos6_forward if cn.shape[1] == 6 else sos_forward)(xn, cn, state, y)
    return torch.from_numpy(y).to(rows.device), torch.from_numpy(state).to(rows.device)


def apply_biquad(x: torch.Tensor, b: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Filter ``x`` (..., T) through one biquad ``(b, a)`` (each (..., 3)); see :func:`apply_sos`."""
    return apply_sos(x, to_sos(b, a).unsqueeze(-2))
