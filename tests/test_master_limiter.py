"""True-peak limiter: the ceiling holds on adversarial signals (measured by the BS.1770 meter)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from automix.loudness import integrated_loudness, true_peak_dbtp
from automix.mastering.limiter import detect_peaks, limit_true_peak
from master_signals import song

SR = 44100


def _adversarial(kind: str, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    rng = np.random.default_rng(1)
    if kind == "square":  # full-scale square wave: Gibbs overshoot between samples
        x = np.sign(np.sin(2 * np.pi * 441.0 * t + 0.1))
        return np.stack([x, -x]).astype(np.float32)
    if kind == "noise":  # full-scale white noise, +12 dB hot
        return (rng.uniform(-1, 1, (2, t.size)) * 4.0).astype(np.float32)
    if kind == "isp":  # sine at fs/4 sampled at +-45 degrees: true peak 3 dB above the samples
        x = np.sin(2 * np.pi * SR / 4 * t + np.pi / 4) / np.sin(np.pi / 4)
        return np.stack([x, x]).astype(np.float32)
    if kind == "clicks":  # isolated full-scale impulses, alternating sign (band-limited overshoot)
        x = np.zeros(t.size)
        x[::997] = 1.0
        x[1::997] = -1.0
        return np.stack([x, x]).astype(np.float32) * 2.0
    if kind == "hot_song":
        return song(1.5, SR, level_db=0.0)
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["square", "noise", "isp", "clicks", "hot_song"])
@pytest.mark.parametrize("ceiling", [-1.0, -0.1])
def test_ceiling_never_exceeded_on_adversarial_signals(kind, ceiling):
    x = _adversarial(kind)
    assert true_peak_dbtp(x, SR) > ceiling + 1.0  # the input really is over
    out = limit_true_peak(x, SR, ceiling)
    measured = true_peak_dbtp(out.samples, SR)
    assert measured <= ceiling
    assert out.true_peak_dbtp == pytest.approx(measured)
    assert measured > ceiling - 0.5  # and it does not simply turn everything down
    assert np.all(np.isfinite(out.samples))


@settings(max_examples=12, deadline=None)
@given(freq=st.floats(100.0, 20000.0), phase=st.floats(0.0, 6.28), gain_db=st.floats(0.0, 18.0),
       ceiling=st.floats(-6.0, 0.0))
def test_ceiling_property_random_sines(freq, phase, gain_db, ceiling):
    t = np.arange(SR // 4) / SR
    x = (np.sin(2 * np.pi * freq * t + phase) * 10 ** (gain_db / 20)).astype(np.float32)
    x = np.stack([x, np.roll(x, 7)])
    out = limit_true_peak(x, SR, ceiling)
    assert true_peak_dbtp(out.samples, SR) <= ceiling


def test_quiet_signal_untouched():
    x = song(1.0, SR, level_db=-30.0)
    out = limit_true_peak(x, SR, -1.0)
    assert out.passes == 0 and out.max_gain_reduction_db == 0.0
    np.testing.assert_array_equal(out.samples, x)


def test_gain_ramps_before_the_peak_and_releases():
    """Look-ahead: the gain is already down when a lone peak arrives, and recovers after it."""
    x = np.full((2, SR), 0.25, np.float32) * np.sin(2 * np.pi * 100 * np.arange(SR) / SR).astype(np.float32)
    peak_at = SR // 2
    x[:, peak_at] = 2.0
    out = limit_true_peak(x, SR, -1.0, lookahead_ms=5.0, release_ms=50.0)
    g = out.gain_db
    assert g[peak_at] <= -6.0 - 1.0 + 0.05  # 2.0 -> -1 dBTP needs >= 7 dB
    assert g[peak_at - int(0.003 * SR)] < -1.0  # ramping down 3 ms ahead
    assert g[peak_at - int(0.010 * SR)] == pytest.approx(0.0, abs=1e-6)  # untouched before the look-ahead
    assert g[peak_at + int(0.45 * SR)] > -0.1  # released after 9 time constants
    assert np.all(np.abs(np.diff(g)) < 3.0)  # no steps (no clicks)


def test_detector_matches_meter():
    """The limiter's detector reads the same true peak as the BS.1770 meter (within 0.2 dB)."""
    for kind in ("square", "isp", "hot_song"):
        x = _adversarial(kind)
        detected = 20 * np.log10(detect_peaks(x).max())
        assert detected == pytest.approx(true_peak_dbtp(x, SR), abs=0.2)


@settings(max_examples=10, deadline=None)
@given(block=st.integers(64, 6000), offset=st.integers(-3, 3), gain_db=st.floats(0.0, 18.0),
       ceiling=st.floats(-3.0, -0.1))
def test_ceiling_holds_across_block_boundaries(block, offset, gain_db, ceiling):
    """Block-wise limiting (detector ahead of the block, release state carried, in place) equals the
    whole-signal gain, and the landing in small blocks keeps the true peak at the ceiling even when
    full-scale clicks sit right at the block boundaries of an inter-sample-peak sine."""
    from unittest import mock

    from automix.mastering import landing, profile
    from automix.mastering.limiter import gain_from_peaks, limit_blocks

    x = _adversarial("isp", 1.0) * np.float32(0.5)
    edges = np.arange(block, x.shape[1] - 8, block) + offset
    x[:, edges] = 1.0
    x[:, edges + 1] = -1.0
    level = 10 ** (gain_db / 20)
    whole = x * (gain_from_peaks(detect_peaks(x), SR, ceiling, level=level) * np.float32(level))
    out = x.copy()
    limit_blocks(out, out, SR, ceiling, level=level, block=block)
    assert np.max(np.abs(out - whole)) < 1e-5
    with mock.patch.object(profile, "BLOCK_FRAMES", block), mock.patch.object(landing, "PEAK_CACHE_FRAMES", 0):
        landed = landing.land_loudness(x.copy(), SR, -8.0, ceiling_dbtp=ceiling, max_limiting_db=20.0, in_place=True)
    assert true_peak_dbtp(landed.samples, SR) <= ceiling
    assert landed.true_peak_dbtp == pytest.approx(true_peak_dbtp(landed.samples, SR))
