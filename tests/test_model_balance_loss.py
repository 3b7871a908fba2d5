"""The balance error predicted from band powers (automix.model.balance_loss) against the
benchmark's metric measured on rendered audio (automix.evaluation.balance_error_lu)."""
import numpy as np
import torch

from automix.dsp.params import STRIP
from automix.evaluation import balance_error_lu, kweighted_loudness_db
from automix.model import balance_loss, fit_inverse
from automix.perturb import BENCHMARK

torch.set_num_threads(1)
SR = 24000


def _stems(seconds: float = 1.5, seed: int = 0) -> torch.Tensor:
    """Kick, bass, bright noise and a mid tone with vibrato: (1, 4, 2, T)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    kick = 0.6 * np.exp(-18 * ((t * 2) % 1)) * np.sin(2 * np.pi * 60 * t)
    bass = 0.25 * np.sin(2 * np.pi * 98 * t)
    hats = 0.05 * np.diff(rng.standard_normal(len(t) + 1))
    lead = 0.1 * np.sin(2 * np.pi * 880 * t + 3 * np.sin(2 * np.pi * 5 * t))
    x = np.stack([np.stack([s, 0.8 * s]) for s in (kick, bass, hats, lead)]).astype(np.float32)
    return torch.from_numpy(x)[None]


def test_band_powers_sum_to_the_ungated_loudness():
    stems = _stems()
    bands = balance_loss.kweighted_band_power_db(stems, SR, fit_inverse.TONE_FREQS_HZ)
    assert bands.shape == (1, 4, len(fit_inverse.TONE_FREQS_HZ))
    from_bands = -0.691 + 10 * torch.log10((10 ** (bands / 10)).sum(-1))
    assert torch.allclose(from_bands, kweighted_loudness_db(stems, SR), atol=1e-3)
    # The bass's power sits in the band nearest 98 Hz.
    nearest = int((torch.log2(fit_inverse.TONE_FREQS_HZ / 98.0)).abs().argmin())
    assert int(bands[0, 1].argmax()) == nearest


def test_predicted_balance_error_matches_the_rendered_measurement():
    stems = _stems()
    mask = torch.ones(1, 4, dtype=torch.bool)
    bands = balance_loss.kweighted_band_power_db(stems, SR, fit_inverse.TONE_FREQS_HZ)
    generator = torch.Generator().manual_seed(3)
    for _ in range(3):
        strip = BENCHMARK.sample_strip(stems, generator)  # gain +/-9 dB, tilt +/-6 dB
        gains = strip[..., STRIP.index("gain_db")]
        rendered = fit_inverse._apply_eq(stems, strip, SR) * (10 ** (gains / 20))[..., None, None]
        measured = balance_error_lu(rendered, rendered.sum(1), stems, stems.sum(1), SR, mask)
        change = gains[..., None] + fit_inverse._eq_db(strip, SR)
        error, valid = balance_loss.balance_change_lu(bands, change, mask)
        predicted = error.abs().mean()
        assert valid.all()
        assert float(measured) > 1.0  # the perturbation moved the balance
        assert abs(float(predicted) - float(measured)) < 0.25, (float(predicted), float(measured))
        # Per stem, signed: stem minus mix loudness change, as measured.
        per_stem = (kweighted_loudness_db(rendered, SR) - kweighted_loudness_db(rendered.sum(1), SR)[..., None]) \
            - (kweighted_loudness_db(stems, SR) - kweighted_loudness_db(stems.sum(1), SR)[..., None])
        assert torch.allclose(error, per_stem, atol=0.4)


def test_silent_and_padding_stems_do_not_count():
    stems = _stems()
    stems = torch.cat([stems, torch.zeros(1, 1, 2, stems.shape[-1])], 1)
    bands = balance_loss.kweighted_band_power_db(stems, SR, fit_inverse.TONE_FREQS_HZ)
    change = torch.zeros_like(bands)
    change[0, 0] += 6.0
    error, valid = balance_loss.balance_change_lu(bands, change, torch.tensor([[True, True, True, False, True]]))
    assert valid.tolist() == [[True, True, True, False, False]]
    assert float(error[0, 3]) == 0.0
    assert 0.0 < float(error[0, 0]) < 6.0 and float(error[0, 1]) < 0.0
