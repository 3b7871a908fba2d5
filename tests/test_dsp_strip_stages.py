"""EQ, saturation and pan stages measured on synthesised audio."""
import math

import numpy as np
import pytest
import scipy.signal as ss
import torch

from automix.dsp import eq, pan, saturation
from automix.dsp.console import render_mix
from automix.dsp.params import STRIP

SR = 44100


def test_strip_eq_shapes_white_noise_like_the_cookbook_says():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((1, 1, 2, 4 * SR)) * 0.05).float()
    strip = STRIP.neutral_like(1, 1)
    for name, value in {"eq.peak2.freq_hz": 1000.0, "eq.peak2.gain_db": 12.0, "eq.peak2.q": 2.0,
                        "eq.high_shelf.freq_hz": 8000.0, "eq.high_shelf.gain_db": -9.0,
                        "eq.hpf.freq_hz": 100.0, "eq.hpf.mix": 1.0}.items():
        strip[..., STRIP.index(name)] = value
    y = render_mix(x, strip, SR).mix
    f, p_in = ss.welch(x[0, 0].double().numpy(), fs=SR, nperseg=8192, axis=-1)
    _, p_out = ss.welch(y[0].double().numpy(), fs=SR, nperseg=8192, axis=-1)
    measured = 10 * np.log10(p_out.mean(0) / p_in.mean(0))
    # independent expectation: scipy's response of the numpy cookbook cascade
    sos = eq.eq_sos(strip[0, 0].double(), STRIP, SR).numpy()
    _, h = ss.sosfreqz(sos, worN=f, fs=SR)
    expected = 20 * np.log10(np.abs(h) + 1e-12)
    for target, level in ((1000.0, 12.0), (16000.0, -9.0), (50.0, None)):
        i = np.argmin(np.abs(f - target))
        assert measured[i] == pytest.approx(expected[i], abs=0.5)
        if level is not None:
            assert measured[i] == pytest.approx(level, abs=0.7)
    assert measured[np.argmin(np.abs(f - 50.0))] < -10  # the 12 dB/oct high-pass at 100 Hz


def test_hpf_mix_is_a_blend_of_dry_and_high_passed():
    strip = STRIP.neutral_like(1)
    strip[..., STRIP.index("eq.hpf.freq_hz")] = 200.0
    strip[..., STRIP.index("eq.hpf.mix")] = 0.5
    h = eq.eq_response(strip.double(), STRIP, torch.tensor([10.0, 20000.0], dtype=torch.float64), SR)
    assert abs(h[0, 0]) == pytest.approx(0.5, abs=0.01) and abs(h[0, 1]) == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("drive_db", [6.0, 12.0, 24.0])
def test_saturation_is_loudness_compensated_and_adds_harmonics(drive_db):
    n = SR
    t = np.arange(n) / SR
    sine = torch.from_numpy(0.25 * np.sin(2 * np.pi * 441.0 * t)).reshape(1, 1, n)  # -12 dBFS peak
    wet = saturation.saturate(sine, torch.tensor(drive_db, dtype=torch.float64), torch.tensor(1.0)).numpy()[0, 0]
    rms_in, rms_out = np.sqrt(np.mean(sine.numpy() ** 2)), np.sqrt(np.mean(wet ** 2))
    assert 20 * np.log10(rms_out / rms_in) == pytest.approx(0.0, abs=0.1)
    spec = np.abs(np.fft.rfft(wet))
    third = 20 * np.log10(spec[3 * 441] / spec[441])
    assert third > {6.0: -40, 12.0: -25, 24.0: -15}[drive_db]
    # the textbook tanh of the same signal, rescaled, is what comes out (independent numpy)
    ref = np.tanh(10 ** (drive_db / 20) * sine.numpy()[0, 0])
    np.testing.assert_allclose(wet / np.sqrt(np.mean(wet ** 2)), ref / np.sqrt(np.mean(ref ** 2)), atol=1e-6)
    dry = saturation.saturate(sine, torch.tensor(drive_db, dtype=torch.float64), torch.tensor(0.0))
    assert torch.equal(dry, sine)


def test_pan_law_is_constant_power_with_unity_at_centre():
    p = torch.linspace(-1, 1, 21, dtype=torch.float64)
    m = pan.output_matrix(p, torch.zeros_like(p), 1)[..., 0]  # (21, 2)
    theta = (p.numpy() + 1) * np.pi / 4
    np.testing.assert_allclose(m.numpy(), np.stack([np.cos(theta), np.sin(theta)], -1) * math.sqrt(2), atol=1e-12)
    np.testing.assert_allclose((m ** 2).sum(-1).numpy(), 2.0, atol=1e-12)  # constant power
    assert m[10].tolist() == pytest.approx([1.0, 1.0])  # centre: 0 dB per side (-3 dB vs a hard pan)
    assert m[0, 1] == pytest.approx(0.0, abs=1e-12)
    stereo = pan.output_matrix(p, torch.full_like(p, -6.0), 2)
    fader = 10 ** (-6 / 20)
    assert stereo[10].numpy() == pytest.approx(np.eye(2) * fader)
    assert stereo[0].numpy() == pytest.approx(np.diag([1.0, 0.0]) * fader, abs=1e-12)
    assert stereo[15, 0, 0] == pytest.approx(math.sqrt(2) * math.cos(0.75 * math.pi / 2) * fader)
    assert stereo[15, 1, 1] == pytest.approx(fader)
