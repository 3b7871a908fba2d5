"""Feed-forward compressor: static gain computer in dB plus attack/release smoothing.

Signal flow per stem (channels linked)::

    level_db = 10 log10(mean over channels of x^2 + 1e-10)          (instantaneous level)
    target_db = gain_computer_db(level_db, threshold_db, ratio, knee_db)   (<= 0)
    smoothed_db[n] = a smoothed_db[n-1] + (1 - a) target_db[n]
        a = alpha(attack_ms) while target_db[n] < smoothed_db[n-1] (gain falling), else alpha(release_ms)
    y = x * 10^((smoothed_db + makeup_db) / 20)

with ``alpha(t_ms) = exp(-1 / (t_ms / 1000 * sample_rate))``: a step of the target is followed
to 1 - 1/e (63 %) after ``t_ms``. This is the "smooth decoupled/branching" design of
Giannoulis, Massberg & Reiss (JAES 2012). The smoothing recursion runs in a Numba kernel
with a custom autograd backward (:class:`SmoothGain`), so every parameter gets a gradient.
The mastering limiter may reuse :func:`smooth_gain`.
"""
from __future__ import annotations

import numpy as np
import torch

LEVEL_FLOOR = 1e-10
"""Added to the mean power before the log (-100 dB), so silence has a finite level."""


def gain_computer_db(level_db: torch.Tensor, threshold_db: torch.Tensor, ratio: torch.Tensor,
                     knee_db: torch.Tensor) -> torch.Tensor:
    """Static compressor curve: gain change in dB (<= 0) for an input level in dB.

    Textbook soft knee of width ``knee_db`` centred on ``threshold_db``; ``ratio`` 1 gives 0 dB
    everywhere, ``knee_db`` 0 a hard knee. All arguments broadcast.
    """
    over = level_db - threshold_db
    slope = 1.0 / ratio - 1.0
    width = torch.clamp(torch.as_tensor(knee_db, dtype=over.dtype, device=over.device), min=1e-6)
    in_knee = slope * (over + 0.5 * width) ** 2 / (2.0 * width)
    above = slope * over
    out = torch.where(2.0 * over >= width, above, torch.where(2.0 * over <= -width, torch.zeros_like(over), in_knee))
    return out


from automix.dsp.smoothing import time_constant_coefficient  # noqa: E402,F401 - numpy or torch, one definition


def _np(t: torch.Tensor, dtype=None) -> np.ndarray:
    """Contiguous numpy view/copy on the CPU (signals keep their dtype; kernels use float64 inside)."""
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=dtype)


class SmoothGain(torch.autograd.Function):
    """Attack/release smoothing of rows ``target_db`` (M, T) from a 0 dB start; see the module doc."""

    @staticmethod
    def forward(ctx, target_db, alpha_attack, alpha_release):
        out, _ = _smooth_numpy(target_db, alpha_attack, alpha_release, None)
        out_t = torch.from_numpy(out).to(device=target_db.device, dtype=target_db.dtype)
        ctx.save_for_backward(target_db, alpha_attack, alpha_release)
        return out_t

    @staticmethod
    def backward(ctx, grad_out):
        from automix.dsp.kernels import smooth_gain_backward
        target, aa, ar = ctx.saved_tensors
        m, n = target.shape
        g_target = np.empty((m, n), dtype=_np(target).dtype)
        g_alpha = np.empty((m, 2))
        smooth_gain_backward(_np(target), np.zeros(m), _np(aa, np.float64), _np(ar, np.float64),
                             _np(grad_out.to(target.dtype)), g_target, g_alpha)
        dev = target.device
        return (torch.from_numpy(g_target).to(dev, target.dtype),
                torch.from_numpy(g_alpha[:, 0]).to(dev, aa.dtype),
                torch.from_numpy(g_alpha[:, 1]).to(dev, ar.dtype))


def _smooth_numpy(target_db, alpha_attack, alpha_release, state):
    from automix.dsp.kernels import smooth_gain_forward
    m = target_db.shape[0]
    st = np.zeros(m) if state is None else _np(state, np.float64).copy()
    tn = _np(target_db)
    out = np.empty(tn.shape, dtype=tn.dtype)
    smooth_gain_forward(tn, _np(alpha_attack, np.float64), _np(alpha_release, np.float64), st, out)
    return out, st


def smooth_gain(target_db: torch.Tensor, attack_ms: torch.Tensor, release_ms: torch.Tensor,
                sample_rate: float, state: torch.Tensor | None = None, return_state: bool = False):
    """Attack/release smoothing of a gain in dB.

    Parameters
    ----------
    target_db : Tensor (..., T) gain wanted by the gain computer (dB, <= 0 for a compressor).
    attack_ms, release_ms : Tensor (...) time constants in ms.
    state : Tensor (...) float64 or None, smoothed gain before the first sample (0 dB if None).
        Gradients are supported only from the default state.
    return_state : also return the final state (for block processing).

    Returns
    -------
    Tensor (..., T) smoothed gain in dB (and the final state (...) when ``return_state``).
    """
    lead = target_db.shape[:-1]
    rows = target_db.reshape(-1, target_db.shape[-1])
    aa = time_constant_coefficient(attack_ms.to(target_db.dtype), sample_rate).expand(lead).reshape(-1)
    ar = time_constant_coefficient(release_ms.to(target_db.dtype), sample_rate).expand(lead).reshape(-1)
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (target_db, attack_ms, release_ms))
    if needs_grad:
        if state is not None:
            raise NotImplementedError("gradients through a carried compressor state are not supported")
        out = SmoothGain.apply(rows, aa, ar)
        final = out[:, -1].detach().double() if out.shape[-1] else torch.zeros(rows.shape[0], dtype=torch.float64)
    else:
        st = None if state is None else state.reshape(-1)
        out_np, st_np = _smooth_numpy(rows, aa, ar, st)
        out = torch.from_numpy(out_np).to(device=target_db.device, dtype=target_db.dtype)
        final = torch.from_numpy(st_np)
    out = out.reshape(target_db.shape)
    return (out, final.reshape(lead).to(target_db.device)) if return_state else out


def detector_level_db(x: torch.Tensor) -> torch.Tensor:
    """Instantaneous linked level in dB of ``x`` (..., C, T): mean power over channels -> (..., T)."""
    return 10.0 * torch.log10(torch.mean(x * x, dim=-2) + LEVEL_FLOOR)


class _FusedCompressor(torch.autograd.Function):
    """The whole compressor of rows ``x`` (M, C, T) with ``params`` (M, 6) float64 in one kernel.

    ``params`` per row: ``threshold_db, ratio, knee_db, makeup_db, alpha_attack, alpha_release``.
    The backward is the exact adjoint (:func:`automix.dsp.train_kernels.compressor_backward`).
    """

    @staticmethod
    def forward(ctx, x, params):
        from automix.dsp.train_kernels import compressor_forward
        xn = _np(x)
        y = np.empty_like(xn)
        compressor_forward(xn, _np(params, np.float64), y)
        ctx.save_for_backward(x, params)
        return torch.from_numpy(y)

    @staticmethod
    def backward(ctx, grad_y):
        from automix.dsp.train_kernels import compressor_backward
        x, params = ctx.saved_tensors
        xn = _np(x)
        grad_x = np.empty_like(xn)
        grad_params = np.empty((xn.shape[0], 6))
        compressor_backward(xn, _np(params, np.float64), _np(grad_y.to(x.dtype)), grad_x, grad_params)
        return torch.from_numpy(grad_x), torch.from_numpy(grad_params).to(params.dtype)


def compress(x: torch.Tensor, threshold_db: torch.Tensor, ratio: torch.Tensor, attack_ms: torch.Tensor,
             release_ms: torch.Tensor, knee_db: torch.Tensor, makeup_db: torch.Tensor,
             sample_rate: float) -> torch.Tensor:
    """Compress ``x`` (..., C, T) with channels linked; parameters are tensors (...) (differentiable).

    Returns the compressed signal, same shape and dtype as ``x``. On the CPU the whole
    compressor runs in one compiled pass with an exact custom backward (float64 inside);
    elsewhere it is :func:`compress_reference`, the same equations in torch operations.
    """
    if x.device.type != "cpu":
        return compress_reference(x, threshold_db, ratio, attack_ms, release_ms, knee_db, makeup_db, sample_rate)
    lead = x.shape[:-2]
    dtype = torch.float64

    def per_row(t: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(t, device=x.device).to(dtype).expand(lead).reshape(-1)

    params = torch.stack([per_row(threshold_db), per_row(ratio), per_row(knee_db), per_row(makeup_db),
                          time_constant_coefficient(per_row(attack_ms), sample_rate),
                          time_constant_coefficient(per_row(release_ms), sample_rate)], dim=-1)
    rows = x.reshape(-1, *x.shape[-2:])
    if not rows.is_contiguous():
        rows = rows.contiguous()
    return _FusedCompressor.apply(rows, params).reshape(x.shape)


def compress_reference(x: torch.Tensor, threshold_db: torch.Tensor, ratio: torch.Tensor, attack_ms: torch.Tensor,
                       release_ms: torch.Tensor, knee_db: torch.Tensor, makeup_db: torch.Tensor,
                       sample_rate: float) -> torch.Tensor:
    """:func:`compress` written as torch operations plus :func:`smooth_gain` (any device; the reference)."""
    target = gain_computer_db(detector_level_db(x), threshold_db.unsqueeze(-1), ratio.unsqueeze(-1),
                              knee_db.unsqueeze(-1))
    smoothed = smooth_gain(target, attack_ms, release_ms, sample_rate)
    gain = torch.pow(10.0, (smoothed + makeup_db.unsqueeze(-1)) / 20.0)
    return x * gain.unsqueeze(-2)
