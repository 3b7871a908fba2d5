"""The loudness stage for loud targets (soft clipper + true-peak limiter), its distortion budget, and the
non-linear residual measure that scores it (checked against closed forms and independent filters)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import butter, resample_poly, sosfilt

from automix.loudness import integrated_loudness
from automix.mastering.distortion import gain_residual, nonlinear_residual
from automix.mastering.landing import land_loudness
from master_signals import dense_electronic, song

SR = 44100


def _polyphase_peak_dbtp(x: np.ndarray) -> float:
    return 20 * np.log10(max(float(np.abs(resample_poly(c.astype(np.float64), 8, 1)).max()) for c in x))


def test_residual_of_a_linear_chain_is_tiny():
    """EQ (scipy IIR), mid/side width, a 37-sample delay and gain are LTI: the fit explains them."""
    x = song(6.0, SR, seed=3, level_db=-18.0).astype(np.float64)
    sos = butter(2, [300, 4000], btype="bandpass", fs=SR, output="sos")
    mid, side = (x[0] + x[1]) / 2, (x[0] - x[1]) / 2
    mid = mid + 0.5 * sosfilt(sos, mid)
    side = 1.5 * side
    y = np.stack([mid + side, mid - side]) * 0.7
    y = np.concatenate([np.zeros((2, 37)), y[:, :-37]], axis=1)
    r = nonlinear_residual(x, y, SR)
    assert r.overall_db < -45.0 and r.loud_db < -45.0


def test_residual_of_a_memoryless_clipper_matches_bussgang():
    """tanh on Gaussian noise: the best linear fit is the Bussgang gain, residual 1 - rho^2 (closed form
    computed here from the samples); the FIR fit can do no better on white input."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, SR * 4))
    y = np.tanh(1.5 * x)
    gain = (x * y).sum() / (x * x).sum()
    expected = 10 * np.log10(((y - gain * x) ** 2).sum() / (y ** 2).sum())
    r = nonlinear_residual(x, y, SR)
    assert r.overall_db == pytest.approx(expected, abs=0.3)
    assert gain_residual(x, y, SR).overall_db == pytest.approx(expected, abs=0.01)


def test_clipper_stage_reaches_loud_targets_cleaner_than_the_limiter_alone():
    """A dense mix 14 LU below the target: with the clipper the landing reaches -8 LUFS within 0.1 LU,
    under the ceiling by an independent 8x meter (the limiter alone cannot get there with 24 dB of gain
    reduction), and at a loudness both reach (-10 LUFS) it leaves less non-linear residual."""
    x = dense_electronic(6.0, SR, level_db=-22.0)
    assert integrated_loudness(x, SR) < -18.0
    loud = land_loudness(x, SR, -8.0, ceiling_dbtp=-1.0, max_limiting_db=24.0, clip_db=0.0)
    assert loud.reached and abs(integrated_loudness(loud.samples, SR) - (-8.0)) <= 0.1
    assert _polyphase_peak_dbtp(loud.samples) <= -1.0
    assert not land_loudness(x, SR, -8.0, ceiling_dbtp=-1.0, max_limiting_db=24.0).reached
    clipped = land_loudness(x, SR, -10.0, ceiling_dbtp=-1.0, max_limiting_db=24.0, clip_db=0.0)
    limited = land_loudness(x, SR, -10.0, ceiling_dbtp=-1.0, max_limiting_db=24.0)
    for landed in (clipped, limited):
        assert abs(integrated_loudness(landed.samples, SR) - (-10.0)) <= 0.1
        assert _polyphase_peak_dbtp(landed.samples) <= -1.0
    a = nonlinear_residual(x, clipped.samples, SR)
    b = nonlinear_residual(x, limited.samples, SR)
    assert a.loud_db < b.loud_db - 2.0 and a.overall_db < b.overall_db - 2.0
    assert clipped.distortion is not None and clipped.distortion.loud_db >= a.loud_db - 0.5  # an upper bound


def test_distortion_budget_stops_short_with_one_line():
    """An absurd target: the landing stops where the loudness stage meets the budget and says how loud it
    got, what was asked, what the rest would cost and which flag goes further."""
    x = song(6.0, SR, seed=4, level_db=-24.0)
    landed = land_loudness(x, SR, -3.0, ceiling_dbtp=-1.0, max_limiting_db=24.0, clip_db=0.0,
                           max_distortion_db=-14.0)
    assert not landed.reached
    lufs = integrated_loudness(landed.samples, SR)
    assert lufs < -4.0 and landed.integrated_lufs == pytest.approx(lufs, abs=1e-6)
    assert landed.distortion.loud_db <= -14.0 + 0.05
    assert landed.asked_distortion.loud_db > -14.0
    (line,) = [w for w in landed.warnings if "asked" in w]
    assert "\n" not in line and f"{lufs:.1f} LUFS" in line and "-3.0 LUFS asked" in line
    assert "--max-distortion" in line
    # within the budget nothing stops: the same mix to a sensible loud target lands
    ok = land_loudness(x, SR, -10.0, ceiling_dbtp=-1.0, max_limiting_db=24.0, clip_db=0.0,
                       max_distortion_db=-10.0)
    assert ok.reached and abs(integrated_loudness(ok.samples, SR) - (-10.0)) <= 0.1
