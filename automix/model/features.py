"""Audio features the mix model reads, computed in torch (batched, differentiable-free).

Every function works on ``(..., channels, samples)`` tensors at any sample rate: windows
are sized in milliseconds and bands in Hz, so a model trained at 22.05 kHz reads the
same features from 44.1 kHz stems.

Feature vector (:data:`FEATURE_NAMES`, one per stem or per mix):

- ``loudness_lufs``: BS.1770-style integrated loudness (the K-weighting filters' power
  response, :func:`automix.evaluation.k_weighting_power_response`, applied to the
  short-time power spectrum, 400 ms blocks, absolute -70 LUFS and relative -10 LU gates);
- ``loudness_range_lu``: spread (std) of the gated 400-ms block loudness;
- ``active_fraction``: share of blocks above the absolute gate;
- ``crest_db``: sample peak over RMS of the active part;
- ``centroid_oct``: spectral centroid, octaves above 1 kHz (30 Hz to 10 kHz);
- ``flatness_db``: spectral flatness (geometric over arithmetic mean power, 30 Hz to 10 kHz);
- ``width``: side energy over total (0 = mono, 0.5 = uncorrelated, 1 = anti-phase);
- ``correlation``: left/right correlation coefficient;
- ``balance``: (left - right) / (left + right) energy, -1 (left) to +1 (right);
- ``mel_shape_*``: mean log-mel level per band relative to the stem's mean band level (dB);
- ``mel_std_*``: standard deviation over time of each band's level (dB).

Scales are normalised (dB / 20 and so on) so that every entry is of order one; the raw
values in musician units come from :func:`describe`.
"""
from __future__ import annotations

import math
import threading
from contextlib import contextmanager
from functools import lru_cache
from typing import Iterator

import torch

# the feature layout and its constants are declared once, torch-free, beside the numpy features
from automix.model.array_features import (ABSOLUTE_GATE_LUFS, BLOCK_HOP_MS, BLOCK_MS, FEATURE_NAMES,  # noqa: F401
                                          MEL_FMAX_HZ, MEL_FMIN_HZ, N_FEATURES, N_MELS, SCALAR_SCALE, SCALARS,
                                          SILENCE_LUFS, SPECTRAL_BAND_HZ, WINDOW_MS, fft_size)

# Division applied to each scalar so that network inputs are of order one.
_SCALAR_SCALE = torch.tensor(list(SCALAR_SCALE))
_MEL_SCALE = 20.0
_EPS = 1e-10


def mel_filterbank(n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int) -> torch.Tensor:
    """Triangular HTK-mel filters ``[n_freqs, n_mels]`` (float32, unnormalised) over the bins
    ``0 .. sample_rate // 2`` Hz.

    The same operations as ``torchaudio.functional.melscale_fbanks(..., norm=None,
    mel_scale="htk")`` (a test checks they are equal), written here so that a mix does not
    import torchaudio (a sixth of a second of every command's start-up).
    """
    all_freqs = torch.linspace(0, sample_rate // 2, n_freqs)
    m_min = 2595.0 * math.log10(1.0 + f_min / 700.0)
    m_max = 2595.0 * math.log10(1.0 + f_max / 700.0)
    f_pts = 700.0 * (10.0 ** (torch.linspace(m_min, m_max, n_mels + 2) / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)
    down = (-1.0 * slopes[:, :-2]) / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return torch.max(torch.zeros(1), torch.min(down, up))


@lru_cache(maxsize=16)
def _analysis_setup(sample_rate: int, device: str) -> tuple[int, int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    n_fft = fft_size(sample_rate)
    hop = n_fft // 2
    window = torch.hann_window(n_fft, dtype=torch.float32, device=device)
    freqs = torch.fft.rfftfreq(n_fft, 1.0 / sample_rate).to(device)
    # One-sided power -> mean square of the frame (Parseval with the window's energy).
    side = torch.full_like(freqs, 2.0)
    side[0] = 1.0
    if n_fft % 2 == 0:
        side[-1] = 1.0
    norm = side / (n_fft * window.pow(2).sum())
    from automix.evaluation import k_weighting_power_response  # BS.1770 filters, |H|^2 at the bins

    k_weight = torch.from_numpy(k_weighting_power_response(n_fft, sample_rate)).float().to(device) * norm
    fmax = min(MEL_FMAX_HZ, sample_rate / 2.0)
    mel = mel_filterbank(n_fft // 2 + 1, MEL_FMIN_HZ, fmax, N_MELS, sample_rate)
    mel = mel.to(device)
    band = ((freqs >= SPECTRAL_BAND_HZ[0]) & (freqs <= SPECTRAL_BAND_HZ[1])).nonzero().squeeze(-1)
    return n_fft, hop, window, freqs, k_weight, mel, band


def _spectrogram(x: torch.Tensor, sample_rate: int) -> tuple[torch.Tensor, int]:
    """Complex STFT of ``x[..., C, T]`` -> ``[..., C, frames, bins]`` and the hop."""
    n_fft, hop, window, *_ = _analysis_setup(sample_rate, str(x.device))
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1]).float()
    if flat.shape[-1] < n_fft:
        flat = torch.nn.functional.pad(flat, (0, n_fft - flat.shape[-1]))
    spec = torch.stft(flat, n_fft, hop, window=window, center=False, return_complex=True)
    return spec.transpose(-1, -2).reshape(*lead, -1, n_fft // 2 + 1), hop


def _block_loudness(frame_power: torch.Tensor, sample_rate: int, hop: int) -> torch.Tensor:
    """Mean-square power per 400 ms block from per-frame power ``[..., frames]``."""
    frames_per_block = max(1, round(BLOCK_MS * 1e-3 * sample_rate / hop))
    frames_per_hop = max(1, round(BLOCK_HOP_MS * 1e-3 * sample_rate / hop))
    lead = frame_power.shape[:-1]
    flat = frame_power.reshape(-1, 1, frame_power.shape[-1])
    if flat.shape[-1] < frames_per_block:
        frames_per_block = flat.shape[-1]
    blocks = torch.nn.functional.avg_pool1d(flat, frames_per_block, frames_per_hop)
    return blocks.reshape(*lead, -1)


def _gated_mean(values: torch.Tensor, weights: torch.Tensor, dim: int = -1) -> torch.Tensor:
    total = weights.sum(dim)
    return (values * weights).sum(dim) / total.clamp_min(_EPS)


def loudness_lufs(x: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Integrated loudness (BS.1770-style gating) of ``x[..., C, T]`` in LUFS -> ``[...]``.

    Digital silence reads :data:`SILENCE_LUFS`.
    """
    return _loudness_and_blocks(x, sample_rate)[0]


def _loudness_and_blocks(x: torch.Tensor, sample_rate: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    spec, hop = _spectrogram(x, sample_rate)
    squares = torch.view_as_real(spec).square()
    power = squares[..., 0] + squares[..., 1]  # not .sum(-1): torch reduces a length-2 axis 4x slower
    *_, k_weight, _, _ = _analysis_setup(sample_rate, str(x.device))
    # K-weighted mean square per frame, summed over channels (BS.1770 channel weights 1).
    frame_ms = (power @ k_weight).sum(-2)  # [..., frames]
    blocks = _block_loudness(frame_ms, sample_rate, hop)
    block_lufs = -0.691 + 10.0 * torch.log10(blocks + _EPS)
    above_abs = (block_lufs > ABSOLUTE_GATE_LUFS).float()
    ungated = _gated_mean(blocks, above_abs)
    rel_gate = -0.691 + 10.0 * torch.log10(ungated + _EPS) - 10.0
    gate = above_abs * (block_lufs > rel_gate.unsqueeze(-1)).float()
    gated = _gated_mean(blocks, gate)
    lufs = -0.691 + 10.0 * torch.log10(gated + _EPS)
    silent = gate.sum(-1) == 0
    lufs = torch.where(silent, torch.full_like(lufs, SILENCE_LUFS), lufs.clamp_min(SILENCE_LUFS))
    return lufs, block_lufs, gate, spec, power


def _cross_energy(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """``Re sum(left * conj(right))`` over the last two axes, ``[...]``.

    For one signal (how :func:`audio_features` analyses long ones) a dot product, without a
    product spectrogram in memory (0.6 ms instead of 34 ms for 30 s of stereo at 48 kHz);
    batches as before (their sums rounded the same way as ever).
    """
    if left.dim() == 2:
        return torch.vdot(right.reshape(-1), left.reshape(-1)).real
    return (left * right.conj()).real.sum(dim=(-1, -2))


_ITEMS = threading.local()


@contextmanager
def items_on_threads(workers: int) -> Iterator[None]:
    """Inside, :func:`audio_features` analyses the items of a batch (the stems of a song) on
    ``workers`` Python threads, with torch single-threaded.

    Each item's analysis is a few dozen small tensor operations; torch splits each over its
    threads and waits for all of them at the end of every operation, and on a busy machine
    (threads descheduled) that waiting cost 3x the CPU time and 4x the wall time of the
    analysis. One item per thread has no such wait. Used by :func:`automix.mixing.predict_strip`;
    training keeps torch's own threading (the results differ only in rounding).
    """
    previous_workers = getattr(_ITEMS, "workers", 1)
    previous_threads = torch.get_num_threads()
    _ITEMS.workers = max(1, int(workers))
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous_threads)
        _ITEMS.workers = previous_workers


#: Signals longer than this many samples (all channels) are analysed one at a time: the
#: spectrogram temporaries of one 30-s stereo stem (tens of MB) are reused from the heap
#: instead of fresh pages for a batch (hundreds of MB).
_ONE_AT_A_TIME_SAMPLES = 1 << 20


def audio_features(x: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Feature vector (:data:`FEATURE_NAMES`, normalised) of ``x[..., C, T]``.

    Parameters
    ----------
    x : Tensor
        Audio ``(..., channels, samples)``, channels 1 (mono) or 2 (stereo).
    sample_rate : int
        Sample rate in Hz.

    Returns
    -------
    Tensor
        ``[..., N_FEATURES]`` float32, finite for any input including silence.
    """
    x = x.float()
    if x.dim() > 2 and x.shape[:-2].numel() > 1 and x.shape[-1] * x.shape[-2] > _ONE_AT_A_TIME_SAMPLES:
        items = x.reshape(-1, *x.shape[-2:])
        workers = min(getattr(_ITEMS, "workers", 1), len(items))
        if workers > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="features") as pool:
                feats = list(pool.map(lambda item: _features(item, sample_rate), items))
        else:
            feats = [_features(item, sample_rate) for item in items]
        return torch.stack(feats).reshape(*x.shape[:-2], N_FEATURES)
    return _features(x, sample_rate)


def _features(x: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """:func:`audio_features` of float32 ``x[..., C, T]`` in one batch."""
    lufs, block_lufs, gate, spec, power = _loudness_and_blocks(x, sample_rate)
    active = gate.sum(-1)
    n_blocks = gate.shape[-1]
    # Loudness range: spread of gated block loudness.
    mean_block = _gated_mean(block_lufs, gate)
    lra = _gated_mean((block_lufs - mean_block.unsqueeze(-1)).square(), gate).sqrt()
    active_fraction = active / n_blocks

    # Frames that count: mean power above the absolute gate, so silence does not bias stats.
    *_, freqs, _, mel_fb, band = _analysis_setup(sample_rate, str(x.device))
    mono_power = power.mean(-3)  # [..., frames, bins]
    frame_level = 10 * torch.log10(mono_power.sum(-1) + _EPS)
    peak_frame = frame_level.amax(-1, keepdim=True)
    frame_w = (frame_level > torch.maximum(peak_frame - 60.0, torch.full_like(peak_frame, -100.0))).float()
    frame_w = frame_w * (frame_level > -110.0).float()
    has_frames = frame_w.sum(-1) > 0

    band_power = mono_power.index_select(-1, band)  # [..., frames, band bins]
    avg_spec = _gated_mean(band_power.transpose(-1, -2), frame_w.unsqueeze(-2))  # [..., band bins]
    total = avg_spec.sum(-1)
    centroid_hz = (avg_spec @ freqs[band]) / total.clamp_min(_EPS)
    centroid_oct = torch.log2(centroid_hz.clamp_min(20.0) / 1000.0)
    log_p = torch.log(band_power + _EPS)
    frame_flat = torch.exp(log_p.mean(-1)) / (band_power.mean(-1) + _EPS)
    flatness_db = (10 * torch.log10(_gated_mean(frame_flat, frame_w) + _EPS)).clamp_min(-60.0)

    # Crest factor: sample peak over the RMS of the active part (mean square from the
    # spectrogram, Parseval; a Hann window at 50 % overlap sums to 1.5x its energy).
    peak = torch.maximum(x.amax(dim=(-1, -2)), -x.amin(dim=(-1, -2)))  # no |x| copy
    channel_energy = power.sum(dim=(-1, -2))  # [..., C]
    n_fft = fft_size(sample_rate)
    mean_square = channel_energy.mean(-1) / (0.375 * n_fft * x.shape[-1])
    rms = (mean_square / active_fraction.clamp_min(1e-3)).sqrt()
    crest_db = (20 * torch.log10((peak + _EPS) / (rms + _EPS))).clamp(0.0, 40.0)
    # Stereo image from the per-channel energies and the cross spectrum.
    if x.shape[-2] >= 2:
        e_l, e_r = channel_energy[..., 0], channel_energy[..., 1]
        cross = _cross_energy(spec[..., 0, :, :], spec[..., 1, :, :])
    else:
        e_l = e_r = cross = channel_energy[..., 0]
    e_mid = 0.25 * (e_l + e_r + 2 * cross)
    e_side = 0.25 * (e_l + e_r - 2 * cross)
    width = (e_side / (e_mid + e_side + _EPS)).clamp(0.0, 1.0)
    correlation = (cross / (e_l * e_r + _EPS).sqrt()).clamp(-1.0, 1.0)
    balance = (e_r - e_l) / (e_l + e_r + _EPS)

    mel_power = mono_power @ mel_fb  # [..., frames, mels]
    mel_db = 10 * torch.log10(mel_power + _EPS)
    mel_mean = _gated_mean(mel_db.transpose(-1, -2), frame_w.unsqueeze(-2))  # [..., mels]
    mel_shape = mel_mean - mel_mean.mean(-1, keepdim=True)
    mel_var = _gated_mean((mel_db - mel_mean.unsqueeze(-2)).square().transpose(-1, -2), frame_w.unsqueeze(-2))
    mel_std = mel_var.clamp_min(0).sqrt()

    scalars = torch.stack(
        [lufs, lra, active_fraction, crest_db, centroid_oct, flatness_db, width, correlation, balance], -1
    )
    silent = ~has_frames | (lufs <= SILENCE_LUFS)
    # Silence: a fixed, finite vector (loudness at the floor, spectra flat).
    scalars = torch.where(silent.unsqueeze(-1), _silent_scalars(scalars), scalars)
    mel_shape = torch.where(silent.unsqueeze(-1), torch.zeros_like(mel_shape), mel_shape)
    mel_std = torch.where(silent.unsqueeze(-1), torch.zeros_like(mel_std), mel_std)
    scale = _SCALAR_SCALE.to(x.device)
    out = torch.cat([scalars / scale, mel_shape.clamp(-80, 80) / _MEL_SCALE, mel_std.clamp(0, 60) / _MEL_SCALE], -1)
    return torch.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


def _silent_scalars(like: torch.Tensor) -> torch.Tensor:
    values = torch.tensor([SILENCE_LUFS, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0], device=like.device)
    return values.expand_as(like)


def stem_features(stems: torch.Tensor, sample_rate: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Features of every stem plus its loudness relative to the sum of the stems.

    Parameters
    ----------
    stems : Tensor
        ``[B, S, C, T]`` audio.
    sample_rate : int
        Hz.
    mask : Tensor, optional
        ``[B, S]`` bool, True for real stems (padding stems are ignored in the sum).

    Returns
    -------
    stem_feats : Tensor
        ``[B, S, N_FEATURES + 1]``: :func:`audio_features` and, last, the stem's loudness
        minus the loudness of the sum of all stems (LU / 20).
    mix_feats : Tensor
        ``[B, N_FEATURES]``: features of the sum of the (unmasked) stems.
    """
    if mask is None:
        mask = torch.ones(stems.shape[:2], dtype=torch.bool, device=stems.device)
    if bool(mask.all()):
        feats = audio_features(stems, sample_rate)
    else:  # padding stems are not analysed (their features are zeroed below anyway)
        feats = torch.zeros(*stems.shape[:2], N_FEATURES, device=stems.device)
        if bool(mask.any()):
            feats[mask] = audio_features(stems[mask], sample_rate)
    mix = (stems * mask[..., None, None].to(stems.dtype)).sum(1)
    mix_feats = audio_features(mix, sample_rate)
    relative = (feats[..., 0] - mix_feats[..., :1]) * (_SCALAR_SCALE[0] / 20.0)
    feats = feats * mask[..., None].to(feats.dtype)
    relative = relative * mask.to(feats.dtype)
    return torch.cat([feats, relative.unsqueeze(-1)], -1), mix_feats


def describe(features: torch.Tensor) -> dict[str, float]:
    """Human-readable scalar features (musician units) of one feature vector ``[N_FEATURES]``."""
    values = features[: len(SCALARS)].detach().cpu() * _SCALAR_SCALE
    return {name: float(v) for name, v in zip(SCALARS, values)}
