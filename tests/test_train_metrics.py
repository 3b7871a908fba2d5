"""Loss terms and evaluation metrics, checked against independent implementations."""
from __future__ import annotations

import numpy as np
import pyloudnorm as pyln
import pytest
import scipy.signal as ss
import torch

from automix.dsp.params import STRIP
from automix.evaluation import (balance_error_lu, equal_loudness_baseline, k_weighting_power_response,
                                kweighted_loudness_db, log_spectral_distance_db, stem_balance_lu)
from automix.loudness import k_weighting_sos
from automix.losses import (CompositeLoss, LoudnessLoss, MixPrediction, MultiResolutionSTFTLoss,
                            ParameterRegularization, SumDifferenceSTFTLoss)

torch.set_num_threads(1)


def _noise(seed, channels=2, seconds=2.0, sr=48000, scale=0.1):
    return np.random.default_rng(seed).normal(size=(channels, int(seconds * sr))) * scale


def test_kweighted_loudness_matches_bs1770_filters_at_48k():
    x = _noise(0)
    # the standard's published 48 kHz coefficients, filtered in the time domain
    y = ss.lfilter([1.53512485958697, -2.69169618940638, 1.19839281085285], [1, -1.69065929318241, 0.73248077421585], x)
    y = ss.lfilter([1, -2, 1], [1, -1.99004745483398, 0.99007225036621], y)
    expected = -0.691 + 10 * np.log10((y ** 2).mean(-1).sum())
    assert float(kweighted_loudness_db(torch.tensor(x), 48000)) == pytest.approx(expected, abs=0.06)


@pytest.mark.parametrize("sr", [22050, 44100, 96000])
def test_k_weighting_power_response_matches_scipy_sosfreqz(sr):
    for n_fft in (1024, 2049):
        _, h = ss.sosfreqz(k_weighting_sos(sr), worN=np.fft.rfftfreq(n_fft, 1.0 / sr), fs=sr)
        np.testing.assert_allclose(k_weighting_power_response(n_fft, sr), np.abs(h) ** 2, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("sr", [22050, 24000, 44100])
def test_kweighted_loudness_close_to_pyloudnorm(sr):
    t = np.arange(3 * sr) / sr
    x = np.stack([0.3 * np.sin(2 * np.pi * 1000 * t) + 0.1 * np.sin(2 * np.pi * 120 * t),
                  0.2 * np.sin(2 * np.pi * 5000 * t)])
    ref = pyln.Meter(sr).integrated_loudness(x.T)  # gating is inactive on a steady signal
    assert float(kweighted_loudness_db(torch.tensor(x), sr)) == pytest.approx(ref, abs=0.03)


def _pyln_balance(stems, sr):
    meter = pyln.Meter(sr)
    mix = stems.sum(0)
    return np.array([meter.integrated_loudness(s.T) - meter.integrated_loudness(mix.T) for s in stems])


def test_balance_and_error_against_pyloudnorm():
    sr = 24000
    t = np.arange(2 * sr) / sr
    stems = np.stack([np.stack([0.3 * np.sin(2 * np.pi * f * t)] * 2) for f in (200.0, 1000.0, 3000.0)])
    ours = stem_balance_lu(torch.tensor(stems), torch.tensor(stems.sum(0)), sr).numpy()
    np.testing.assert_allclose(ours, _pyln_balance(stems, sr), atol=0.15)
    moved = stems * np.array([2.0, 1.0, 0.5])[:, None, None]
    expected = np.abs(_pyln_balance(moved, sr) - _pyln_balance(stems, sr)).mean()
    err = balance_error_lu(torch.tensor(moved), torch.tensor(moved.sum(0)), torch.tensor(stems),
                           torch.tensor(stems.sum(0)), sr)
    assert float(err) == pytest.approx(expected, abs=0.1)
    assert float(balance_error_lu(torch.tensor(stems), torch.tensor(stems.sum(0)), torch.tensor(stems),
                                  torch.tensor(stems.sum(0)), sr)) == pytest.approx(0, abs=1e-4)


def test_equal_loudness_baseline_reaches_target():
    sr = 24000
    stems = np.stack([_noise(i, sr=sr, scale=s) for i, s in enumerate((0.5, 0.05, 0.01))])
    out = equal_loudness_baseline(torch.tensor(stems), sr, target_lufs=-23.0).numpy()
    meter = pyln.Meter(sr)
    for s in out:
        assert meter.integrated_loudness(s.T) == pytest.approx(-23.0, abs=0.2)


def test_log_spectral_distance_against_scipy():
    sr = 24000
    x = _noise(1, sr=sr)
    y = ss.lfilter(*ss.butter(2, 2000, fs=sr), x) + 0.01 * _noise(2, sr=sr)
    ours = float(log_spectral_distance_db(torch.tensor(y), torch.tensor(x), sr, fft_sizes=(1024,), match_level=False))
    _, _, ex = ss.stft(x, nperseg=1024, noverlap=768, window="hann", boundary="even", padded=False)
    _, _, ey = ss.stft(y, nperseg=1024, noverlap=768, window="hann", boundary="even", padded=False)
    px, py = np.abs(ex) ** 2, np.abs(ey) ** 2
    floor = px.max() * 1e-8
    d = 10 * np.log10(np.maximum(py, floor)) - 10 * np.log10(np.maximum(px, floor))
    expected = np.sqrt((d ** 2).mean(axis=1)).mean()
    assert ours == pytest.approx(expected, rel=0.05)
    assert float(log_spectral_distance_db(torch.tensor(x), torch.tensor(x), sr)) == pytest.approx(0, abs=1e-3)
    # level-matched: a pure gain change costs nothing, a tone change does
    assert float(log_spectral_distance_db(torch.tensor(3 * x), torch.tensor(x), sr)) < 0.05
    assert ours > 3


def _prediction(mix, target, stems=None, target_stems=None, strip=None):
    b = mix.shape[0]
    stems = mix[:, None] if stems is None else stems
    s = stems.shape[1]
    return MixPrediction(mix, stems, target, target_stems, torch.ones(b, s, dtype=torch.bool),
                         STRIP.neutral_like(b, s) if strip is None else strip, 24000)


def test_stft_losses_zero_at_target_and_decrease_toward_it():
    target = torch.tensor(_noise(3, sr=24000, seconds=1.0), dtype=torch.float32)[None]
    loss = SumDifferenceSTFTLoss(fft_sizes=(512, 128))
    assert float(loss(_prediction(target, target))) == pytest.approx(0, abs=1e-5)
    values = [float(loss(_prediction(target * g, target))) for g in (4.0, 2.0, 1.2)]
    assert values[0] > values[1] > values[2] > 0
    # gradient flows to a gain
    gain = torch.tensor(2.0, requires_grad=True)
    MultiResolutionSTFTLoss((256,))(target * gain, target).backward()
    assert gain.grad is not None and float(gain.grad) > 0


def test_loudness_loss_counts_lu():
    sr = 24000
    target_stems = torch.tensor(np.stack([_noise(i, sr=sr, seconds=1.0) for i in range(2)]), dtype=torch.float32)[None]
    stems = target_stems * torch.tensor([10 ** (3 / 20), 1.0])[None, :, None, None]  # stem 0 +3 dB
    pred = MixPrediction(stems.sum(1), stems, target_stems.sum(1), target_stems,
                         torch.ones(1, 2, dtype=torch.bool), STRIP.neutral_like(1, 2), sr)
    mix_err = float((kweighted_loudness_db(stems.sum(1), sr) - kweighted_loudness_db(target_stems.sum(1), sr)).abs())
    value = float(LoudnessLoss(mix_weight=1.0, stem_weight=1.0)(pred))
    assert value == pytest.approx(mix_err + 1.5, abs=0.02)  # mean over stems of (3, 0) LU


def test_parameter_regularization_and_composite():
    reg = ParameterRegularization()
    strip = STRIP.neutral_like(1, 2)
    target = torch.zeros(1, 2, 1000)
    assert float(reg(_prediction(target, target, strip=strip))) == pytest.approx(0, abs=1e-6)
    strip[..., STRIP.index("gain_db")] = 10.0  # fader and pan are free
    strip[..., STRIP.index("pan")] = -0.5
    assert float(reg(_prediction(target, target, strip=strip))) == pytest.approx(0, abs=1e-6)
    strip[..., STRIP.index("eq.peak2.gain_db")] = 6.0
    assert float(reg(_prediction(target, target, strip=strip))) > 0
    total, parts = CompositeLoss({"params": reg}, {"params": 2.0})(_prediction(target, target, strip=strip))
    assert float(total) == pytest.approx(2 * parts["params"])
    with pytest.raises(ValueError):
        CompositeLoss({"params": reg}, {"nope": 1.0})
