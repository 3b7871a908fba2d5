"""Raw-like stems (automix/raw_like.py), measured with independent tools (pyloudnorm, scipy)."""
from __future__ import annotations

import math

import numpy as np
import pyloudnorm
import pytest
import scipy.signal
import torch

from automix.errors import AudioError
from automix.loudness import short_term_loudness
from automix.raw_like import RawLike, crest_factor_db, make_raw_like

SR = 24000


def _tilted_noise(seconds: float, slope_db_per_octave: float, seed: int) -> np.ndarray:
    """White noise shaped in the frequency domain to a PSD slope of ``slope_db_per_octave``."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    spectrum = np.fft.rfft(rng.normal(size=n))
    f = np.fft.rfftfreq(n, 1 / SR)
    f[0] = f[1]
    spectrum *= (f / 1000.0) ** (slope_db_per_octave / 20.0 / math.log10(2.0))
    x = np.fft.irfft(spectrum, n)
    return x / np.sqrt(np.mean(x ** 2)) * 0.05


def _pan(mono: np.ndarray, pan: float) -> np.ndarray:
    theta = (pan + 1) * math.pi / 4
    return np.stack([mono * math.cos(theta), mono * math.sin(theta)]) * math.sqrt(2)


def _scipy_tilt(x: np.ndarray) -> float:
    """PSD slope (dB/octave) fitted on 1/6-octave points from 60 Hz to 8 kHz (scipy Welch)."""
    f, p = scipy.signal.welch(x, fs=SR, nperseg=8192, axis=-1)
    p = p.mean(axis=0)
    grid = 60.0 * 2 ** (np.arange(0, 42) / 6.0)
    level = [10 * np.log10(p[(f >= g * 2 ** (-1 / 12)) & (f <= g * 2 ** (1 / 12))].mean()) for g in grid]
    return float(np.polyfit(np.log2(grid), level, 1)[0])


def test_loudness_reaches_the_target_by_pyloudnorm():
    stems = np.stack([_pan(_tilted_noise(6, -3, 0), 0.3) * 0.2, _pan(_tilted_noise(6, -6, 1), -0.8) * 3.0,
                      _pan(_tilted_noise(6, 0, 2), 0.0)]).astype(np.float32)
    out = make_raw_like(stems, SR, settings=RawLike(stem_lufs=-20.0)).stems
    meter = pyloudnorm.Meter(SR)
    for y in out:
        assert abs(meter.integrated_loudness(y.T.astype(np.float64)) - (-20.0)) < 0.1


def test_panned_mono_is_centred_and_its_pan_recorded():
    source = _tilted_noise(5, -4, 3)
    stems = np.stack([_pan(source, 0.6), _pan(source, -0.35)]).astype(np.float32)
    result = make_raw_like(stems, SR)
    for y, record, pan in zip(result.stems, result.records, (0.6, -0.35)):
        balance_db = 10 * np.log10(np.sum(y[0].astype(np.float64) ** 2) / np.sum(y[1].astype(np.float64) ** 2))
        assert abs(balance_db) < 0.1
        assert record.panned_mono and abs(record.pan - pan) < 0.01
        assert np.corrcoef(y[0], y[1])[0, 1] > 0.9999


def test_stereo_stem_keeps_its_image_and_loses_its_placement():
    # nothing under 20 Hz, as in a recording (the sub-5 Hz part would steer the image's main direction)
    rumble_cut = scipy.signal.butter(4, 20.0, "highpass", fs=SR, output="sos")
    left, right = (scipy.signal.sosfiltfilt(rumble_cut, _tilted_noise(5, -4, seed)) for seed in (4, 5))
    right *= np.sqrt(np.sum(left ** 2) / np.sum(right ** 2))  # equal energy: centred
    image = np.stack([0.8 * left + 0.3 * right, 0.3 * left + 0.8 * right])
    settings = RawLike(tone_amount=0.0, dynamics_amount=0.0)
    # centred already: the stem only loses what lies under 5 Hz (its DC offset, zero phase)
    # and is brought to its loudness
    centred = make_raw_like(image[None].astype(np.float32), SR, settings=settings)
    y = centred.stems[0].astype(np.float64)
    heard = scipy.signal.sosfiltfilt(scipy.signal.butter(2, 5.0, "highpass", fs=SR, output="sos"), image)
    # (the high-pass moves the two channels' energies by a hair, so the image turns by a hair)
    np.testing.assert_allclose(y / np.abs(y).max(), heard / np.abs(heard).max(), atol=2e-3)
    # placed to the left: re-centred, its width around its own main direction kept
    placed = image * np.array([[1.6], [0.5]])
    eig = np.linalg.eigvalsh(placed @ placed.T)
    result = make_raw_like(placed[None].astype(np.float32), SR, settings=settings)
    y, record = result.stems[0].astype(np.float64), result.records[0]
    assert not record.panned_mono and record.pan < -0.3
    placed_heard = scipy.signal.sosfiltfilt(scipy.signal.butter(2, 5.0, "highpass", fs=SR, output="sos"), placed)
    assert abs(record.balance_db - 10 * np.log10(np.sum(placed_heard[0] ** 2) / np.sum(placed_heard[1] ** 2))) < 1e-4
    assert abs(10 * np.log10(np.sum(y[0] ** 2) / np.sum(y[1] ** 2))) < 0.1
    mid, side = (y[0] + y[1]) / 2, (y[0] - y[1]) / 2
    assert abs(10 * np.log10(np.sum(side ** 2) / np.sum(mid ** 2)) - 10 * np.log10(eig[0] / eig[1])) < 0.1


@pytest.mark.parametrize("amount", [0.5, 1.0])
def test_spectral_tilt_moves_by_the_declared_amount(amount):
    target = -4.5
    settings = RawLike(tone_amount=amount, tone_slope_db_per_octave=target, dynamics_amount=0.0)
    for slope in (-7.0, 1.0):  # within the bands the stage fits (TONE_FLOOR_DB)
        x = _pan(_tilted_noise(8, slope, 6), 0.0)[None].astype(np.float32)
        before = _scipy_tilt(x[0])
        y = make_raw_like(x, SR, settings=settings).stems[0]
        after = _scipy_tilt(y)
        expected = before + amount * (target - before)
        assert abs(after - expected) < 0.35, (slope, before, after, expected)


def test_levelling_shrinks_the_short_term_loudness_spread():
    # A stem with loud and quiet sections 12 dB apart (4 s each), measured with 3 s short-term loudness.
    noise = _tilted_noise(32, -4, 7)
    envelope = np.repeat([1.0, 0.25, 1.0, 0.25, 0.5, 1.0, 0.25, 0.5], 4 * SR)
    x = _pan(noise * envelope, 0.0)[None].astype(np.float32)

    def spread(s):
        lufs = short_term_loudness(s, SR)[1]
        return float(np.std(lufs[lufs > -70]))

    y = make_raw_like(x, SR, settings=RawLike(dynamics_amount=0.5, tone_amount=0.0)).stems[0]
    before, after = spread(x[0]), spread(y)
    assert before > 3.0
    assert 0.35 * before < after < 0.65 * before


def test_crest_factor_moves_toward_the_role_independent_target():
    rng = np.random.default_rng(8)
    n = 8 * SR
    spiky = np.zeros(n)  # decaying noise bursts: a drum-like stem with a high crest factor
    for start in range(0, n, SR // 2):
        m = min(SR // 4, n - start)
        spiky[start:start + m] = rng.normal(size=m) * np.exp(-np.arange(m) / (0.02 * SR))
    steady = _tilted_noise(8, -3, 9) * (1 + 0.1 * np.sin(np.arange(n) / SR * 2 * np.pi * 2))
    settings = RawLike(dynamics_amount=0.5, tone_amount=0.0, crest_db=18.0)
    for mono, share in ((spiky, 0.6), (steady, 0.8)):  # noise-like bursts: peaks inside the fast window stay
        x = _pan(mono, 0.0)[None].astype(np.float32)
        before = crest_factor_db(x[0], SR)
        after = crest_factor_db(make_raw_like(x, SR, settings=settings).stems[0], SR)
        goal = 18.0 + 0.5 * (before - 18.0)
        assert abs(before - 18.0) > 3.0
        moved = (before - after) / (before - goal)
        assert share < moved < 1.1, (before, after, goal)
        # the measure itself, by hand: median peak/RMS of the 400 ms blocks within 30 dB of the loudest
        blocks = [x[0][:, i:i + int(0.4 * SR)].astype(np.float64) for i in range(0, n - int(0.4 * SR) + 1, int(0.4 * SR))]
        rms = np.array([np.sqrt(np.mean(b ** 2)) for b in blocks])
        crest = [20 * np.log10(np.abs(b).max() / r) for b, r in zip(blocks, rms) if r >= rms.max() / 10 ** 1.5]
        assert abs(float(np.median(crest)) - before) < 1e-3


def test_output_is_time_aligned_and_the_same_length():
    rng = np.random.default_rng(10)
    clicks = np.zeros(4 * SR)
    clicks[rng.integers(1000, clicks.size - 1000, size=40)] = rng.uniform(0.3, 1.0, size=40)
    x = np.stack([_pan(clicks + 0.01 * _tilted_noise(4, -4, 11), 0.2),
                  _pan(_tilted_noise(4, -8, 12), 0.0)]).astype(np.float32)
    y = make_raw_like(x, SR)
    assert y.stems.shape == (2, 2, x.shape[-1])
    for a, b in zip(x, y.stems):
        ma, mb = a.mean(axis=0), b.mean(axis=0)
        xc = scipy.signal.correlate(mb, ma, mode="full", method="fft")
        lags = scipy.signal.correlation_lags(mb.size, ma.size, mode="full")
        assert lags[int(np.argmax(np.abs(xc)))] == 0


def test_dc_offset_is_removed_not_lifted_by_the_gains():
    # a quiet passage with an offset: the leveller lifts quiet passages, the offset must not go with it
    rng = np.random.default_rng(14)
    n = 8 * SR
    tone = np.sin(2 * np.pi * 220 * np.arange(n) / SR) * np.where(np.arange(n) < n // 2, 0.3, 0.01)
    x = _pan(tone + 0.01 * rng.normal(size=n) * 0.01 + 0.004, 0.0)[None].astype(np.float32)
    y = make_raw_like(x, SR).stems[0].astype(np.float64)
    rms = np.sqrt(np.mean(y ** 2))
    assert np.abs(y.mean(axis=-1)).max() < 0.005 * rms, (y.mean(axis=-1), rms)
    # and from the quiet half alone, where the offset was 40 % of the signal
    quiet = y[:, n // 2 + SR:]
    assert np.abs(quiet.mean(axis=-1)).max() < 0.02 * np.sqrt(np.mean(quiet ** 2))


def test_deterministic_torch_in_torch_out_mono_and_silent_stems():
    x = np.stack([_tilted_noise(3, -4, 13)[None], np.zeros((1, 3 * SR))]).astype(np.float32)
    a = make_raw_like(x, SR, roles=[8, 0])
    b = make_raw_like(torch.from_numpy(x), SR, roles=[8, 0])
    assert isinstance(b.stems, torch.Tensor) and b.stems.shape == (2, 2, 3 * SR)
    np.testing.assert_array_equal(a.stems, b.stems.numpy())
    assert a.records[0].role == 8 and a.records[1].silent
    assert not np.any(a.stems[1])


def test_bad_settings_and_shapes_are_typed_errors():
    with pytest.raises(AudioError):
        RawLike(tone_amount=1.5)
    with pytest.raises(AudioError):
        make_raw_like(np.zeros((2, 3, 100), np.float32), SR)
