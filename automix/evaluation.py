"""How close a mix is to a target mix: spectral distance, per-stem balance, and baselines.

Metrics (torch, batched, used by training validation, ``automix evaluate`` and the
mix-quality benchmark):

* :func:`log_spectral_distance_db` -- multi-resolution log-spectral distance (dB) between
  two mixes after matching their loudness (so it measures tone and balance, not level).
* :func:`balance_error_lu` -- mean absolute error (LU) of every stem's loudness relative
  to its mix: how far each instrument sits from where it sits in the target.
* :func:`kweighted_loudness_db` -- ungated BS.1770 loudness, differentiable.

Baselines a model must beat: :func:`sum_baseline` (the input stems summed as they are)
and :func:`equal_loudness_baseline` (every stem brought to the same loudness).

:func:`evaluate_songs` runs the held-out protocol: each song's stems are knocked off
balance by the seeded :data:`automix.perturb.BENCHMARK` perturbation (+/-9 dB gain, tilt
EQ); the model and the baselines mix the perturbed stems; each result is compared with
the song's original mix.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

# ----------------------------------------------------------------------------- loudness
@lru_cache(maxsize=32)
def k_weighting_power_response(n_fft: int, sample_rate: int) -> np.ndarray:
    """|H(f)|^2 of the BS.1770 K-weighting (:func:`automix.loudness.k_weighting_sos`) at the
    ``n_fft // 2 + 1`` rfft bins (float64; :func:`automix.dsp.biquad.sos_response`, which the
    tests check against ``scipy.signal.sosfreqz``)."""
    from automix.dsp.biquad import sos_response
    from automix.loudness import k_weighting_sos

    h = sos_response(torch.from_numpy(k_weighting_sos(sample_rate)), np.fft.rfftfreq(n_fft, 1.0 / sample_rate),
                     sample_rate)
    return (h.real.square() + h.imag.square()).numpy()


def kweighted_loudness_db(x: Tensor, sample_rate: int, eps: float = 1e-10) -> Tensor:
    """Ungated BS.1770 loudness (LUFS) of signals ``x`` (..., C, T), differentiably.

    The K-weighted mean square of every channel comes from one rfft of the whole signal
    (Parseval); channels are summed with unit weights (L, R) and ``-0.691 + 10 log10(.)``
    is returned, shape (...). Equals BS.1770 integrated loudness for steady signals
    (there is no gating).
    """
    n = x.shape[-1]
    spectrum = torch.fft.rfft(x.float(), n=n)
    weight = torch.as_tensor(k_weighting_power_response(n, sample_rate), dtype=torch.float32,
                             device=x.device)
    bins = (spectrum.real.square() + spectrum.imag.square()) * weight
    # Parseval for a real signal: every bin except DC (and Nyquist for even n) counts twice.
    total = 2.0 * bins.sum(-1) - bins[..., 0] - (bins[..., -1] if n % 2 == 0 else 0.0)
    mean_square = total / float(n) ** 2
    return -0.691 + 10.0 * torch.log10(mean_square.sum(-1) + eps)


def match_loudness(estimate: Tensor, target: Tensor, sample_rate: int) -> Tensor:
    """``estimate`` (..., C, T) scaled to the loudness of ``target`` (..., C, T)."""
    gain_db = kweighted_loudness_db(target, sample_rate) - kweighted_loudness_db(estimate, sample_rate)
    return estimate * (10.0 ** (gain_db / 20.0))[..., None, None]


# ----------------------------------------------------------------------------- metrics
def log_spectral_distance_db(estimate: Tensor, target: Tensor, sample_rate: int,
                             fft_sizes: Sequence[int] = (4096, 1024, 256), floor_db: float = -80.0,
                             match_level: bool = True) -> Tensor:
    """Multi-resolution log-spectral distance (dB) between mixes (..., C, T); shape (...).

    For each STFT size (Hann window, hop 1/4), the power spectra are floored at
    ``floor_db`` below the target's strongest bin, and the distance of a frame is the RMS
    over frequency of ``10 log10 P_est - 10 log10 P_target``; frames, channels and
    resolutions are averaged. With ``match_level`` the estimate is first brought to the
    target's loudness.
    """
    if match_level:
        estimate = match_loudness(estimate, target, sample_rate)
    batch = estimate.shape[:-2]
    est = estimate.reshape(-1, estimate.shape[-1]).float()
    ref = target.reshape(-1, target.shape[-1]).float()
    n_items = est.shape[0] // max(1, estimate.shape[-2])
    out = torch.zeros(n_items, device=estimate.device)
    for n_fft in fft_sizes:
        window = torch.hann_window(n_fft, device=est.device)
        spec = lambda x: torch.stft(x, n_fft, n_fft // 4, window=window, return_complex=True).abs().square()  # noqa: E731
        p_est, p_ref = spec(est), spec(ref)  # (items*C, F, frames)
        p_ref_items = p_ref.reshape(n_items, -1)
        floor = p_ref_items.amax(-1).clamp_min(1e-20) * 10.0 ** (floor_db / 10.0)
        floor = floor.repeat_interleave(estimate.shape[-2])[:, None, None]
        diff = 10.0 * (torch.log10(torch.maximum(p_est, floor)) - torch.log10(torch.maximum(p_ref, floor)))
        per_frame = diff.square().mean(dim=1).sqrt()  # (items*C, frames)
        out = out + per_frame.reshape(n_items, -1).mean(-1)
    return (out / len(fft_sizes)).reshape(batch)


def stem_balance_lu(stems: Tensor, mix: Tensor, sample_rate: int) -> Tensor:
    """Loudness of every stem relative to its mix, LU: stems (..., S, C, T), mix (..., C, T) -> (..., S)."""
    return kweighted_loudness_db(stems, sample_rate) - kweighted_loudness_db(mix, sample_rate)[..., None]


def balance_error_lu(est_stems: Tensor, est_mix: Tensor, ref_stems: Tensor, ref_mix: Tensor,
                     sample_rate: int, mask: Tensor | None = None, silence_lufs: float = -70.0) -> Tensor:
    """Mean absolute per-stem balance error, LU, shape (...).

    Parameters
    ----------
    est_stems, ref_stems : Tensor (..., S, C, T)
        Processed stems of the mix under test and the stems as they sit in the target.
    est_mix, ref_mix : Tensor (..., C, T)
    mask : Tensor (..., S) bool, optional
        Real stems; stems whose target loudness is below ``silence_lufs`` are ignored too.
    """
    ref_loudness = kweighted_loudness_db(ref_stems, sample_rate)
    error = (stem_balance_lu(est_stems, est_mix, sample_rate) - stem_balance_lu(ref_stems, ref_mix, sample_rate)).abs()
    valid = ref_loudness > silence_lufs
    if mask is not None:
        valid = valid & mask
    valid = valid.to(error.dtype)
    return (error * valid).sum(-1) / valid.sum(-1).clamp_min(1)


# ----------------------------------------------------------------------------- baselines
def sum_baseline(stems: Tensor) -> Tensor:
    """The stems unchanged (their plain sum is the mix): (..., S, C, T)."""
    return stems


def equal_loudness_baseline(stems: Tensor, sample_rate: int, mask: Tensor | None = None,
                            target_lufs: float = -23.0, silence_lufs: float = -70.0) -> Tensor:
    """Every (non-silent) stem scaled to ``target_lufs`` (ungated BS.1770): (..., S, C, T)."""
    loudness = kweighted_loudness_db(stems, sample_rate)
    gain_db = torch.where(loudness > silence_lufs, target_lufs - loudness, torch.zeros_like(loudness))
    out = stems * (10.0 ** (gain_db / 20.0))[..., None, None]
    if mask is not None:
        out = out * mask[..., None, None]
    return out


# ----------------------------------------------------------------------------- held-out protocol
@dataclass
class Score:
    """One system's result on one song.

    Attributes
    ----------
    song, system : str
    spectral_distance_db : float
        :func:`log_spectral_distance_db` to the target mix.
    balance_error_lu : float
        :func:`balance_error_lu` against the original stems.
    """

    song: str
    system: str
    spectral_distance_db: float
    balance_error_lu: float


SYSTEMS: tuple[str, ...] = ("model", "sum", "equal_loudness")

#: ``mixer(stems [1,S,C,T], roles [1,S], mask [1,S], sample_rate) -> processed stems [1,S,2,T]``
Mixer = Callable[[Tensor, Tensor, Tensor, int], Tensor]


def song_seed(name: str, seed: int) -> int:
    """Per-song seed of the perturbation (independent of the song order)."""
    return int(hashlib.sha1(f"{seed}:{name}".encode()).hexdigest()[:12], 16)


def score_systems(song: str, stems: Tensor, target_mix: Tensor, roles: Tensor, sample_rate: int,
                  mixer: Mixer | None, perturbation, seed: int = 0) -> list[Score]:
    """Perturb ``stems`` (S, 2, T), mix them with the model and the baselines, score each.

    ``target_mix`` (2, T) is the mix to reproduce; the original ``stems`` are the balance
    reference. ``mixer`` None scores the baselines only.
    """
    generator = torch.Generator().manual_seed(song_seed(song, seed))
    x = stems[None]
    mask = torch.ones(1, stems.shape[0], dtype=torch.bool)
    perturbed, _ = perturbation.apply(x, sample_rate, generator, stem_mask=mask)
    systems: dict[str, Tensor] = {}
    if mixer is not None:
        systems["model"] = mixer(perturbed, roles[None], mask, sample_rate)
    systems["sum"] = sum_baseline(perturbed)
    systems["equal_loudness"] = equal_loudness_baseline(perturbed, sample_rate, mask)
    scores = []
    for name, processed in systems.items():
        mix = processed.sum(1)
        lsd = log_spectral_distance_db(mix, target_mix[None], sample_rate)
        bal = balance_error_lu(processed, mix, x, target_mix[None], sample_rate, mask)
        scores.append(Score(song, name, float(lsd), float(bal)))
    return scores


def summarize(scores: Sequence[Score]) -> dict[str, dict[str, float]]:
    """Mean spectral distance and balance error per system."""
    out: dict[str, dict[str, float]] = {}
    for system in dict.fromkeys(s.system for s in scores):
        mine = [s for s in scores if s.system == system]
        out[system] = {"spectral_distance_db": float(np.mean([s.spectral_distance_db for s in mine])),
                       "balance_error_lu": float(np.mean([s.balance_error_lu for s in mine])),
                       "songs": len(mine)}
    return out


def load_song_excerpt(song, sample_rate: int, seconds: float | None = 30.0) -> tuple[Tensor, Tensor, Tensor]:
    """Stems (S, 2, T), target mix (2, T) and roles (S,) of a :class:`automix.data.Song`.

    The excerpt is the middle ``seconds`` of the song (None or 0: all of it); the target
    is the song's mix file when it has one, else the sum of its stems.
    """
    from automix.audio import load_audio

    stems = [load_audio(p, sample_rate=sample_rate, downmix=True).samples for p in song.stems]  # (2, T) each
    mix = load_audio(song.mix, sample_rate=sample_rate, downmix=True).samples if song.mix else None
    length = max([s.shape[-1] for s in stems] + ([mix.shape[-1]] if mix is not None else []))
    array = np.zeros((len(stems), 2, length), np.float32)
    for i, s in enumerate(stems):
        array[i, :, : s.shape[-1]] = s
    target = array.sum(0)
    if mix is not None:
        target = np.zeros((2, length), np.float32)
        target[:, : mix.shape[-1]] = mix
    n = length if not seconds else min(length, int(round(seconds * sample_rate)))
    start = (length - n) // 2
    cut = slice(start, start + n)
    return (torch.from_numpy(np.ascontiguousarray(array[..., cut])),
            torch.from_numpy(np.ascontiguousarray(target[..., cut])),
            torch.tensor(song.roles, dtype=torch.long))


#: Shortest excerpt (samples at the analysis rate) the spectral distance can score: its longest STFT.
MIN_SCORED_SAMPLES = 4096
#: A song whose target mix peaks below this (dBFS) has nothing to score.
SILENT_MIX_DBFS = -90.0


def check_scorable(song, target: Tensor, sample_rate: int) -> None:
    """Raise :class:`AudioError` naming the song's folder when its excerpt ``target`` (2, T) is too
    short for the spectral distance or silent (its scores would be meaningless)."""
    from automix.errors import AudioError

    where = song.stems[0].parent if song.stems else song.name
    n = int(target.shape[-1])
    if n < MIN_SCORED_SAMPLES:
        raise AudioError(f"{where}: only {n / sample_rate:.2f} s long; scoring needs at least "
                         f"{MIN_SCORED_SAMPLES / sample_rate:.2f} s")
    if float(target.abs().max()) <= 10.0 ** (SILENT_MIX_DBFS / 20.0):
        raise AudioError(f"{where}: the song is silent (no signal above {SILENT_MIX_DBFS:g} dBFS): nothing to score")


def model_mixer(model: torch.nn.Module, mode: str = "exact") -> Mixer:
    """A :data:`Mixer` that renders ``model``'s settings with the console (``mode``)."""
    from automix.dsp.console import render_mix

    @torch.no_grad()
    def mixer(stems: Tensor, roles: Tensor, mask: Tensor, sample_rate: int) -> Tensor:
        strip = model(stems, sample_rate, roles, mask)
        return render_mix(stems, strip, sample_rate, mode=mode, stem_mask=mask).stems

    return mixer


def evaluate_songs(songs: Sequence, mixer: Mixer | None, sample_rate: int, *, seconds: float | None = 30.0,
                   perturbation=None, seed: int = 0, progress: bool = False) -> list[Score]:
    """Held-out protocol over ``songs``: scores of the model (if ``mixer``) and both baselines.

    ``perturbation`` defaults to :data:`automix.perturb.BENCHMARK` (+/-9 dB gain, tilt EQ).
    """
    from automix.perturb import BENCHMARK

    perturbation = BENCHMARK if perturbation is None else perturbation
    items = songs
    if progress:
        from tqdm import tqdm

        items = tqdm(songs, desc="evaluating", unit="song")
    scores: list[Score] = []
    for song in items:
        stems, target, roles = load_song_excerpt(song, sample_rate, seconds)
        check_scorable(song, target, sample_rate)
        scores += score_systems(song.name, stems, target, roles, sample_rate, mixer, perturbation, seed)
    return scores
