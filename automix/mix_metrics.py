"""Full-reference mix metrics beyond spectrum and level: stereo image, dynamics, placement.

Each metric compares a mix (and its processed stems) with a reference mix (and the stems
as they sit in it). They complement :mod:`automix.evaluation` (multi-resolution
log-spectral distance, per-stem balance), and :func:`score_mix` gathers all six, so the
``benchmarks/mix_raw.py`` benchmark and training validation read the same numbers.

Signals are ``(channels=2, samples)`` mixes and ``(stems, 2, samples)`` stems, numpy or
torch (not differentiable: these are measurements), full scale +-1.

* :func:`stereo_image_distance_db` — side/mid energy ratio per octave band, dB.
* :func:`loudness_spread_distance_lu` — short-term loudness spread of the mixes, LU.
* :func:`crest_distance_db` — per-stem crest factor, dB.
* :func:`lr_balance_error_db` — per-stem left/right energy balance, dB.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from automix.raw_like import crest_factor_db, loudness_spread_lu

#: Octave-band centres of the stereo-image measure, Hz.
IMAGE_BAND_CENTRES_HZ: tuple[float, ...] = (63.0, 125.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0, 16000.0)
#: Side/mid ratios are floored here (a mono band would be -inf), dB.
IMAGE_FLOOR_DB: float = -40.0
#: Bands whose reference energy is this far below its strongest band are not scored, dB.
IMAGE_BAND_GATE_DB: float = 60.0
#: Left/right balances are clipped to +-this (a one-sided stem would be infinite), dB.
LR_BALANCE_LIMIT_DB: float = 30.0
#: Stems quieter than this in the reference (mean-square power, dBFS) are not scored.
SILENT_STEM_DBFS: float = -70.0


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def side_mid_by_octave_db(mix: Any, sample_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Side/mid energy ratio of a stereo ``mix`` (2, T) in each octave band.

    ``mid = (L + R) / 2``, ``side = (L - R) / 2``; the energies of each octave band
    (``centre / sqrt2 .. centre * sqrt2``, :data:`IMAGE_BAND_CENTRES_HZ` below Nyquist) come
    from one FFT of the whole signal.

    Returns
    -------
    centres_hz : np.ndarray (B,)
    ratio_db : np.ndarray (B,)
        ``10 log10(side / mid)`` per band, clipped to +-:data:`IMAGE_FLOOR_DB`.
    band_db : np.ndarray (B,)
        Energy (mid + side) of each band, dB (for gating).
    """
    x = _np(mix)
    mid, side = np.fft.rfft(0.5 * (x[0] + x[1])), np.fft.rfft(0.5 * (x[0] - x[1]))
    freqs = np.fft.rfftfreq(x.shape[-1], 1.0 / sample_rate)
    pm, ps = np.abs(mid) ** 2, np.abs(side) ** 2
    centres = np.array([c for c in IMAGE_BAND_CENTRES_HZ if c * math.sqrt(2.0) <= sample_rate / 2.0])
    ratio, energy = np.empty(centres.size), np.empty(centres.size)
    for k, c in enumerate(centres):
        band = (freqs >= c / math.sqrt(2.0)) & (freqs < c * math.sqrt(2.0))
        m, s = float(pm[band].sum()), float(ps[band].sum())
        if s <= 0.0:
            ratio[k] = IMAGE_FLOOR_DB  # mono (or silent) band
        elif m <= 0.0:
            ratio[k] = -IMAGE_FLOOR_DB  # pure side
        else:
            ratio[k] = min(-IMAGE_FLOOR_DB, max(IMAGE_FLOOR_DB, 10.0 * math.log10(s / m)))
        energy[k] = 10.0 * math.log10(m + s) if m + s > 0 else -math.inf
    return centres, ratio, energy


def stereo_image_distance_db(estimate: Any, reference: Any, sample_rate: int) -> float:
    """Mean absolute difference of the per-octave side/mid ratios (:func:`side_mid_by_octave_db`)
    of two mixes (2, T), dB, over the bands within :data:`IMAGE_BAND_GATE_DB` of the
    reference's strongest band. 0 = the same width in every band."""
    _, est, _ = side_mid_by_octave_db(estimate, sample_rate)
    _, ref, energy = side_mid_by_octave_db(reference, sample_rate)
    used = energy >= np.max(energy) - IMAGE_BAND_GATE_DB
    return float(np.mean(np.abs(est[used] - ref[used])))


def loudness_spread_distance_lu(estimate: Any, reference: Any, sample_rate: int) -> float:
    """Absolute difference of the short-term loudness spreads of two mixes (2, T), LU.

    The spread is the standard deviation of the 3 s K-weighted loudness, read every
    100 ms, over readings within 20 LU of the median
    (:func:`automix.raw_like.loudness_spread_lu`): how much the mix's level moves.
    """
    a, b = loudness_spread_lu(_np(estimate), sample_rate), loudness_spread_lu(_np(reference), sample_rate)
    return float(abs(a - b)) if np.isfinite(a) and np.isfinite(b) else math.nan


def _scored_stems(reference_stems: np.ndarray) -> np.ndarray:
    power = np.square(reference_stems).mean(axis=(1, 2))
    return power > 10.0 ** (SILENT_STEM_DBFS / 10.0)


def crest_distance_db(estimate_stems: Any, reference_stems: Any, sample_rate: int) -> float:
    """Mean absolute difference of the stems' crest factors, dB, over the stems (S, 2, T)
    that are not silent in the reference.

    A stem's crest factor is the median peak/RMS of its active 400 ms blocks
    (:func:`automix.raw_like.crest_factor_db`): how much its compression flattened it.
    """
    est, ref = _np(estimate_stems), _np(reference_stems)
    errors = [abs(crest_factor_db(e, sample_rate) - crest_factor_db(r, sample_rate))
              for e, r, keep in zip(est, ref, _scored_stems(ref)) if keep]
    errors = [e for e in errors if np.isfinite(e)]
    return float(np.mean(errors)) if errors else math.nan


def lr_balance_db(stems: Any) -> np.ndarray:
    """Left-minus-right energy balance of each stem (S, 2, T), dB, clipped to
    +-:data:`LR_BALANCE_LIMIT_DB` (0 for a silent stem)."""
    x = _np(stems)
    left, right = np.square(x[:, 0]).sum(-1), np.square(x[:, 1]).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        balance = 10.0 * np.log10(left / right)
    balance = np.where(left + right > 0, balance, 0.0)
    return np.clip(np.nan_to_num(balance, nan=0.0, posinf=LR_BALANCE_LIMIT_DB, neginf=-LR_BALANCE_LIMIT_DB),
                   -LR_BALANCE_LIMIT_DB, LR_BALANCE_LIMIT_DB)


def lr_balance_error_db(estimate_stems: Any, reference_stems: Any, mirror_invariant: bool = True) -> float:
    """Mean absolute per-stem left/right balance error (:func:`lr_balance_db`), dB, over the
    stems that are not silent in the reference: where each instrument sits in the image.

    A mix flipped left for right is the same mix (nothing in the stems says which side the
    engineer chose, only which parts sit opposite each other), so by default the error is
    the smaller of the estimate's and of its mirror image's (all stems flip together)."""
    ref = _np(reference_stems)
    keep = _scored_stems(ref)
    if not np.any(keep):
        return math.nan
    est, ref_balance = lr_balance_db(estimate_stems), lr_balance_db(ref)
    error = float(np.mean(np.abs(est - ref_balance)[keep]))
    if mirror_invariant:
        error = min(error, float(np.mean(np.abs(-est - ref_balance)[keep])))
    return error


#: The metrics of :func:`score_mix`, with their units.
METRICS: dict[str, str] = {
    "spectral_distance_db": "dB",
    "image_distance_db": "dB",
    "spread_distance_lu": "LU",
    "crest_distance_db": "dB",
    "balance_error_lu": "LU",
    "lr_balance_error_db": "dB",
}


def score_mix(estimate_stems: Any, estimate_mix: Any, reference_stems: Any, reference_mix: Any,
              sample_rate: int) -> dict[str, float]:
    """All six metrics of a mix against a reference (see :data:`METRICS`); lower is better.

    ``spectral_distance_db`` is :func:`automix.evaluation.log_spectral_distance_db`
    (multi-resolution, loudness-matched) and ``balance_error_lu`` is
    :func:`automix.evaluation.balance_error_lu` (each stem's loudness relative to its mix);
    the others are this module's. Signals are cut to the shortest length.
    """
    import torch

    from automix.evaluation import balance_error_lu, log_spectral_distance_db

    est_stems, est_mix, ref_stems, ref_mix = (_np(a) for a in (estimate_stems, estimate_mix, reference_stems,
                                                               reference_mix))
    n = min(est_mix.shape[-1], ref_mix.shape[-1], est_stems.shape[-1], ref_stems.shape[-1])
    est_stems, est_mix, ref_stems, ref_mix = (a[..., :n] for a in (est_stems, est_mix, ref_stems, ref_mix))

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a.astype(np.float32))[None]

    mask = torch.from_numpy(_scored_stems(ref_stems))[None]
    return {
        "spectral_distance_db": float(log_spectral_distance_db(t(est_mix), t(ref_mix), sample_rate)[0]),
        "image_distance_db": stereo_image_distance_db(est_mix, ref_mix, sample_rate),
        "spread_distance_lu": loudness_spread_distance_lu(est_mix, ref_mix, sample_rate),
        "crest_distance_db": crest_distance_db(est_stems, ref_stems, sample_rate),
        "balance_error_lu": float(balance_error_lu(t(est_stems), t(est_mix), t(ref_stems), t(ref_mix),
                                                   sample_rate, mask)[0]),
        "lr_balance_error_db": lr_balance_error_db(est_stems, ref_stems),
    }
