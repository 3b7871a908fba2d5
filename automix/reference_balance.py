"""Follow a reference mix's balance: fader offsets that make the stems' sum sound like it.

With ``--reference`` the mix model reads the reference's features, but a network's guess is
only as good as its training; this step then measures directly. Every stem's K-weighted
power in :data:`BAND_FREQS_HZ` bands (after the fader and EQ the model chose) and the
reference's are compared: the fader offsets ``d`` (dB, one per stem) that bring the sum of
the stems' band powers closest to the reference's spectral shape are found by least squares
in dB, with the overall level left free (balance, not loudness) and a pull toward the
model's faders so that stems the spectrum cannot tell apart (two pads in the same octaves)
stay where the model put them::

    minimise  mean_f w_f (10 log10 sum_i 10^((P_if + d_i) / 10) - R_f - c)^2 + strength * mean_i d_i^2

over ``d`` and the free level ``c``, with ``P_if`` a stem's band power (dB), ``R_f`` the
reference's, and ``w_f`` 1 on the bands where the reference has energy (within
:data:`BAND_RANGE_DB` of its strongest band). Stems are taken as uncorrelated (powers add).

The reference should be a mix of this song (another section, an earlier version, a rough
mix) or of a song arranged alike: with a different arrangement the faders follow that
arrangement's spectrum.
"""
from __future__ import annotations

import math

import torch

from automix.dsp.params import STRIP

#: Band centres (Hz) of the comparison: 48 log-spaced bands, 30 Hz to 16 kHz.
BAND_FREQS_HZ = torch.logspace(math.log10(30.0), math.log10(16000.0), 48, dtype=torch.float64)
#: Bands more than this far (dB) below the reference's strongest band are not compared.
BAND_RANGE_DB = 50.0
#: Pull toward the model's faders (per dB^2 of offset, against dB^2 of spectral mismatch); chosen
#: on 7 training songs (benchmarks/mix_reference.py --data on them): 0.05 / 1 / 3 gave balance
#: errors 3.98 / 2.02 / 2.05 LU against 2.39 without the fit; 3 improved every song's balance.
DEFAULT_STRENGTH = 3.0
#: Largest fader offset the fit may apply, dB.
MAX_OFFSET_DB = 12.0
_K = math.log(10.0) / 10.0


def stem_band_powers_db(stems: torch.Tensor, values: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """K-weighted band powers (dB) of ``stems`` ``[S, C, T]`` after their strip's fader and EQ ``values`` ``[S, P]``: ``[S, F]``."""
    from automix.dsp.biquad import magnitude_db
    from automix.dsp.eq import eq_response
    from automix.model.balance_loss import kweighted_band_power_db

    bands = BAND_FREQS_HZ.clamp(max=0.45 * sample_rate)
    raw = kweighted_band_power_db(stems, sample_rate, bands).double()
    eq_db = magnitude_db(eq_response(values.double(), STRIP, bands, float(sample_rate)))
    return raw + eq_db + values[:, STRIP.index("gain_db")].double()[:, None]


def fit_fader_offsets(stem_bands_db: torch.Tensor, reference_bands_db: torch.Tensor,
                      active: torch.Tensor | None = None, strength: float = DEFAULT_STRENGTH,
                      steps: int = 60) -> torch.Tensor:
    """Fader offsets (dB, ``[S]``) bringing the stems' summed band powers to the reference's shape.

    Parameters
    ----------
    stem_bands_db : Tensor ``[S, F]``
        Each stem's band powers as the mix will have them (dB).
    reference_bands_db : Tensor ``[F]``
        The reference mix's band powers (dB), same bands.
    active : Tensor ``[S]`` bool, optional
        Stems that may move (silent ones keep offset 0).
    strength : float
        Pull toward no change (see the module docstring).
    steps : int
        L-BFGS iterations.

    Returns
    -------
    Tensor ``[S]`` float64, within +/- :data:`MAX_OFFSET_DB`.
    """
    bands = stem_bands_db.double()
    ref = reference_bands_db.double()
    n_stems = bands.shape[0]
    if active is None:
        active = torch.ones(n_stems, dtype=torch.bool)
    weight = (ref > ref.max() - BAND_RANGE_DB).double()
    if n_stems == 0 or not bool(active.any()) or weight.sum() == 0:
        return torch.zeros(n_stems, dtype=torch.float64)
    weight = weight / weight.sum()
    free = torch.zeros(n_stems, dtype=torch.float64, requires_grad=True)
    gate = active.double()
    hidden = torch.where(active, 0.0, -math.inf).double()[:, None]
    # a stem that is silent in the analysed audio contributes nothing (its offset is unknown)
    loud = bands + hidden

    def objective() -> torch.Tensor:
        offset = MAX_OFFSET_DB * torch.tanh(free / MAX_OFFSET_DB) * gate
        total = torch.logsumexp((loud + offset[:, None]) * _K, 0) / _K
        residual = total - ref
        residual = residual - (weight * residual).sum()  # the level is free
        return (weight * residual.square()).sum() + strength * (offset.square() * gate).sum() / gate.sum()

    optimiser = torch.optim.LBFGS([free], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimiser.step(closure)
    return (MAX_OFFSET_DB * torch.tanh(free.detach() / MAX_OFFSET_DB) * gate).detach()


def match_reference_balance(values: torch.Tensor, stems: torch.Tensor, reference: torch.Tensor, sample_rate: int,
                            active: torch.Tensor | None = None, strength: float = DEFAULT_STRENGTH) -> torch.Tensor:
    """Strip values ``[S, P]`` with faders moved so the mix follows ``reference``'s balance.

    Parameters
    ----------
    values : Tensor ``[S, P]``
        The model's strip values.
    stems : Tensor ``[S, C, T]``
        The audio the model analysed (excerpts of every stem).
    reference : Tensor ``[C, T_ref]``
        The reference mix (excerpts), same rate.
    sample_rate : int, Hz
    active : Tensor ``[S]`` bool, optional
        Stems to move (default all).
    strength : float
        Pull toward the model's faders.
    """
    from automix.model.balance_loss import kweighted_band_power_db

    with torch.no_grad():
        stem_bands = stem_band_powers_db(stems, values, sample_rate)
        bands = BAND_FREQS_HZ.clamp(max=0.45 * sample_rate)
        ref_bands = kweighted_band_power_db(reference, sample_rate, bands).double()
    offsets = fit_fader_offsets(stem_bands, ref_bands, active, strength)
    out = values.clone()
    out[:, STRIP.index("gain_db")] += offsets.to(out.dtype)
    return STRIP.clamp(out)
