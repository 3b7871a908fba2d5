"""Training losses of the mix model: one small module per term, composed by :class:`CompositeLoss`.

Every term reads a :class:`MixPrediction` (what the console rendered from the model's
settings, and what it should have been) and returns a scalar tensor:

* :class:`SumDifferenceSTFTLoss` -- multi-resolution STFT distance of the stereo sum
  (mid, L+R) and difference (side, L-R) of the mix; tone and balance as heard.
* :class:`LoudnessLoss` -- K-weighted loudness error (LU) of the mix and of every stem
  (when the target stems are known, i.e. in the self-supervised "un-mixing" task).
* :class:`ParameterRegularization` -- pulls processing parameters toward neutral so that
  the model only EQs/compresses/saturates when it pays off.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from automix.dsp.params import STRIP, ParamTable
from automix.evaluation import kweighted_loudness_db


@dataclass
class MixPrediction:
    """What the console rendered from the model's settings, next to the target.

    Attributes
    ----------
    mix : Tensor (B, 2, T)
        Rendered mix.
    stems : Tensor (B, S, 2, T)
        Processed stems (they sum to ``mix``).
    target_mix : Tensor (B, 2, T)
        The mix to reproduce.
    target_stems : Tensor (B, S, 2, T) or None
        The stems as they sit in the target mix (known in the self-supervised task).
    mask : Tensor (B, S) bool
        True for real stems, False for padding.
    strip : Tensor (B, S, P)
        Strip settings (values, see :data:`automix.dsp.params.STRIP`) the model chose.
    sample_rate : int
        Hz.
    """

    mix: Tensor
    stems: Tensor
    target_mix: Tensor
    target_stems: Tensor | None
    mask: Tensor
    strip: Tensor
    sample_rate: int


# ----------------------------------------------------------------------------- STFT
class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence + log-magnitude L1, averaged over several STFT sizes.

    Parameters
    ----------
    fft_sizes : sequence of int
        Window lengths in samples; hop is ``hop_fraction`` of each.
    hop_fraction : float
        Hop as a fraction of the window.
    convergence_weight, log_magnitude_weight : float
        Weights of ``||  |Y|-|X|  ||_F / ||Y||_F`` and ``mean |log|Y| - log|X||``.
    eps : float
        Magnitude floor (linear) inside the log.
    """

    def __init__(self, fft_sizes: Sequence[int] = (2048, 1024, 512, 256), hop_fraction: float = 0.25,
                 convergence_weight: float = 1.0, log_magnitude_weight: float = 1.0, eps: float = 1e-5):
        super().__init__()
        self.fft_sizes = tuple(int(n) for n in fft_sizes)
        self.hop_fraction = float(hop_fraction)
        self.convergence_weight = float(convergence_weight)
        self.log_magnitude_weight = float(log_magnitude_weight)
        self.eps = float(eps)
        for n in self.fft_sizes:
            self.register_buffer(f"window_{n}", torch.hann_window(n), persistent=False)

    def _magnitude(self, x: Tensor, n_fft: int) -> Tensor:
        window = getattr(self, f"window_{n_fft}")
        hop = max(1, int(n_fft * self.hop_fraction))
        spec = torch.stft(x.reshape(-1, x.shape[-1]), n_fft, hop, window=window.to(x.dtype),
                          return_complex=True, center=True)
        return spec.abs()

    def forward(self, estimate: Tensor, target: Tensor) -> Tensor:
        """Loss between ``estimate`` and ``target`` of shape (..., T) (same shape)."""
        total = estimate.new_zeros(())
        for n_fft in self.fft_sizes:
            est = self._magnitude(estimate, n_fft)
            ref = self._magnitude(target, n_fft)
            convergence = torch.linalg.vector_norm(ref - est) / (torch.linalg.vector_norm(ref) + self.eps)
            log_mag = (torch.log(est + self.eps) - torch.log(ref + self.eps)).abs().mean()
            total = total + self.convergence_weight * convergence + self.log_magnitude_weight * log_mag
        return total / len(self.fft_sizes)


class SumDifferenceSTFTLoss(nn.Module):
    """Multi-resolution STFT loss on the stereo sum (L+R) and difference (L-R) of the mix.

    Parameters
    ----------
    fft_sizes, hop_fraction :
        See :class:`MultiResolutionSTFTLoss`.
    sum_weight, difference_weight : float
        Weights of the mid (L+R) and side (L-R) terms.
    """

    def __init__(self, fft_sizes: Sequence[int] = (2048, 1024, 512, 256), hop_fraction: float = 0.25,
                 sum_weight: float = 1.0, difference_weight: float = 0.5):
        super().__init__()
        self.stft = MultiResolutionSTFTLoss(fft_sizes, hop_fraction)
        self.sum_weight = float(sum_weight)
        self.difference_weight = float(difference_weight)

    def forward(self, pred: MixPrediction) -> Tensor:
        est, ref = pred.mix, pred.target_mix
        loss = self.sum_weight * self.stft(est[:, 0] + est[:, 1], ref[:, 0] + ref[:, 1])
        if self.difference_weight:
            loss = loss + self.difference_weight * self.stft(est[:, 0] - est[:, 1], ref[:, 0] - ref[:, 1])
        return loss


# ----------------------------------------------------------------------------- loudness
class LoudnessLoss(nn.Module):
    """Absolute loudness error in LU of the mix and (when known) of every stem.

    Parameters
    ----------
    mix_weight, stem_weight : float
        Weights of the mix term and of the mean per-stem term.
    silence_lufs : float
        Target stems quieter than this (LUFS) are ignored (nothing to balance).
    """

    def __init__(self, mix_weight: float = 1.0, stem_weight: float = 1.0, silence_lufs: float = -70.0):
        super().__init__()
        self.mix_weight = float(mix_weight)
        self.stem_weight = float(stem_weight)
        self.silence_lufs = float(silence_lufs)

    def forward(self, pred: MixPrediction) -> Tensor:
        sr = pred.sample_rate
        ref_mix = kweighted_loudness_db(pred.target_mix, sr)
        loss = self.mix_weight * (kweighted_loudness_db(pred.mix, sr) - ref_mix).abs().mean()
        if self.stem_weight and pred.target_stems is not None:
            ref = kweighted_loudness_db(pred.target_stems, sr)
            est = kweighted_loudness_db(pred.stems, sr)
            valid = pred.mask & (ref > self.silence_lufs)
            if bool(valid.any()):
                loss = loss + self.stem_weight * (est - ref).abs()[valid].mean()
        return loss


# ----------------------------------------------------------------------------- parameters
class ParameterRegularization(nn.Module):
    """Mean squared distance from neutral, in unit space, of the processing parameters.

    Parameters
    ----------
    exclude : sequence of str
        Parameters left free (the fader and pan set the balance and are not penalised).
    table : ParamTable
        The table the settings follow (``STRIP``).
    """

    def __init__(self, exclude: Sequence[str] = ("gain_db", "pan"), table: ParamTable = STRIP):
        super().__init__()
        self.table = table
        keep = torch.tensor([name not in set(exclude) for name in table.names])
        self.register_buffer("keep", keep, persistent=False)
        self.register_buffer("neutral_unit", table.to_unit(table.neutral.double()).float(), persistent=False)

    def forward(self, pred: MixPrediction) -> Tensor:
        unit = self.table.to_unit(pred.strip.float())
        distance = (unit - self.neutral_unit)[..., self.keep].square().mean(-1)
        mask = pred.mask
        return (distance * mask).sum() / mask.sum().clamp_min(1)


# ----------------------------------------------------------------------------- composition
class CompositeLoss(nn.Module):
    """Weighted sum of named loss terms.

    Parameters
    ----------
    terms : mapping of str to nn.Module
        Each term maps a :class:`MixPrediction` to a scalar.
    weights : mapping of str to float, optional
        Weight per term name (1 when missing).
    """

    def __init__(self, terms: Mapping[str, nn.Module], weights: Mapping[str, float] | None = None):
        super().__init__()
        self.terms = nn.ModuleDict(dict(terms))
        weights = dict(weights or {})
        unknown = set(weights) - set(self.terms)
        if unknown:
            raise ValueError(f"weights for unknown loss terms: {sorted(unknown)}")
        self.weights = {name: float(weights.get(name, 1.0)) for name in self.terms}

    def forward(self, pred: MixPrediction) -> tuple[Tensor, dict[str, float]]:
        """Total loss and the value of every term (floats, for logging)."""
        total = pred.mix.new_zeros((), dtype=torch.float32)
        parts: dict[str, float] = {}
        for name, term in self.terms.items():
            value = term(pred)
            parts[name] = float(value.detach())
            total = total + self.weights[name] * value
        return total, parts
