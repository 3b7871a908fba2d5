"""Fader fit toward a reference mix (automix.reference_balance), on band-limited noise stems."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.signal as ss
import torch

from automix.dsp.params import STRIP
from automix.evaluation import kweighted_loudness_db
from automix.reference_balance import fit_fader_offsets, match_reference_balance

SR = 22050
torch.set_num_threads(1)


def _band_noise(low_hz, high_hz, seed, seconds=2.0):
    rng = np.random.default_rng(seed)
    sos = ss.butter(4, [low_hz, high_hz], btype="bandpass", fs=SR, output="sos")
    x = ss.sosfilt(sos, rng.standard_normal((2, int(seconds * SR))), axis=-1)
    return torch.from_numpy(0.1 * x / x.std()).float()


def _stems():
    # bass, mids and hats: spectra that overlap little, as real kick/bass, keys and cymbals do
    return torch.stack([_band_noise(40, 180, 1), _band_noise(400, 1600, 2), _band_noise(4000, 10000, 3)])


def _relative_lu(stems):
    return kweighted_loudness_db(stems, SR) - kweighted_loudness_db(stems.sum(0), SR)


def test_faders_fitted_to_a_reference_recover_its_balance():
    stems = _stems()
    balance_db = torch.tensor([3.0, -4.0, -9.0])  # the reference's faders
    other_take = _stems().roll(5000, -1)  # the reference is another section: same parts, other noise
    reference = (other_take * 10 ** (balance_db / 20)[:, None, None]).sum(0)
    wrong_db = torch.tensor([-5.0, 4.0, 2.0])  # our stems arrive badly balanced
    values = STRIP.neutral.repeat(3, 1)
    values[:, STRIP.index("gain_db")] = wrong_db
    fitted = match_reference_balance(values, stems, reference, SR, strength=0.01)
    gains = fitted[:, STRIP.index("gain_db")]
    mixed = stems * 10 ** (gains / 20)[:, None, None].float()
    target = stems * 10 ** (balance_db / 20)[:, None, None]
    error_before = (_relative_lu(stems * 10 ** (wrong_db / 20)[:, None, None]) - _relative_lu(target)).abs().mean()
    error_after = (_relative_lu(mixed) - _relative_lu(target)).abs().mean()
    assert float(error_before) > 5.0
    assert float(error_after) < 0.5, (gains, balance_db)
    # nothing else in the strip changed
    others = [i for i in range(STRIP.size) if i != STRIP.index("gain_db")]
    assert torch.equal(fitted[:, others], values[:, others])


def test_offsets_are_pulled_toward_zero_when_the_spectrum_cannot_tell_stems_apart():
    bands = torch.stack([torch.zeros(48), torch.zeros(48)]) - 20.0  # two stems, identical spectra
    ref = torch.logsumexp(torch.stack([bands[0], bands[1] + 6.0]) * np.log(10) / 10, 0) / (np.log(10) / 10)
    offsets = fit_fader_offsets(bands.double(), ref.double(), strength=0.05)
    assert torch.all(offsets.abs() <= 12.0)
    assert abs(float(offsets[0] - offsets[1])) < 1.0  # no basis to split them: both move alike
    silent = fit_fader_offsets(bands.double(), ref.double(), active=torch.tensor([True, False]))
    assert float(silent[1]) == 0.0


@pytest.mark.parametrize("n_stems", [1, 0])
def test_degenerate_sets_give_zero_offsets(n_stems):
    offsets = fit_fader_offsets(torch.zeros(n_stems, 48).double(), torch.zeros(48).double())
    assert offsets.shape == (n_stems,) and torch.all(torch.isfinite(offsets))
