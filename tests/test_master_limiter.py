"""True-peak limiter: the ceiling holds on adversarial signals, measured by the BS.1770 meter and by an
independent 8x polyphase meter (``scipy.signal.resample_poly``) on the written, quantised file."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from automix.loudness import integrated_loudness, true_peak_dbtp
from automix.mastering.limiter import detect_peaks, detected_true_peak_dbtp, limit_true_peak
from master_signals import dense_electronic, song

SR = 44100


def polyphase_peak_dbtp(x: np.ndarray, up: int = 8) -> float:
    """Independent true-peak meter: ``scipy.signal.resample_poly`` (``up`` x, its default Kaiser
    design), largest magnitude over channels, dBTP."""
    from scipy.signal import resample_poly

    peak = max(float(np.abs(resample_poly(np.asarray(c, dtype=np.float64), up, 1)).max()) for c in x)
    return 20 * np.log10(peak)


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
    if kind == "isp6":  # full-scale sine at fs/6 sampled 30 degrees off its crests: true peak +1.25 dB
        x = np.sin(2 * np.pi * SR / 6 * t + np.pi / 2 + np.pi / 6) / np.cos(np.pi / 6)
        return np.stack([x, -x]).astype(np.float32)
    if kind == "white0":  # white noise at 0 dBFS sample peak (Gaussian, clipped to full scale)
        return np.clip(rng.standard_normal((2, t.size)) / 3.0, -1.0, 1.0).astype(np.float32)
    if kind == "electronic":  # a dense, hot electronic master
        return dense_electronic(seconds, SR, level_db=-4.0)
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["square", "noise", "isp", "clicks", "hot_song"])
@pytest.mark.parametrize("ceiling", [-1.0, -0.1])
def test_ceiling_never_exceeded_on_adversarial_signals(kind, ceiling):
    x = _adversarial(kind)
    assert true_peak_dbtp(x, SR) > ceiling + 1.0  # the input really is over
    out = limit_true_peak(x, SR, ceiling)
    measured = true_peak_dbtp(out.samples, SR)
    assert measured <= ceiling
    assert out.true_peak_dbtp == pytest.approx(detected_true_peak_dbtp(out.samples))  # its own 8x reading
    assert out.true_peak_dbtp <= ceiling
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


def test_detector_reads_at_or_above_both_meters():
    """The limiter's 8x detector reads at or above the BS.1770 meter and an 8x resample_poly meter, up to
    their passband ripple (0.02 and 0.006 dB), and stays close to the latter on music."""
    for kind in ("square", "isp", "clicks", "noise", "hot_song"):
        x = _adversarial(kind)
        detected = 20 * np.log10(detect_peaks(x).max())
        assert detected >= true_peak_dbtp(x, SR) - 0.02
        assert detected >= polyphase_peak_dbtp(x) - 0.01
    x = song(1.5, SR, level_db=0.0)
    assert 20 * np.log10(detect_peaks(x).max()) == pytest.approx(polyphase_peak_dbtp(x), abs=0.05)


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
    assert landed.true_peak_dbtp == pytest.approx(detected_true_peak_dbtp(landed.samples))


HOSTILE = ["square", "isp", "isp6", "clicks", "white0", "noise", "electronic"]


@pytest.mark.parametrize("bits", ["16", "24", "32f"])
@pytest.mark.parametrize("ceiling", [-1.0, -0.3, -2.0])
def test_written_file_meets_the_ceiling_by_an_independent_meter(tmp_path, bits, ceiling):
    """Ceiling by any meter: every hostile signal, landed loud through the limiter and written the way
    ``automix master`` writes it (16-bit with TPDF dither, 24-bit, float), reads at or below the ceiling
    on an 8x resample_poly meter of the file read back -- and is really limited (within 0.5 dB)."""
    import soundfile as sf

    from automix.mastering.landing import land_loudness
    from automix.mastering.master import SUBTYPES, write_blocks

    for kind in HOSTILE:
        x = _adversarial(kind, 1.0)
        louder = integrated_loudness(x, SR) + 6.0 + (ceiling - true_peak_dbtp(x, SR))  # 6 dB into the limiter
        landed = land_loudness(x, SR, louder, ceiling_dbtp=ceiling, max_limiting_db=24.0)
        path = write_blocks(tmp_path / f"{kind}.wav", landed.samples, SR, subtype=SUBTYPES[bits],
                            rng=np.random.default_rng(0))
        written, rate = sf.read(str(path), dtype="float64", always_2d=True)
        measured = polyphase_peak_dbtp(written.T)
        assert measured <= ceiling, (kind, measured)
        assert measured > ceiling - 0.5, (kind, measured)
        assert landed.true_peak_dbtp <= ceiling


@settings(max_examples=15, deadline=None)
@given(kind=st.sampled_from(HOSTILE), gain_db=st.floats(0.0, 12.0), ceiling=st.sampled_from([-1.0, -0.3, -2.0]),
       bits=st.sampled_from(["16", "24", "32f"]), seed=st.integers(0, 2 ** 16))
def test_ceiling_property_independent_meter(tmp_path_factory, kind, gain_db, ceiling, bits, seed):
    """Property: hostile material at any extra gain, any of the three ceilings and output formats,
    limited by ``limit_true_peak`` and written with dither, stays under the ceiling on the 8x meter."""
    import soundfile as sf

    from automix.mastering.master import SUBTYPES, write_blocks

    x = _adversarial(kind, 0.5) * np.float32(10 ** (gain_db / 20))
    out = limit_true_peak(x, SR, ceiling)
    path = write_blocks(tmp_path_factory.mktemp("tp") / "out.wav", out.samples, SR, subtype=SUBTYPES[bits],
                        rng=np.random.default_rng(seed))
    written, _ = sf.read(str(path), dtype="float64", always_2d=True)
    assert polyphase_peak_dbtp(written.T) <= ceiling
