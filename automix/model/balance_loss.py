"""The benchmark's balance error, predicted from band powers (no audio rendering in the loop).

The mix-quality benchmark scores a mix by every stem's ungated K-weighted loudness relative
to its mix (:func:`automix.evaluation.balance_error_lu`). When the stems are processed only
by a gain and an EQ, that error can be computed from each original stem's K-weighted power
in a few frequency bands: a stem whose band powers are ``P_f`` and whose level changes by
``c_f`` dB in band ``f`` gets louder by ``10 log10(sum_f P_f 10^(c_f/10) / sum_f P_f)`` LU,
and the mix (stems uncorrelated: powers add) by the same formula over all stems' bands.
The balance error of a stem is the difference between the two changes.

:func:`kweighted_band_power_db` measures the band powers once, when training examples are
made; :func:`balance_change_lu` turns a level change per band into each stem's balance
error, differentiably, so the feature-space fit (:mod:`automix.model.fit_inverse`) can
minimise the quantity the benchmark reports.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

#: The balance error ignores stems quieter than this (as :func:`automix.evaluation.balance_error_lu`).
SILENCE_LUFS = -70.0
_K = math.log(10.0) / 10.0  # dB -> natural log of power


def band_index(n_fft: int, sample_rate: int, band_freqs_hz: Tensor) -> Tensor:
    """Band (index into ``band_freqs_hz``, log-spaced centres) of every rfft bin: nearest in octaves."""
    freqs = torch.fft.rfftfreq(n_fft, 1.0 / sample_rate, dtype=torch.float64)
    octaves = torch.log2(freqs.clamp_min(1.0))[:, None] - torch.log2(band_freqs_hz.double())[None, :]
    return octaves.abs().argmin(-1)


def kweighted_band_power_db(x: Tensor, sample_rate: int, band_freqs_hz: Tensor) -> Tensor:
    """K-weighted power of ``x`` (..., C, T) in bands centred on ``band_freqs_hz`` (F,), dB: (..., F).

    Every rfft bin goes to the nearest band (bins below the first centre to the first band,
    above the last to the last). Powers are normalised like
    :func:`automix.evaluation.kweighted_loudness_db`: ``-0.691 + 10 log10(sum of the bands'
    powers)`` is the signal's ungated BS.1770 loudness (LUFS); channels are summed.
    """
    from automix.evaluation import k_weighting_power_response

    n = x.shape[-1]
    spectrum = torch.fft.rfft(x.float(), n=n)
    weight = torch.as_tensor(k_weighting_power_response(n, sample_rate), dtype=torch.float32, device=x.device)
    side = torch.full_like(weight, 2.0)
    side[0] = 1.0
    if n % 2 == 0:
        side[-1] = 1.0
    power = (spectrum.real.square() + spectrum.imag.square()).sum(-2) * (weight * side / float(n) ** 2)
    index = band_index(n, sample_rate, band_freqs_hz).to(x.device)
    bands = torch.zeros(*power.shape[:-1], len(band_freqs_hz), device=x.device)
    bands.index_add_(-1, index, power)
    return 10.0 * torch.log10(bands + 1e-20)


def balance_change_lu(bands_db: Tensor, change_db: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Every stem's change of loudness relative to its mix, LU (signed).

    Parameters
    ----------
    bands_db : Tensor (B, S, F)
        K-weighted band powers of the original stems (:func:`kweighted_band_power_db`), dB.
    change_db : Tensor (B, S, F)
        Level change each stem gets in each band (gain plus EQ response), dB.
    mask : Tensor (B, S) bool, optional
        Real stems.

    Returns
    -------
    error : Tensor (B, S)
        ``(stem after - mix after) - (stem before - mix before)``: the per-stem balance error
        of :func:`automix.evaluation.balance_error_lu` before taking its absolute value.
    valid : Tensor (B, S) bool
        Stems the benchmark counts (real and louder than :data:`SILENCE_LUFS`).
    """
    if mask is None:
        mask = torch.ones(bands_db.shape[:2], dtype=torch.bool, device=bands_db.device)
    before = bands_db * _K
    after = (bands_db + change_db) * _K
    stem_before = torch.logsumexp(before, -1)
    stem_after = torch.logsumexp(after, -1)
    hidden = torch.where(mask, 0.0, -math.inf).to(before.dtype)
    mix_before = torch.logsumexp(stem_before + hidden, -1, keepdim=True)
    mix_after = torch.logsumexp(stem_after + hidden, -1, keepdim=True)
    error = ((stem_after - mix_after) - (stem_before - mix_before)) / _K
    loudness = -0.691 + stem_before / _K
    valid = mask & (loudness > SILENCE_LUFS)
    return torch.where(mask, error, torch.zeros_like(error)), valid
