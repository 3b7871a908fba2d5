"""The loudness landing's tries on an excerpt (automix.mastering.subset) and the final render's shortcuts
(clipped envelope from the input's, ceiling verified by a gain-change bound), checked against whole
renders, the limiter's own detector and an independent 8x ``resample_poly`` meter and pyloudnorm."""
from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest
from scipy.signal import resample_poly

from automix.loudness import gated_integrated, integrated_loudness
from automix.mastering.distortion import gain_residual
from automix.mastering.landing import FLOOR_SHARE, LevelModel, _Stage, land_loudness
from automix.mastering.limiter import (BOUND_BLOCK, _block_stats, bounded_peak_dbtp, detect_peaks,
                                       detected_true_peak_dbtp, limit_blocks)
from automix.mastering.report import loudness_stage_dict
from automix.mastering.subset import MAX_SHARE, Excerpt
from master_signals import dense_electronic, song

SR = 44100
CEILING = -1.0


def _polyphase_peak_dbtp(x: np.ndarray) -> float:
    return 20 * np.log10(max(float(np.abs(resample_poly(c.astype(np.float64), 8, 1)).max()) for c in x))


@pytest.fixture(scope="module")
def sections() -> np.ndarray:
    """60 s in four sections of different loudness and texture (intro, drop, breakdown, louder drop)."""
    parts = [song(15.0, SR, seed=21, level_db=-27.0), dense_electronic(20.0, SR, seed=22, level_db=-21.0),
             song(10.0, SR, seed=23, level_db=-31.0, bright=1.6), dense_electronic(15.0, SR, seed=24, level_db=-18.0)]
    return np.ascontiguousarray(np.concatenate(parts, axis=1))


def test_excerpt_covers_the_loudest_blocks_and_stays_short(sections):
    model = LevelModel(sections, SR)
    excerpt = Excerpt(sections, model.hop)
    assert excerpt.worth_it and excerpt.share <= MAX_SHARE
    block = 4 * model.hop
    energy = (sections[:, : (sections.shape[-1] // block) * block].astype(np.float64) ** 2).reshape(
        2, -1, block).sum(axis=(0, 2))
    loudest = set(np.argsort(energy)[::-1][: int(np.ceil(0.2 * energy.size))].tolist())
    kept = {int(h) // 4 for h in excerpt.hop_index}
    assert loudest <= kept
    # the kept samples are the signal's own (the fades are in the rolls)
    for (k0, k1), (_, s, e, _) in zip(excerpt.kept, excerpt.segments):
        assert np.array_equal(excerpt.samples[:, k0:k1], sections[:, s:e])


def test_excerpt_trial_predicts_the_whole_render(sections):
    """At one drive into clipper + limiter, the excerpt's prediction of the whole signal's loudness and of
    its residual in the loudest blocks matches a render of the whole signal."""
    model = LevelModel(sections, SR)
    model.detect(0.9 * 10 ** (CEILING / 20) / 10 ** (20 / 20))
    excerpt = Excerpt(sections, model.hop)
    stage = _Stage(SR, CEILING, 5.0, 150.0, 10 ** (CEILING / 20), 1.0)
    drive = 11.0
    excerpt.fit_features(*model.hop_features())
    stage.render_excerpt(excerpt, drive, model)
    measured = excerpt.kept_hop_energies(excerpt.out, SR)
    predicted = gated_integrated(excerpt.predict(model.hop_energies(drive, model.gain(drive, CEILING)), measured),
                                 model.hop)
    _, loud = excerpt.residual(excerpt.out)
    out = np.empty_like(sections)
    lufs, tp, _ = stage.render(sections, out, drive, model)
    assert abs(lufs - integrated_loudness(sections * 10 ** (drive / 20), SR)) > 1.0  # the stage took loudness
    assert predicted == pytest.approx(lufs, abs=0.1)
    assert loud == pytest.approx(gain_residual(sections, out, SR).loud_db, abs=0.5)
    assert tp <= CEILING and _polyphase_peak_dbtp(out) <= CEILING


def test_landing_on_an_excerpt_renders_the_whole_once_or_twice(sections):
    target = -9.0
    landed = land_loudness(sections, SR, target, ceiling_dbtp=CEILING, max_limiting_db=12.0, clip_db=0.0)
    assert landed.excerpt_share is not None and landed.excerpt_share <= MAX_SHARE
    assert landed.renders <= 2
    assert landed.reached
    assert abs(integrated_loudness(landed.samples, SR) - target) <= 0.1
    meter = pyloudnorm.Meter(SR)
    assert abs(meter.integrated_loudness(landed.samples.T.astype(np.float64)) - target) <= 0.1
    assert landed.integrated_lufs == pytest.approx(integrated_loudness(landed.samples, SR), abs=1e-6)
    # the reported true peak is the limiter detector's reading; the ceiling holds on an independent meter
    assert landed.true_peak_dbtp == pytest.approx(detected_true_peak_dbtp(landed.samples), abs=0.01)
    assert landed.true_peak_dbtp <= CEILING and _polyphase_peak_dbtp(landed.samples) <= CEILING
    assert landed.distortion is not None
    assert landed.distortion.loud_db == pytest.approx(gain_residual(sections, landed.samples, SR).loud_db, abs=1e-6)
    stage = loudness_stage_dict(landed)  # the report JSON's figures
    assert stage["full_renders"] == landed.renders and 0 < stage["excerpt_share"] <= MAX_SHARE


def test_distortion_budget_on_an_excerpt_stops_with_one_line(sections):
    landed = land_loudness(sections, SR, -5.0, ceiling_dbtp=CEILING, max_limiting_db=24.0, clip_db=0.0,
                           max_distortion_db=-14.0)
    assert landed.excerpt_share is not None and not landed.reached
    measured = gain_residual(sections, landed.samples, SR).loud_db
    assert measured <= -14.0 + 0.05 and measured >= -14.0 - 1.5  # stopped near the budget, not far below it
    assert landed.asked_distortion.loud_db > -14.0
    (line,) = [w for w in landed.warnings if "asked" in w]
    assert "\n" not in line and f"{integrated_loudness(landed.samples, SR):.1f} LUFS" in line
    assert _polyphase_peak_dbtp(landed.samples) <= CEILING


def test_clipped_envelope_equals_detecting_the_clipped_signal(sections):
    """Below the clipper's knee the clipped signal is the driven input, so its envelope is the input's times
    the drive; around bent samples it is detected: equal to detecting the clipped signal, above the floor."""
    x = np.ascontiguousarray(sections[:, 15 * SR: 35 * SR])  # the first drop
    drive = 10 ** (16.0 / 20)
    ceiling = 10 ** (CEILING / 20)
    floor = FLOOR_SHARE * ceiling
    peaks = detect_peaks(x, floor / drive)
    stage = _Stage(SR, CEILING, 5.0, 150.0, ceiling, 1.0)
    out = np.empty_like(x)
    stats = np.empty((3, -(-x.shape[-1] // BOUND_BLOCK)), np.float32)
    _, envelope = stage._clip_limit(x, out, drive, peaks, stats=stats)
    clipped = np.empty_like(x)
    from automix.mastering.clipper import soft_clip
    soft_clip(x, ceiling, knee_db=1.0, gain=drive, out=clipped)
    exact = detect_peaks(clipped, 0.0)
    sel = exact >= floor
    assert sel.mean() > 0.01  # the test drives hard enough to clip
    assert np.allclose(envelope[sel], exact[sel], rtol=2e-6, atol=0)
    assert np.all(envelope[~sel] < floor * (1 + 2e-6))


def test_gain_change_bound_is_an_upper_bound_of_the_detector(sections):
    """The bound-based true peak of a limiter's output is at or above the detector's reading of the output,
    and its report reading within 0.01 dB of it, while only a few blocks are detected."""
    x = sections[:, 20 * SR: 40 * SR] * np.float32(10 ** (12 / 20))  # the drop, 12 dB over: hard limiting
    ceiling = 10 ** (CEILING / 20)
    floor = FLOOR_SHARE * ceiling
    envelope = detect_peaks(x, floor)
    y = np.empty_like(x)
    stats = np.empty((3, -(-x.shape[-1] // BOUND_BLOCK)), np.float32)
    limit_blocks(x, y, SR, CEILING, 5.0, 150.0, peaks=envelope, stats=stats)
    held, reading = bounded_peak_dbtp(y, envelope, stats, CEILING, floor)
    exact = detected_true_peak_dbtp(y)
    assert held >= exact - 1e-6 and held <= CEILING
    assert reading == pytest.approx(exact, abs=0.01)
    assert _polyphase_peak_dbtp(y) <= CEILING
    # the gain statistics are those of the gain actually applied
    gain = np.where(np.abs(x) > 1e-9, y / np.where(np.abs(x) > 1e-9, x, 1), np.nan)
    applied = np.nanmin(gain, axis=0)
    blocks_min = _block_stats(np.nan_to_num(applied, nan=1.0), BOUND_BLOCK, np.minimum)
    assert np.all(stats[1] <= blocks_min + 1e-5)
