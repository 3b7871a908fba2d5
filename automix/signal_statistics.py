"""What the mix losses read from every stem and mix, in one differentiable pass.

The per-stem loss terms need, for every signal (..., C, T), a handful of sums: the mean
square of each channel (left/right balance), the mean square of each channel through the
BS.1770 K-weighting (loudness), and the peak and mean square of each 400 ms block (crest
factor). Computed one torch operation at a time on a batch of stems these cost more than
the console's render; here they come from one compiled pass over the samples
(:func:`automix.dsp.train_kernels.signal_statistics_forward`) with an exact hand-written
adjoint, on the CPU. Elsewhere (GPU) the same quantities come from torch operations: the
K-weighting as a linear FFT convolution with its impulse response (truncated where it has
decayed below float32 rounding), so both paths measure the same thing.

The K-weighting runs causally from rest, as a meter does (:func:`automix.loudness.k_weighting_sos`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

#: Block of the crest-factor measure, ms (as :func:`automix.mix_metrics.crest_distance_db`).
CREST_BLOCK_MS = 400.0
#: Relative energy left in the K-weighting's impulse response where the GPU path truncates it.
_TAIL_ENERGY = 1e-16


@dataclass
class SignalStatistics:
    """Sums of signals (..., C, T), all differentiable with respect to the signals.

    Attributes
    ----------
    energy : Tensor (..., C)
        Mean square of every channel (linear).
    k_energy : Tensor (..., C)
        Mean square of every channel after K-weighting (linear).
    block_peak : Tensor (..., nb)
        Sample peak over both channels of each whole block (``nb = T // block``; linear).
    block_mean_square : Tensor (..., nb)
        Mean square over both channels of each block (linear).
    """

    energy: Tensor
    k_energy: Tensor
    block_peak: Tensor
    block_mean_square: Tensor

    def loudness_lufs(self, eps: float = 1e-10) -> Tensor:
        """Ungated BS.1770 loudness (LUFS), channels summed with unit weights -> (...)."""
        return -0.691 + 10.0 * torch.log10(self.k_energy.sum(-1) + eps)

    def balance_db(self, limit_db: float = 24.0) -> Tensor:
        """Left/right balance (dB, see :func:`balance_from_energy_db`) -> (...)."""
        return balance_from_energy_db(self.energy, limit_db)

    def crest_db(self, gate_db: float = -30.0, eps: float = 1e-8) -> Tensor:
        """Mean crest factor (peak / RMS, dB) of the blocks within ``gate_db`` of the loudest -> (...)."""
        level = 10.0 * torch.log10(self.block_mean_square + eps * eps)
        crest = 20.0 * torch.log10(self.block_peak + eps) - level
        keep = (level > level.amax(-1, keepdim=True) + gate_db).float()
        return (crest * keep).sum(-1) / keep.sum(-1).clamp_min(1)


def balance_from_energy_db(energy: Tensor, limit_db: float = 24.0, eps: float = 1e-8) -> Tensor:
    """Left/right balance ``10 log10(E_left / E_right)`` (dB) from channel energies (..., 2) -> (...).

    Positive = louder on the left. Soft-clamped (``tanh``) to +/-``limit_db`` so a hard-panned
    or silent channel gives a finite value and gradient.
    """
    energy = energy + eps
    ratio = 10.0 * (torch.log10(energy[..., 0]) - torch.log10(energy[..., 1]))
    return limit_db * torch.tanh(ratio / limit_db)


def block_length(sample_rate: int, block_ms: float = CREST_BLOCK_MS) -> int:
    """Samples per crest-factor block."""
    return max(1, int(round(block_ms * 1e-3 * sample_rate)))


def signal_statistics(x: Tensor, sample_rate: int, block_ms: float = CREST_BLOCK_MS) -> SignalStatistics:
    """:class:`SignalStatistics` of ``x`` (..., C, T); one compiled pass (and adjoint) on the CPU.

    Signals shorter than one block get a single block of their whole length.
    """
    block = min(block_length(sample_rate, block_ms), x.shape[-1])
    lead, (n_ch, n_samples) = x.shape[:-2], x.shape[-2:]
    rows = x.float().reshape(-1, n_ch, n_samples)
    if x.device.type == "cpu":
        from automix.loudness import k_weighting_sos

        sos = k_weighting_sos(int(sample_rate))
        sos = np.ascontiguousarray(np.concatenate([sos[:, :3], sos[:, 4:]], axis=1).reshape(-1))  # (b, a1, a2) x 2
        if not rows.is_contiguous():
            rows = rows.contiguous()
        energy, k_energy, peak, mean_square = _Statistics.apply(rows, sos, block)
    else:
        energy, k_energy, peak, mean_square = _statistics_torch(rows, int(sample_rate), block)
    return SignalStatistics(energy.reshape(*lead, n_ch), k_energy.reshape(*lead, n_ch),
                            peak.reshape(*lead, -1), mean_square.reshape(*lead, -1))


class _Statistics(torch.autograd.Function):
    """Rows (N, C, T) float32 -> (energy, k_energy, block peak, block mean square), float32."""

    @staticmethod
    def forward(ctx, rows, sos, block):
        from automix.dsp.train_kernels import signal_statistics_forward

        xn = rows.detach().numpy()
        n, n_ch, n_samples = xn.shape
        n_blocks = n_samples // block
        energy, k_energy = np.empty((n, n_ch)), np.empty((n, n_ch))
        peak, mean_square = np.empty((n, n_blocks)), np.empty((n, n_blocks))
        argmax = np.empty((n, n_blocks), dtype=np.int64)
        signal_statistics_forward(xn, sos, block, energy, k_energy, peak, mean_square, argmax)
        ctx.save_for_backward(rows)
        ctx.sos, ctx.block, ctx.argmax = sos, block, argmax
        return tuple(torch.from_numpy(a).float() for a in (energy, k_energy, peak, mean_square))

    @staticmethod
    def backward(ctx, g_energy, g_k_energy, g_peak, g_mean_square):
        from automix.dsp.train_kernels import signal_statistics_backward

        (rows,) = ctx.saved_tensors
        n, n_ch, _ = rows.shape
        n_blocks = ctx.argmax.shape[1]

        def grad(g, shape):
            return np.zeros(shape) if g is None else np.ascontiguousarray(g.detach().numpy(), dtype=np.float64)

        xn = rows.detach().numpy()
        grad_x = np.empty_like(xn)
        signal_statistics_backward(xn, ctx.sos, ctx.block, grad(g_energy, (n, n_ch)), grad(g_k_energy, (n, n_ch)),
                                   grad(g_peak, (n, n_blocks)), grad(g_mean_square, (n, n_blocks)), ctx.argmax,
                                   grad_x)
        return torch.from_numpy(grad_x), None, None


@lru_cache(maxsize=16)
def k_weighting_impulse_response(sample_rate: int) -> np.ndarray:
    """Impulse response of the K-weighting, truncated once all but ``1e-16`` of its energy is in."""
    from scipy.signal import sosfilt

    from automix.loudness import k_weighting_sos

    impulse = np.zeros(int(sample_rate))  # a second: the 38 Hz high-pass has long decayed
    impulse[0] = 1.0
    h = sosfilt(k_weighting_sos(sample_rate), impulse)
    tail = np.cumsum(np.square(h)[::-1])[::-1]
    keep = int(np.argmax(tail < _TAIL_ENERGY * tail[0])) or len(h)
    return h[:keep]


def _statistics_torch(rows: Tensor, sample_rate: int, block: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The same statistics in torch operations (any device)."""
    n_samples = rows.shape[-1]
    h = torch.as_tensor(k_weighting_impulse_response(sample_rate), dtype=torch.float32, device=rows.device)
    n_fft = 1 << math.ceil(math.log2(n_samples + h.shape[-1] - 1))
    filtered = torch.fft.irfft(torch.fft.rfft(rows, n=n_fft) * torch.fft.rfft(h, n=n_fft), n=n_fft)[..., :n_samples]
    n_blocks = n_samples // block
    blocks = rows[..., : n_blocks * block].unflatten(-1, (n_blocks, block))  # (N, C, nb, block)
    return (rows.square().mean(-1), filtered.square().mean(-1),
            blocks.abs().amax(-1).amax(-2), blocks.square().mean(-1).mean(-2))
