"""Training losses of the mix model: one small module per term, composed by :class:`CompositeLoss`.

Every term reads a :class:`MixPrediction` (what the console rendered from the model's
settings, and what it should have been) and returns a scalar tensor:

* :class:`SumDifferenceSTFTLoss` -- multi-resolution STFT distance of the stereo sum
  (mid, L+R) and difference (side, L-R) of the mix; tone and balance as heard.
* :class:`LoudnessLoss` -- K-weighted loudness error (LU) of the mix and of every stem
  (when the target stems are known, i.e. in the self-supervised "un-mixing" task).
* :class:`StereoBalanceLoss` -- every stem's left/right balance (dB) against where it sits
  in the target; mirror-invariant per example (a mix flipped left for right is as good).
* :class:`StereoImageLoss` -- the mix's side/mid ratio per octave band (dB): how wide each
  register is.
* :class:`DynamicsLoss` -- the mix's short-term loudness spread (LU) and every stem's crest
  factor (dB): how much the levels move and how peaky each stem is.
* :class:`ParameterRegularization` -- pulls processing parameters toward neutral so that
  the model only EQs/compresses/saturates when it pays off.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from automix.dsp.params import STRIP, ParamTable
from automix.signal_statistics import SignalStatistics, balance_from_energy_db, signal_statistics


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
    cache : dict
        What one term computed that another can reuse (spectra, target loudness), filled
        by :func:`memo`; empty when the prediction is made.
    width_from_effects : Tensor (B, S) bool or None
        Stems that reached the model as mono while their target is wide
        (:func:`width_from_effects`): a pan is the console's only way to give back their
        width, so their left/right balance target is one-sided (see :class:`StereoBalanceLoss`).
    """

    mix: Tensor
    stems: Tensor
    target_mix: Tensor
    target_stems: Tensor | None
    mask: Tensor
    strip: Tensor
    sample_rate: int
    cache: dict = field(default_factory=dict, repr=False, compare=False)
    width_from_effects: Tensor | None = None


#: A target stem counts as wide when the energy across its main left/right direction is
#: above this fraction of the energy along it (dB).
WIDE_MINOR_DB = -20.0
#: A wide target stem within this left/right balance (dB) counts as centred.
CENTRED_BALANCE_DB = 1.5


def width_from_effects(inputs: Tensor, target_stems: Tensor, mask: Tensor | None = None) -> Tensor:
    """(B, S) bool: stems that arrive mono (left equals right) but are wide in the target.

    A stereo-reverb pad, a chorused piano or a double-tracked guitar folded to dry mono
    cannot be given its width back by a pan-and-EQ console: a pan further out than the
    real stem's placement is the nearest the console gets. Wide: the target's energy across
    its main direction above :data:`WIDE_MINOR_DB` of the energy along it (so a panned mono
    source is not wide). Stems that arrive stereo keep their full balance target.
    """
    with torch.no_grad():
        x, y = inputs.float(), target_stems.float()
        mono = (x[..., 0, :] - x[..., 1, :]).abs().amax(-1) <= 1e-7 * x.abs().amax((-2, -1)).clamp_min(1e-30)
        # width across the stem's main direction (a panned mono source has none): the 2 x 2
        # channel covariance's smaller eigenvalue against its larger one
        ll, rr = y[..., 0, :].square().mean(-1), y[..., 1, :].square().mean(-1)
        lr = (y[..., 0, :] * y[..., 1, :]).mean(-1)
        half, spread = (ll + rr) / 2, ((ll - rr).square() / 4 + lr.square()).sqrt()
        wide = mono & (half - spread > (half + spread) * 10.0 ** (WIDE_MINOR_DB / 10.0))
        return wide if mask is None else wide & mask.bool()


def memo(pred: MixPrediction, key: tuple, compute: Callable[[], Tensor], *, target: bool = False) -> Tensor:
    """``compute()`` once per prediction and ``key``; target-side values (``target=True``) without autograd.

    Several terms read the same spectra and the same target loudness; a step computes each
    once. Target quantities never carry gradient, so they are computed under ``no_grad``.
    """
    if key not in pred.cache:
        if target:
            with torch.no_grad():
                pred.cache[key] = compute()
        else:
            pred.cache[key] = compute()
    return pred.cache[key]


def statistics(pred: MixPrediction, which: str) -> SignalStatistics:
    """:class:`~automix.signal_statistics.SignalStatistics` of ``pred.<which>`` (``stems``, ``mix``,
    ``target_stems`` or ``target_mix``), computed once per prediction (targets without autograd)."""
    return memo(pred, ("statistics", which), lambda: signal_statistics(getattr(pred, which), pred.sample_rate),
                target=which.startswith("target"))


def sum_difference_of(pred: MixPrediction, which: str) -> Tensor:
    """:func:`sum_and_difference` of ``pred.mix`` or ``pred.target_mix``, once per prediction."""
    return memo(pred, ("sum_difference", which), lambda: sum_and_difference(getattr(pred, which)),
                target=which.startswith("target"))


def target_stem_loudness(pred: MixPrediction) -> Tensor:
    """K-weighted loudness (LUFS, ungated) of every target stem (B, S), computed once per prediction."""
    return statistics(pred, "target_stems").loudness_lufs()


def audible_target_stems(pred: MixPrediction, silence_lufs: float) -> Tensor:
    """(B, S) bool: real stems whose target is louder than ``silence_lufs`` (LUFS)."""
    return pred.mask & (target_stem_loudness(pred) > silence_lufs)


def power_spectrogram(x: Tensor, n_fft: int, hop: int, window: Tensor) -> Tensor:
    """Power spectrogram of signals (N, T) -> (N, F, frames): Hann ``window``, frames centred
    on multiples of ``hop`` with zeros beyond the ends (``1 + T // hop`` frames).

    Power is ``re^2 + im^2`` (no complex ``abs``, whose gradient is undefined at zero). At
    hop ``n_fft / 2`` (the training default) the frames are two reshapes of the padded signal
    instead of :func:`torch.stft`'s gathered windows, whose backward scatters every sample
    twice (a third of the STFT term's cost).
    """
    window = window.to(x.dtype)
    if 2 * hop != n_fft:
        spec = torch.view_as_real(torch.stft(x, n_fft, hop, window=window, return_complex=True, center=True,
                                             pad_mode="constant")).square()
        return spec[..., 0] + spec[..., 1]  # a sum over the last axis of 2 is a slow strided reduction
    n_frames = 1 + x.shape[-1] // hop
    length = (n_frames + 1) * hop
    padded = torch.nn.functional.pad(x, (hop, length - hop - x.shape[-1]))
    even, odd = (n_frames + 1) // 2, n_frames // 2
    frames = torch.cat([padded[..., : even * n_fft].unflatten(-1, (even, n_fft)),
                        padded[..., hop: hop + odd * n_fft].unflatten(-1, (odd, n_fft))], -2)
    spec = torch.view_as_real(torch.fft.rfft(frames * window, dim=-1)).square()  # (N, frames, F, 2)
    return (spec[..., 0] + spec[..., 1]).transpose(-1, -2)  # frames in even-then-odd order


def sum_and_difference(x: Tensor) -> Tensor:
    """Stereo ``x`` (B, 2, T) -> (B, 2, T): L+R and L-R (one matrix product; one in the backward)."""
    x = x.float()
    return torch.matmul(x.new_tensor([[1.0, 1.0], [1.0, -1.0]]), x)


def mid_side_power(x: Tensor, n_fft: int, hop: int, window: Tensor, both: Tensor | None = None) -> Tensor:
    """Power spectrogram of the sum (L+R) and difference (L-R) of stereo ``x`` (B, 2, T) -> (B, 2, F, frames).

    One :func:`power_spectrogram` over both signals (``both``: :func:`sum_and_difference` of
    ``x``, when already made). The frames' order is not time order (every term sums over them).
    """
    both = sum_and_difference(x) if both is None else both
    power = power_spectrogram(both.reshape(-1, both.shape[-1]), n_fft, hop, window)
    return power.reshape(*both.shape[:2], *power.shape[-2:])


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

    def hop(self, n_fft: int) -> int:
        """Hop (samples) of the ``n_fft`` resolution."""
        return max(1, int(n_fft * self.hop_fraction))

    def window(self, n_fft: int) -> Tensor:
        return getattr(self, f"window_{n_fft}")

    def _power(self, x: Tensor, n_fft: int) -> Tensor:
        return power_spectrogram(x.reshape(-1, x.shape[-1]), n_fft, self.hop(n_fft), self.window(n_fft))

    def distance(self, est_power: Tensor, ref_power: Tensor) -> Tensor:
        """The loss of one resolution from power spectrograms (any matching shape; ``ref_power`` constant).

        On the CPU the elementwise work (magnitudes, logs, both sums) is one compiled pass and
        its adjoint another (:func:`automix.dsp.train_kernels.spectral_distance_forward`).
        """
        eps2 = self.eps * self.eps
        if est_power.device.type == "cpu" and est_power.dim() > 1:
            squared, log_abs, ref_sum = _SpectralDistance.apply(est_power, ref_power.detach(), eps2)
            convergence = squared.sum().clamp_min(1e-30).sqrt() / (ref_sum.sum().sqrt() + self.eps)
            log_mag = log_abs.sum() / est_power.numel()
        else:
            est_mag = (est_power + eps2).sqrt()
            ref_mag = ref_power.sqrt()
            convergence = torch.linalg.vector_norm(ref_mag - est_mag) / (torch.linalg.vector_norm(ref_mag) + self.eps)
            # log(|X| + eps) on power: 0.5 log(|X|^2 + eps^2) (the same floor, smooth at zero)
            log_mag = 0.5 * (torch.log(est_power + eps2) - torch.log(ref_power + eps2)).abs().mean()
        return self.convergence_weight * convergence + self.log_magnitude_weight * log_mag

    def forward(self, estimate: Tensor, target: Tensor) -> Tensor:
        """Loss between ``estimate`` and ``target`` of shape (..., T) (same shape)."""
        total = estimate.new_zeros(())
        for n_fft in self.fft_sizes:
            with torch.no_grad():
                ref = self._power(target, n_fft)
            total = total + self.distance(self._power(estimate, n_fft), ref)
        return total / len(self.fft_sizes)


class _SpectralDistance(torch.autograd.Function):
    """Power spectra (..., M) -> per-row sums (squared magnitude error, half |log ratio|, reference power)."""

    @staticmethod
    def forward(ctx, est, ref, eps2):
        import numpy as np

        from automix.dsp.train_kernels import spectral_distance_forward

        e = est.detach().float().reshape(-1, est.shape[-1]).contiguous()
        r = ref.float().reshape(-1, ref.shape[-1]).contiguous()
        n = e.shape[0]
        squared, log_abs, ref_sum = np.empty(n), np.empty(n), np.empty(n)
        spectral_distance_forward(e.numpy(), r.numpy(), eps2, squared, log_abs, ref_sum)
        ctx.save_for_backward(e, r)
        ctx.eps2, ctx.shape, ctx.dtype = eps2, est.shape, est.dtype
        return tuple(torch.from_numpy(a).float() for a in (squared, log_abs, ref_sum))

    @staticmethod
    def backward(ctx, g_squared, g_log_abs, _):
        import numpy as np

        from automix.dsp.train_kernels import spectral_distance_backward

        e, r = ctx.saved_tensors
        n = e.shape[0]

        def upstream(g):
            return np.zeros(n) if g is None else np.ascontiguousarray(g.numpy(), dtype=np.float64)

        grad = np.empty(e.shape, dtype=np.float32)
        spectral_distance_backward(e.numpy(), r.numpy(), ctx.eps2, upstream(g_squared), upstream(g_log_abs), grad)
        return torch.from_numpy(grad).reshape(ctx.shape).to(ctx.dtype), None, None


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
        stft = self.stft
        total = pred.mix.new_zeros(())
        for n_fft in stft.fft_sizes:
            hop, window = stft.hop(n_fft), stft.window(n_fft)
            est = memo(pred, ("mid_side_power", n_fft, hop), lambda: mid_side_power(pred.mix, n_fft, hop, window,
                                                                           both=sum_difference_of(pred, "mix")))
            ref = memo(pred, ("target_mid_side_power", n_fft, hop),
                       lambda: mid_side_power(pred.target_mix, n_fft, hop, window,
                                              both=sum_difference_of(pred, "target_mix")), target=True)
            total = total + self.sum_weight * stft.distance(est[:, 0], ref[:, 0])
            if self.difference_weight:
                total = total + self.difference_weight * stft.distance(est[:, 1], ref[:, 1])
        return total / len(stft.fft_sizes)


# ----------------------------------------------------------------------------- loudness
class LoudnessLoss(nn.Module):
    """Absolute loudness error in LU of the mix and (when known) of every stem.

    Parameters
    ----------
    mix_weight, stem_weight : float
        Weights of the mix term and of the mean per-stem term.
    silence_lufs : float
        Target stems quieter than this (LUFS) are ignored (nothing to balance).
    relative : bool
        Compare every stem's loudness relative to its own mix (the balance, as
        :func:`automix.evaluation.balance_error_lu` scores it) instead of its absolute level.
    """

    def __init__(self, mix_weight: float = 1.0, stem_weight: float = 1.0, silence_lufs: float = -70.0,
                 relative: bool = False):
        super().__init__()
        self.mix_weight = float(mix_weight)
        self.stem_weight = float(stem_weight)
        self.silence_lufs = float(silence_lufs)
        self.relative = bool(relative)

    def forward(self, pred: MixPrediction) -> Tensor:
        ref_mix = statistics(pred, "target_mix").loudness_lufs()
        est_mix = statistics(pred, "mix").loudness_lufs()
        loss = self.mix_weight * (est_mix - ref_mix).abs().mean()
        if self.stem_weight and pred.target_stems is not None:
            ref = target_stem_loudness(pred)
            est = statistics(pred, "stems").loudness_lufs()
            valid = audible_target_stems(pred, self.silence_lufs)
            if self.relative:
                ref, est = ref - ref_mix[:, None], est - est_mix[:, None]
            if bool(valid.any()):
                loss = loss + self.stem_weight * (est - ref).abs()[valid].mean()
        return loss


# ----------------------------------------------------------------------------- stereo
def channel_balance_db(x: Tensor, limit_db: float = 24.0, eps: float = 1e-8) -> Tensor:
    """Left/right balance of signals (..., 2, T) in dB: ``10 log10(E_left / E_right)``.

    Positive = louder on the left. Clamped (smoothly, by ``tanh``) to +/-``limit_db`` so a
    hard-panned or silent channel gives a finite value and gradient.
    """
    return balance_from_energy_db(x.float().square().mean(-1), limit_db, eps)


class StereoBalanceLoss(nn.Module):
    """Mean absolute error (dB) of every stem's left/right balance against the target stems.

    Nothing in a stem tells which side a mix engineer put it on, only that two parts of one
    role go to opposite sides; a mix mirrored left for right is as good a mix. The loss is
    therefore the smaller of the error of the rendered balance and of its mirror image, per
    example (all stems of an example flip together). Stems in ``pred.width_from_effects``
    (mono in, wide in the target: :func:`width_from_effects`) count only when they fall short
    of their target's side (a pan further out is the console's stand-in for their width);
    centred ones (within :data:`CENTRED_BALANCE_DB`: drums, a centred reverb pad) keep the
    two-sided error, because a pan would give them a direction they never had. The mix's
    own balance always counts.

    Parameters
    ----------
    limit_db : float
        Balances are soft-clamped to +/-``limit_db`` (see :func:`channel_balance_db`).
    silence_lufs : float
        Target stems quieter than this (LUFS) are ignored.
    mirror_invariant : bool
        Take the better of the balance and its mirror per example (default True).
    mix_weight : float
        Weight of the whole mix's left/right balance error (dB), added before the mirror
        choice: without it, moving every stem to one side would pass for a wider image.
    """

    def __init__(self, limit_db: float = 24.0, silence_lufs: float = -70.0, mirror_invariant: bool = True,
                 mix_weight: float = 1.0):
        super().__init__()
        self.limit_db = float(limit_db)
        self.silence_lufs = float(silence_lufs)
        self.mirror_invariant = bool(mirror_invariant)
        self.mix_weight = float(mix_weight)

    def forward(self, pred: MixPrediction) -> Tensor:
        if pred.target_stems is None or pred.stems.shape[2] != 2:
            return pred.mix.new_zeros(())
        limit = self.limit_db
        ref = statistics(pred, "target_stems").balance_db(limit)
        est = statistics(pred, "stems").balance_db(limit)
        valid = audible_target_stems(pred, self.silence_lufs).float()
        count = valid.sum(-1).clamp_min(1)
        est_mix = statistics(pred, "mix").balance_db(limit)
        ref_mix = statistics(pred, "target_mix").balance_db(limit)
        # width from effects, off-centre: only falling short of the target's side counts (centred
        # stems keep their centre: a pan is a direction, and the real stem had none)
        one_sided = None if pred.width_from_effects is None else \
            pred.width_from_effects & (ref.abs() >= CENTRED_BALANCE_DB)
        side = torch.sign(ref)

        def stem_error(estimate: Tensor) -> Tensor:
            error = (estimate - ref).abs()
            if one_sided is not None:
                error = torch.where(one_sided, torch.relu(ref.abs() - estimate * side), error)
            return error

        error = (stem_error(est) * valid).sum(-1) / count + self.mix_weight * (est_mix - ref_mix).abs()
        if self.mirror_invariant:
            mirrored = (stem_error(-est) * valid).sum(-1) / count + self.mix_weight * (est_mix + ref_mix).abs()
            error = torch.minimum(error, mirrored)
        return error.mean()


def octave_band_edges_hz(sample_rate: int, lowest_hz: float = 62.5) -> list[float]:
    """Octave band edges from ``lowest_hz`` up to the Nyquist frequency (Hz)."""
    edges = [lowest_hz / math.sqrt(2.0)]
    while edges[-1] * 2.0 < sample_rate / 2.0:
        edges.append(edges[-1] * 2.0)
    edges.append(sample_rate / 2.0)
    return edges


def side_mid_ratio_db(x: Tensor, sample_rate: int, n_fft: int = 2048, floor_db: float = -40.0,
                      eps: float = 1e-10) -> Tensor:
    """Side/mid energy ratio per octave band (dB) of stereo signals (..., 2, T) -> (..., bands).

    Mid = (L + R) / 2, side = (L - R) / 2; energies summed over an STFT (Hann, hop 1/4)
    within each octave band (:func:`octave_band_edges_hz`); the ratio is soft-floored at
    ``floor_db`` (a mono band reads about ``floor_db``, not minus infinity).
    """
    x = x.float()
    mid, side = 0.5 * (x[..., 0, :] + x[..., 1, :]), 0.5 * (x[..., 0, :] - x[..., 1, :])
    window = torch.hann_window(n_fft, device=x.device)
    lead = mid.shape[:-1]

    def band_energy(signal: Tensor) -> Tensor:
        spec = torch.stft(signal.reshape(-1, signal.shape[-1]), n_fft, n_fft // 4, window=window,
                          return_complex=True)
        power = (spec.real.square() + spec.imag.square()).sum(-1)  # (N, F)
        return power @ _band_matrix(n_fft, sample_rate, x.device)

    m, s = band_energy(mid), band_energy(side)
    return _soft_floored_ratio_db(s, m, floor_db, eps).reshape(*lead, -1)


def _soft_floored_ratio_db(side: Tensor, mid: Tensor, floor_db: float, eps: float = 1e-10) -> Tensor:
    floor = 10.0 ** (floor_db / 10.0)
    return 10.0 * torch.log10((side + floor * mid + eps) / (mid + eps))


def side_mid_ratio_from_power(power: Tensor, sample_rate: int, n_fft: int, floor_db: float = -40.0,
                              eps: float = 1e-10) -> Tensor:
    """Side/mid ratio per octave band (dB) from :func:`mid_side_power` spectra (B, 2, F, frames) -> (B, bands).

    The same quantity as :func:`side_mid_ratio_db` (the sum and difference are twice the mid
    and side, which the ratio does not see), read from spectra another term already made.
    """
    bands = power.sum(-1) @ _band_matrix(n_fft, sample_rate, power.device)  # (B, 2, bands)
    # the ratio's eps is for (L+R)/2 scaled signals: power of L+R is 4x theirs
    return _soft_floored_ratio_db(bands[:, 1], bands[:, 0], floor_db, 4.0 * eps)


def _band_matrix(n_fft: int, sample_rate: int, device: torch.device) -> Tensor:
    """(F, bands) 0/1 matrix assigning every rfft bin to its octave band."""
    return _band_matrix_cpu(n_fft, sample_rate).to(device)


@lru_cache(maxsize=16)
def _band_matrix_cpu(n_fft: int, sample_rate: int) -> Tensor:
    edges = octave_band_edges_hz(sample_rate)
    freqs = torch.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    cols = [((freqs >= lo) & (freqs < hi)).float() for lo, hi in zip(edges[:-1], edges[1:])]
    cols[-1] = cols[-1] + (freqs >= edges[-1]).float()
    return torch.stack(cols, -1)


class StereoImageLoss(nn.Module):
    """Mean absolute difference (dB) of the mix's side/mid ratio per octave band.

    Parameters
    ----------
    n_fft : int
        STFT size (samples).
    floor_db : float
        Soft floor of the ratio (see :func:`side_mid_ratio_db`).
    """

    def __init__(self, n_fft: int = 2048, floor_db: float = -40.0, hop_fraction: float = 0.25):
        super().__init__()
        self.n_fft = int(n_fft)
        self.floor_db = float(floor_db)
        self.hop = max(1, int(self.n_fft * float(hop_fraction)))
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)

    def forward(self, pred: MixPrediction) -> Tensor:
        if pred.mix.shape[-2] != 2:
            return pred.mix.new_zeros(())
        n_fft, hop, sr = self.n_fft, self.hop, pred.sample_rate
        # the same spectra as the STFT term's at this size and hop (computed once per step)
        est = memo(pred, ("mid_side_power", n_fft, hop), lambda: mid_side_power(pred.mix, n_fft, hop, self.window,
                                                                       both=sum_difference_of(pred, "mix")))
        ref = memo(pred, ("target_mid_side_power", n_fft, hop),
                   lambda: mid_side_power(pred.target_mix, n_fft, hop, self.window,
                                          both=sum_difference_of(pred, "target_mix")), target=True)
        est_ratio = side_mid_ratio_from_power(est, sr, n_fft, self.floor_db)
        ref_ratio = side_mid_ratio_from_power(ref, sr, n_fft, self.floor_db)
        return (est_ratio - ref_ratio).abs().mean()


# ----------------------------------------------------------------------------- dynamics
def short_term_levels_db(x: Tensor, sample_rate: int, window_ms: float = 400.0, hop_ms: float = 100.0,
                         eps: float = 1e-10) -> Tensor:
    """Mean-square level (dB) of (..., C, T) in sliding windows, channels summed -> (..., frames)."""
    win = max(1, int(round(window_ms * 1e-3 * sample_rate)))
    hop = max(1, int(round(hop_ms * 1e-3 * sample_rate)))
    power = x.float().square().sum(-2)
    if power.shape[-1] < win:
        return 10.0 * torch.log10(power.mean(-1, keepdim=True) + eps)
    frames = power.unfold(-1, win, hop).mean(-1)
    return 10.0 * torch.log10(frames + eps)


def loudness_spread_db(x: Tensor, sample_rate: int, gate_db: float = -30.0) -> Tensor:
    """Standard deviation (dB ~ LU) of the short-term levels of (..., C, T) -> (...).

    Frames more than ``gate_db`` below the loudest frame are left out (silence and fades
    say nothing about dynamics).
    """
    levels = short_term_levels_db(x, sample_rate)
    keep = (levels > levels.amax(-1, keepdim=True) + gate_db).float()
    n = keep.sum(-1).clamp_min(1)
    mean = (levels * keep).sum(-1) / n
    var = ((levels - mean[..., None]).square() * keep).sum(-1) / n
    return (var + 1e-6).sqrt()


def crest_factor_db(x: Tensor, sample_rate: int | None = None, block_ms: float = 400.0, gate_db: float = -30.0,
                    eps: float = 1e-8) -> Tensor:
    """Crest factor (peak-to-RMS ratio, dB) of (..., C, T), over all channels -> (...).

    With ``sample_rate``, the mean crest factor of the signal's ``block_ms`` blocks that are
    within ``gate_db`` of its loudest block (how peaky each note and hit is, as
    :func:`automix.mix_metrics.crest_distance_db` measures it); without, of the whole signal.
    """
    if sample_rate is None:
        x = x.float()
        peak, mean_square = x.abs().amax((-2, -1)), x.square().mean((-2, -1))
        # no sqrt: its gradient is infinite for a silent stem
        return 20.0 * torch.log10(peak + eps) - 10.0 * torch.log10(mean_square + eps * eps)
    return signal_statistics(x, sample_rate, block_ms).crest_db(gate_db, eps)


class DynamicsLoss(nn.Module):
    """Dynamics against the target: the mix's short-term loudness spread and every stem's crest factor.

    Parameters
    ----------
    spread_weight, crest_weight : float
        Weights of the mix spread error (LU) and of the mean per-stem crest-factor error (dB).
    silence_lufs : float
        Target stems quieter than this (LUFS) are ignored.
    """

    def __init__(self, spread_weight: float = 1.0, crest_weight: float = 1.0, silence_lufs: float = -70.0):
        super().__init__()
        self.spread_weight = float(spread_weight)
        self.crest_weight = float(crest_weight)
        self.silence_lufs = float(silence_lufs)

    def forward(self, pred: MixPrediction) -> Tensor:
        sr = pred.sample_rate
        ref_spread = memo(pred, ("target_spread",), lambda: loudness_spread_db(pred.target_mix, sr), target=True)
        loss = self.spread_weight * (loudness_spread_db(pred.mix, sr) - ref_spread).abs().mean()
        if self.crest_weight and pred.target_stems is not None:
            valid = audible_target_stems(pred, self.silence_lufs).float()
            ref_crest = statistics(pred, "target_stems").crest_db()
            error = (statistics(pred, "stems").crest_db() - ref_crest).abs()
            loss = loss + self.crest_weight * (error * valid).sum() / valid.sum().clamp_min(1)
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
