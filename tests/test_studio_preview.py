"""The studio's preview renderer against the console's full-length render (automix.mixing.render):
the region rendered in pieces with pre-rolls is the same audio, and only changed stems are re-processed."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from automix.dsp.params import STRIP
from automix.mixing import Stems, render
from automix.studio.preview import PreviewRenderer, Region, channel_gains, preroll_seconds, region_around

SR = 44100


def song(seconds: float = 20.0) -> Stems:
    """Two stereo stems: a decaying 60 Hz pulse with noise (compressor work) and noise bursts."""
    rng = np.random.default_rng(1)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    pulse = 0.5 * np.exp(-8 * ((t * 2) % 1)) * np.sin(2 * np.pi * 60 * t) + 0.05 * rng.standard_normal(n)
    bursts = 0.3 * rng.standard_normal(n) * np.exp(-3 * ((t * 0.5) % 1))
    audio = np.stack([np.stack([pulse, 0.8 * pulse]), np.stack([bursts, np.roll(bursts, 11)])]).astype(np.float32)
    return Stems(["pulse.wav", "bursts.wav"], [], torch.from_numpy(audio), SR, [0, 0], [False, False], [n, n])


def strip(**changes) -> torch.Tensor:
    values = STRIP.to_dict(STRIP.neutral)
    values.update({k.replace("__", "."): v for k, v in changes.items()})
    return STRIP.from_dict(values)


EQ_ONLY = dict(eq__peak1__freq_hz=40.0, eq__peak1__gain_db=12.0, eq__peak1__q=10.0, eq__hpf__mix=1.0,
               eq__hpf__freq_hz=30.0, eq__high_shelf__gain_db=-6.0, gain_db=-3.0, pan=0.3)
SLOW_COMP = dict(EQ_ONLY, comp__threshold_db=-30.0, comp__ratio=8.0, comp__release_ms=1000.0, comp__attack_ms=30.0,
                 sat__drive_db=6.0, sat__mix=0.5)
FAST_COMP = dict(SLOW_COMP, comp__release_ms=60.0, comp__attack_ms=2.0, gain_db=2.0, pan=-0.7)


@pytest.mark.parametrize("settings", [(EQ_ONLY, FAST_COMP), (SLOW_COMP, EQ_ONLY)], ids=["eq+fast", "slow+eq"])
def test_region_equals_the_full_render(settings):
    stems = song(24.0)
    values = torch.stack([strip(**settings[0]), strip(**settings[1])])
    full, _ = render(stems, values)
    for centre_s in (3.0, 12.0, 23.0):  # at the start (no pre-roll there), in the middle, at the end
        region = region_around(centre_s, 8.0, stems.num_samples, SR)
        got = PreviewRenderer(stems.audio, SR, region).render(values)
        want = full.numpy()[:, region.start:region.stop]
        assert got.shape == want.shape
        assert np.max(np.abs(got - want)) < 1e-5 * np.max(np.abs(want))  # below -100 dB of the peak


def test_preroll_follows_the_compressor():
    assert preroll_seconds(strip(**EQ_ONLY)) == pytest.approx(1.5)
    assert preroll_seconds(strip(**SLOW_COMP)) == pytest.approx(1.5 + 10 * 1.0)
    assert preroll_seconds(strip(**FAST_COMP)) == pytest.approx(1.5 + 10 * 0.06)


def test_only_changed_stems_are_processed():
    stems = song()
    renderer = PreviewRenderer(stems.audio, SR, Region(SR * 5, SR * 15))
    values = torch.stack([strip(**EQ_ONLY), strip(**FAST_COMP)])
    renderer.render(values)
    assert renderer.renders == 2
    fader = values.clone()
    fader[0, STRIP.index("gain_db")] -= 6.0
    fader[1, STRIP.index("pan")] = 0.9
    renderer.render(fader)
    assert renderer.renders == 2  # fader and pan: nothing re-processed
    eq = fader.clone()
    eq[1, STRIP.index("eq.peak2.gain_db")] = 4.0
    renderer.render(eq)
    assert renderer.renders == 3  # one stem
    renderer.render(values)
    assert renderer.renders == 3  # back to the first settings: still cached
    neutral = STRIP.neutral.repeat(2, 1)
    assert np.array_equal(renderer.render(neutral), stems.audio.sum(dim=0).numpy()[:, SR * 5:SR * 15])
    assert renderer.renders == 3  # neutral strips are not processed at all


def test_mute_leaves_a_stem_out_and_gains_follow_the_pan_law():
    stems = song()
    values = torch.stack([strip(**EQ_ONLY), strip(**FAST_COMP)])
    renderer = PreviewRenderer(stems.audio, SR, Region(0, SR * 5))
    alone = renderer.render(values, [True, False])
    assert np.allclose(alone, renderer.stem(0, values[0]), atol=1e-7)
    g = channel_gains(values)
    theta = (0.3 + 1) * np.pi / 4  # the documented balance law for stereo stems, fader -3 dB
    assert g[0] == pytest.approx(10 ** (-3 / 20) * np.array([min(1, np.sqrt(2) * np.cos(theta)), 1.0]), rel=1e-6)
