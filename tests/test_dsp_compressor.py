"""Compressor against the textbook static curve and its declared time constants."""
import math

import numpy as np
import pytest
import torch

from automix.dsp import compressor as comp

SR = 44100


def _textbook_gain_db(level_db, threshold_db, ratio, knee_db):
    """Static curve with soft knee (Giannoulis, Massberg & Reiss 2012, eq. 4), gain change in dB."""
    over = level_db - threshold_db
    if 2 * over < -knee_db:
        out = level_db
    elif knee_db > 0 and 2 * abs(over) <= knee_db:
        out = level_db + (1 / ratio - 1) * (over + knee_db / 2) ** 2 / (2 * knee_db)
    else:
        out = threshold_db + over / ratio
    return out - level_db


def _constant_level(level_db, n):
    """A signal whose instantaneous level is constant: +-A alternating, both channels."""
    a = 10 ** (level_db / 20)
    x = a * np.where(np.arange(n) % 2 == 0, 1.0, -1.0)
    return torch.from_numpy(np.stack([x, x]))


def _run(x, threshold_db=-20.0, ratio=4.0, attack_ms=1.0, release_ms=50.0, knee_db=6.0, makeup_db=0.0):
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    return comp.compress(x, t(threshold_db), t(ratio), t(attack_ms), t(release_ms), t(knee_db), t(makeup_db), SR)


@pytest.mark.parametrize("threshold_db,ratio,knee_db", [(-20.0, 4.0, 6.0), (-30.0, 10.0, 0.0), (-12.0, 2.0, 12.0)])
def test_steady_state_gain_follows_textbook_static_curve(threshold_db, ratio, knee_db):
    for level_db in np.arange(-50.0, 0.1, 2.5):
        x = _constant_level(level_db, 4410)
        y = _run(x, threshold_db, ratio, 0.5, 5.0, knee_db, makeup_db=2.0)
        measured = 20 * math.log10(abs(float(y[0, -1])) / abs(float(x[0, -1])))
        expected = _textbook_gain_db(level_db, threshold_db, ratio, knee_db) + 2.0
        assert measured == pytest.approx(expected, abs=0.5), level_db


@pytest.mark.parametrize("attack_ms,release_ms", [(5.0, 100.0), (20.0, 400.0)])
def test_attack_and_release_time_constants(attack_ms, release_ms):
    quiet, loud = _constant_level(-40.0, SR), _constant_level(-6.0, SR)
    x = torch.cat([quiet[:, :4410], loud, quiet], dim=-1)
    y = _run(x, threshold_db=-30.0, ratio=10.0, attack_ms=attack_ms, release_ms=release_ms, knee_db=0.0)
    gain_db = 20 * np.log10(np.abs(y[0].numpy()) / np.abs(x[0].numpy()))
    full = gain_db[4410 + SR - 1]  # settled gain reduction while loud
    assert full == pytest.approx(_textbook_gain_db(-6.0, -30.0, 10.0, 0.0), abs=0.1)
    attack = gain_db[4410:4410 + SR]
    n_attack = np.argmax(attack <= full * (1 - math.exp(-1)))
    assert n_attack / SR * 1000 == pytest.approx(attack_ms, rel=0.1)
    release = gain_db[4410 + SR:]
    n_release = np.argmax(release >= full * math.exp(-1))
    assert n_release / SR * 1000 == pytest.approx(release_ms, rel=0.1)


def test_smoother_matches_plain_recursion_and_carries_state():
    rng = np.random.default_rng(0)
    target = -np.abs(rng.standard_normal((3, 500))) * 10
    aa, ar = np.exp(-1 / (0.002 * SR)), np.exp(-1 / (0.05 * SR))
    ref = np.empty_like(target)
    for i in range(3):
        g = 0.0
        for n in range(500):
            a = aa if target[i, n] < g else ar
            g = a * g + (1 - a) * target[i, n]
            ref[i, n] = g
    t = torch.from_numpy(target)
    out = comp.smooth_gain(t, torch.tensor(2.0, dtype=torch.float64), torch.tensor(50.0, dtype=torch.float64), SR)
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-12)
    first, state = comp.smooth_gain(t[:, :200], torch.tensor(2.0), torch.tensor(50.0), SR, return_state=True)
    second = comp.smooth_gain(t[:, 200:], torch.tensor(2.0), torch.tensor(50.0), SR, state=state)
    np.testing.assert_allclose(torch.cat([first, second], -1).numpy(), ref, atol=1e-6)


def test_ratio_one_is_transparent_and_gradients_check():
    x = _constant_level(-3.0, 300) * torch.linspace(0.1, 1.0, 300, dtype=torch.float64)
    assert torch.equal(_run(x, ratio=1.0, knee_db=6.0), x)
    params = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (-20.0, 3.0, 0.3, 2.0, 30.0, 1.0)]
    xr = x[:, :120].clone().requires_grad_()
    proj = torch.randn(4, 2, 120, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    f = lambda x, *p: torch.einsum("kct,ct->k", proj, comp.compress(x, *p, 8000))  # noqa: E731
    assert torch.autograd.gradcheck(f, (xr, *params), eps=1e-6, atol=1e-6, rtol=1e-4)
