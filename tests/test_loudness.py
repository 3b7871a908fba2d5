"""Metering against independent references: pyloudnorm, scipy.signal, numpy formulas."""
import json
import math

import numpy as np
import pyloudnorm as pyln
import pytest
import scipy.signal as ss

from automix import loudness as L

SR = 44100


def _pyln_integrated(x, sr):
    return pyln.Meter(sr).integrated_loudness(x.T.astype(np.float64))


def _pyln_k_weighted(x, sr):
    """K-weighted signal through pyloudnorm's own filter code (float64 lfilter)."""
    meter = pyln.Meter(sr)
    y = x.astype(np.float64).copy()
    for stage in meter._filters.values():
        y = np.stack([stage.apply_filter(c) for c in y])
    return y


def _with_quiet_passage(x, sr):
    x = x.copy()
    x[:, int(0.3 * x.shape[1]): int(0.5 * x.shape[1])] *= 0.05  # -26 dB: exercises the relative gate
    return x


@pytest.mark.parametrize("sr", [44100, 48000, 22050])
def test_integrated_loudness_matches_pyloudnorm(make_song, make_pink_noise, sr):
    for x in (make_song(3.0, sample_rate=sr), _with_quiet_passage(make_pink_noise(4.0, sample_rate=sr), sr)):
        assert L.integrated_loudness(x, sr) == pytest.approx(_pyln_integrated(x, sr), abs=0.05)
    mono = make_pink_noise(2.0, sample_rate=sr, channels=1)
    assert L.integrated_loudness(mono, sr) == pytest.approx(_pyln_integrated(mono[0], sr), abs=0.05)


def test_integrated_loudness_of_reference_sine(make_sine):
    # BS.1770: a 0 dBFS 997 Hz sine in one channel reads -3.01 LKFS (pyloudnorm's
    # filter design, which we share, reads -3.05: within the standard's +-0.1 LU)
    x = make_sine(997, 2.0, amplitude=1.0, channels=1)
    assert L.integrated_loudness(x, SR) == pytest.approx(-3.01, abs=0.06)
    # and each -20 dB of level is -20 LU
    assert L.integrated_loudness(x * 0.1, SR) == pytest.approx(L.integrated_loudness(x, SR) - 20, abs=0.001)


def test_silence_and_too_short():
    assert L.integrated_loudness(np.zeros((2, SR)), SR) == -math.inf
    assert math.isnan(L.integrated_loudness(np.full((2, SR // 5), 0.1), SR))


def test_momentary_and_short_term_against_direct_window_means(make_song):
    x = make_song(7.0)
    x[:, 3 * SR:] *= 0.3  # level change inside the song
    y = _pyln_k_weighted(x, SR)
    for func, window_s in ((L.momentary_loudness, 0.4), (L.short_term_loudness, 3.0)):
        times, lufs = func(x, SR)
        assert np.all(np.diff(times) == pytest.approx(0.1))
        assert times[0] == pytest.approx(window_s)
        for i in (0, 7, len(times) // 2, len(times) - 1):
            end = int(round(times[i] * SR))
            start = end - int(round(window_s * SR))
            ms = np.sum(np.mean(y[:, start:end] ** 2, axis=1))  # textbook BS.1770 block loudness
            assert lufs[i] == pytest.approx(-0.691 + 10 * np.log10(ms), abs=0.01)


def test_loudness_range_against_pyloudnorm_and_ebu_3342(make_pink_noise, make_sine):
    sr = 8000  # LRA depends on level changes only; a low rate keeps this fast
    steps = [make_pink_noise(8.0, rms=r, sample_rate=sr, seed=i) for i, r in enumerate((0.1, 0.03, 0.2, 0.05))]
    x = np.concatenate(steps, axis=1)
    ours = L.loudness_range(x, sr)
    assert ours == pytest.approx(pyln.Meter(sr).loudness_range(x.T.astype(np.float64)), abs=0.5)
    # EBU Tech 3342 test signals: 1 kHz stereo sine, 20 s at -20 dBFS then 20 s at -30 dBFS: 10 +-1 LU
    a = make_sine(1000, 20.0, amplitude=10 ** (-20 / 20), sample_rate=sr)
    b = make_sine(1000, 20.0, amplitude=10 ** (-30 / 20), sample_rate=sr)
    assert L.loudness_range(np.concatenate([a, b], axis=1), sr) == pytest.approx(10.0, abs=1.0)
    c = make_sine(1000, 20.0, amplitude=10 ** (-15 / 20), sample_rate=sr)
    assert L.loudness_range(np.concatenate([a, c], axis=1), sr) == pytest.approx(5.0, abs=1.0)
    assert math.isnan(L.loudness_range(a[:, : 2 * sr], sr))  # shorter than one 3 s window


def _faded(x, fade_s=0.01):
    """Short raised-cosine fades, so that the abrupt start/end does not ring (Gibbs)."""
    n = int(fade_s * SR)
    ramp = (0.5 - 0.5 * np.cos(np.pi * np.arange(n) / n)).astype(np.float32)
    x = x.copy()
    x[:, :n] *= ramp
    x[:, -n:] *= ramp[::-1]
    return x


def test_true_peak_inter_sample_fs4_sine_at_45_degrees(make_sine):
    x = _faded(make_sine(SR / 4, 0.5, amplitude=0.5, phase_rad=np.pi / 4))
    assert L.sample_peak_db(x) == pytest.approx(20 * np.log10(0.5) - 3.0103, abs=1e-3)
    assert L.true_peak_dbtp(x, SR) == pytest.approx(20 * np.log10(0.5), abs=0.01)
    reference = np.abs(ss.resample_poly(x[0].astype(np.float64), 4, 1)).max()
    assert L.true_peak_dbtp(x, SR) == pytest.approx(20 * np.log10(reference), abs=0.03)
    assert L.true_peak_dbtp(x, SR) - L.sample_peak_db(x) == pytest.approx(3.01, abs=0.02)


@pytest.mark.parametrize("freq", [100.0, 1000.0, 5000.0, 9000.0])
def test_true_peak_of_sines_is_their_amplitude(make_sine, freq):
    rng = np.random.default_rng(int(freq))
    amplitude = 0.7
    x = _faded(make_sine(freq, 0.3, amplitude=amplitude, phase_rad=rng.uniform(0, 2 * np.pi)))
    assert L.true_peak_dbtp(x, SR) == pytest.approx(20 * np.log10(amplitude), abs=0.05)
    assert L.sample_peak_db(x) <= L.true_peak_dbtp(x, SR)


def test_true_peak_sees_the_overshoot_of_an_abrupt_start(make_sine):
    # a file that starts mid-waveform rings on playback; the meter treats the signal as
    # silent outside the file, like a DAC. Reference: ideal band-limited (FFT) 16x
    # interpolation of the zero-padded signal.
    x = make_sine(9000, 0.1, amplitude=0.7, phase_rad=1.0)
    padded = np.pad(x[0].astype(np.float64), 20000)
    ideal = np.abs(ss.resample(padded, 16 * len(padded))).max()
    assert ideal > 0.7 * 1.01
    assert L.true_peak_dbtp(x, SR) == pytest.approx(20 * np.log10(ideal), abs=0.1)
    assert L.true_peak_dbtp(x, SR) > 20 * np.log10(0.7)


def test_true_peak_matches_scipy_resample_poly_on_music_and_noise(make_song, make_noise):
    rng = np.random.default_rng(5)
    for x in (make_song(2.0), make_noise(0.5)):
        reference = np.abs(ss.resample_poly(x.astype(np.float64), 4, 1, axis=1)).max()
        assert L.true_peak_dbtp(x, SR) == pytest.approx(20 * np.log10(reference), abs=0.1)
    # a single loud inter-sample burst hidden in a long quiet signal, near the end
    x = (rng.standard_normal((2, 5 * SR)) * 0.01).astype(np.float32)
    burst = (0.9 * np.sin(np.pi / 2 * np.arange(64) + np.pi / 4)).astype(np.float32)
    x[1, -200:-136] = burst
    reference = np.abs(ss.resample_poly(x.astype(np.float64), 4, 1, axis=1)).max()
    assert L.true_peak_dbtp(x, SR) == pytest.approx(20 * np.log10(reference), abs=0.1)
    assert L.true_peak_dbtp(x, SR) - L.sample_peak_db(x) > 2.5


def test_third_octave_spectrum_sine_lands_in_its_band(make_sine):
    freqs, level = L.third_octave_spectrum(make_sine(1000, 2.0, amplitude=0.5), SR)
    assert len(freqs) == len(L.THIRD_OCTAVE_NOMINAL_HZ)  # 20 Hz .. 20 kHz at 44.1 kHz
    k = int(np.argmin(np.abs(freqs - 1000)))
    assert level[k] == pytest.approx(20 * np.log10(0.5 / np.sqrt(2)), abs=0.05)  # mean square of the sine
    others = np.delete(level, [k - 1, k, k + 1])
    assert others.max() < level[k] - 60


def test_third_octave_spectrum_of_white_and_pink_noise(make_noise, make_pink_noise):
    freqs, white = L.third_octave_spectrum(make_noise(3.0, rms=0.1), SR)
    band = (freqs > 90) & (freqs < 12000)
    slope = np.polyfit(np.log2(freqs[band]) * 3, white[band], 1)[0]
    assert slope == pytest.approx(10 * np.log10(2 ** (1 / 3)), abs=0.1)  # +1 dB per band (power ~ bandwidth)
    # Parseval: the bands add up to the signal's mean square (white noise: the bands
    # cover 17.8 Hz .. Nyquist, i.e. all but 0.08 % of the power)
    x = make_noise(3.0, rms=0.1)
    assert 10 * np.log10(np.sum(10 ** (white / 10))) == pytest.approx(10 * np.log10(np.mean(x.astype(np.float64) ** 2)), abs=0.05)
    freqs, pink = L.third_octave_spectrum(make_pink_noise(3.0), SR)
    band = (freqs > 40) & (freqs < 16000)
    assert np.polyfit(np.log2(freqs[band]) * 3, pink[band], 1)[0] == pytest.approx(0.0, abs=0.1)
    assert np.ptp(pink[band]) < 2.0


def test_stereo_measures_against_numpy_formulas(make_noise):
    x = make_noise(1.0)
    left, right = x.astype(np.float64)
    expected = np.sum(left * right) / np.sqrt(np.sum(left**2) * np.sum(right**2))
    assert L.stereo_correlation(x) == pytest.approx(expected, abs=1e-6)
    assert L.stereo_correlation(np.stack([x[0], x[0]])) == pytest.approx(1.0)
    assert L.stereo_correlation(np.stack([x[0], -x[0]])) == pytest.approx(-1.0)
    mixed = np.stack([x[0], 0.5 * x[0] + x[1]])
    mid, side = (mixed[0] + mixed[1]) / 2, (mixed[0] - mixed[1]) / 2
    assert L.side_mid_ratio_db(mixed) == pytest.approx(10 * np.log10(np.sum(side**2) / np.sum(mid**2)), abs=1e-4)
    assert L.side_mid_ratio_db(np.stack([x[0], x[0]])) == -math.inf
    near_mono = np.stack([x[0], x[0] + 1e-4 * x[1]])  # no cancellation error
    assert L.side_mid_ratio_db(near_mono) == pytest.approx(20 * np.log10(1e-4 / 2) + 0.0, abs=0.2)
    assert math.isnan(L.stereo_correlation(x[:1]))


def test_analyze_reports_every_metric_consistently(make_song):
    x = make_song(4.0)
    m = L.analyze(x, SR)
    x64 = x.astype(np.float64)
    assert m.integrated_lufs == pytest.approx(_pyln_integrated(x, SR), abs=0.05)
    assert m.sample_peak_dbfs == pytest.approx(20 * np.log10(np.abs(x64).max()), abs=1e-4)
    assert m.true_peak_dbtp >= m.sample_peak_dbfs
    assert m.plr_db == pytest.approx(m.true_peak_dbtp - m.integrated_lufs)
    rms = 10 * np.log10(np.mean(x64**2))
    assert m.rms_dbfs == pytest.approx(rms, abs=1e-3)
    assert m.crest_factor_db == pytest.approx(m.sample_peak_dbfs - rms, abs=1e-3)
    np.testing.assert_allclose(m.dc_offset, x64.mean(axis=1), atol=1e-7)
    assert m.clipped_samples == 0 and m.warnings == []
    assert m.max_momentary_lufs >= m.max_short_term_lufs - 0.5
    assert m.max_short_term_lufs == pytest.approx(L.short_term_loudness(x, SR)[1].max())
    assert len(m.short_term_times_s) == len(m.short_term_lufs) == 11
    text = "\n".join(m.table())
    for label in ("Integrated loudness", "LUFS", "True peak", "dBTP", "Loudness range", "LU", "Crest factor"):
        assert label in text
    assert json.loads(json.dumps(m.to_dict(), allow_nan=False))["integrated_lufs"] == pytest.approx(m.integrated_lufs)


def test_analyze_warns_like_a_mastering_engineer(make_noise, make_sine):
    clipped = np.clip(make_sine(440, 1.0, amplitude=1.3), -1.0, 1.0)
    m = L.analyze(clipped, SR)
    assert m.clipped_samples == int(np.sum(np.abs(clipped) >= 1.0 - 2.0**-15))
    assert any("clipping" in w for w in m.warnings)
    assert any("true peak" in w and "-1 dBTP" in w for w in m.warnings)
    dc = make_noise(1.0) + np.float32(0.01)
    m = L.analyze(dc, SR)
    assert m.dc_offset == pytest.approx([0.01, 0.01], abs=5e-4)
    assert sum("DC offset" in w for w in m.warnings) == 2
    x = make_noise(1.0, rms=0.05)
    anti = np.stack([x[0], -0.8 * x[0] + 0.1 * x[1]])
    m = L.analyze(anti, SR)
    assert m.correlation < -0.9 and any("mono" in w for w in m.warnings)
    quiet = L.analyze(make_noise(1.0, rms=0.01), SR)
    assert quiet.warnings == []


def test_analyze_mono_and_short_signals(make_sine):
    m = L.analyze(make_sine(997, 1.0, amplitude=1.0, channels=1) * 0.5, SR)
    assert m.channels == 1 and math.isnan(m.correlation) and math.isnan(m.side_mid_ratio_db)
    assert m.integrated_lufs == pytest.approx(-3.01 - 6.02, abs=0.06)
    short = L.analyze(make_sine(997, 0.2), SR)
    assert math.isnan(short.integrated_lufs) and math.isnan(short.loudness_range_lu)
    assert any("shorter than 0.4 s" in w for w in short.warnings)
    d = short.to_dict()
    assert d["integrated_lufs"] is None and d["loudness_range_lu"] is None
    assert "n/a" in "\n".join(short.table())


def test_k_weighting_matches_pyloudnorm_and_the_standard():
    for sr in (44100, 48000, 96000):
        meter = pyln.Meter(sr)
        stages = list(meter._filters.values())  # high shelf, high pass
        ours = L.k_weighting_sos(sr)
        for section, stage in zip(ours, stages):
            np.testing.assert_allclose(section, np.concatenate([stage.b, stage.a]) / stage.a[0], rtol=1e-12)
    # BS.1770-4 Table 1 / 2: the 48 kHz K-weighting coefficients
    itu = np.array([[1.53512485958697, -2.69169618940638, 1.19839281085285, 1.0, -1.69065929318241, 0.73248077421585],
                    [1.0, -2.0, 1.0, 1.0, -1.99004745483398, 0.99007225036621]])
    freqs = np.geomspace(20, 20000, 200)
    _, ours = ss.sosfreqz(L.k_weighting_sos(48000), worN=freqs, fs=48000)
    _, ref = ss.sosfreqz(itu, worN=freqs, fs=48000)
    assert np.max(np.abs(20 * np.log10(np.abs(ours) / np.abs(ref)))) < 0.1


def test_analyze_threads_agree_and_nan_is_refused(make_song):
    x = make_song(3.5)
    serial, threaded = L.analyze(x, SR, threads=1), L.analyze(x, SR, threads=3)
    assert serial.to_dict() == threaded.to_dict()
    x[1, 100] = np.nan
    from automix.errors import AudioError

    with pytest.raises(AudioError, match="NaN"):
        L.analyze(x, SR)


@pytest.mark.parametrize("seconds,hop_s", [(12.3, 0.1), (2.0, 0.01), (0.45, 0.1)])
def test_hop_energies_equal_scipy_filtering(make_pink_noise, seconds, hop_s):
    # the K-weighting runs on SIMD lanes over stretches of the signal, each started early
    # from silence; the hop energies must equal one plain float64 recursion over the whole
    x = make_pink_noise(seconds)
    x[:, int(0.6 * x.shape[1]):] = 0.0  # digital silence to the end
    energies, hop = L.hop_energies(x, SR, hop_s=hop_s)
    y = ss.sosfilt(L.k_weighting_sos(SR), x.astype(np.float64), axis=-1)
    n = x.shape[1] // hop
    reference = (y[:, : n * hop] ** 2).reshape(2, n, hop).sum(axis=(0, 2))
    assert energies.shape == (n,)
    loud = reference > 1e-12 * reference.max()
    assert np.allclose(energies[loud], reference[loud], rtol=1e-9)
    assert np.all(np.abs(energies[~loud]) <= 1e-9 * reference.max())


def test_true_peak_equals_polyphase_interpolation_with_its_filter(make_noise):
    # the vectorised meter against scipy's polyphase resampler with the same prototype
    # filter, including the outputs at both ends (the signal is silent outside)
    phases = L.true_peak_phases()[0]
    up, half = 4, phases.shape[1] // 2
    prototype = np.zeros(2 * up * half + 1)
    for p in range(1, up):
        for i in range(2 * half):
            prototype[up * (half - 1 - i) + p + up * half] = phases[p - 1, i]
    prototype[up * half] = 1.0  # phase 0 is the sample itself
    for frames in (30, 5000):
        x = make_noise(frames / SR, rms=0.2)
        x[0, 0], x[1, -1] = 0.95, -0.97  # loud at the very ends
        y = ss.upfirdn(prototype, x.astype(np.float64), up=up, axis=-1)
        reference = np.abs(y).max()
        assert L.true_peak(x) == pytest.approx(reference, rel=1e-5)


def test_spectrum_of_channel_pairs_equals_per_channel_rfft(make_song):
    # stereo segments go through one complex FFT per pair; compare with textbook
    # per-channel real FFTs of the same Hann-windowed segments, and check that any split
    # into segment ranges (what analyze's threads do) sums to the same
    x = np.concatenate([make_song(40.0), make_song(40.0)[:1] * 0.5])  # 3 channels: a pair and one alone
    plan = L._SpectrumPlan.for_signal(SR, x.shape[1])
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(plan.n) / plan.n)
    reference = np.zeros(plan.bins)
    for c in range(3):
        for s in range(plan.count):
            reference += np.abs(np.fft.rfft(x[c, s * plan.hop: s * plan.hop + plan.n] * window)) ** 2
    whole = np.zeros(plan.bins)
    plan.accumulate(x, whole)
    strong = reference > 1e-9 * reference.max()
    assert np.allclose(whole[strong], reference[strong], rtol=1e-4)
    parts = np.zeros(plan.bins)
    for first, stop in ((0, 7), (7, 8), (8, plan.count)):
        plan.accumulate(x, parts, first, stop)
    assert np.allclose(parts, whole, rtol=1e-12, atol=0)


@pytest.mark.parametrize("peak_known", [False, True])
def test_long_stereo_levels_summed_in_the_spectrum_pass_equal_numpy(make_noise, peak_known):
    # long stereo files get their level sums from the spectrum's pass over the samples
    # (adjacent segments) plus the tail after the last segment: check them all
    x = make_noise(33.0, rms=0.1)
    x[1] = 0.3 * x[0] - 0.9 * x[1] + 0.01  # correlated, with a DC offset
    x[0, 1000], x[1, 20000] = 1.0, -1.0  # clipped inside segments
    x[0, -3], x[1, -2] = 1.0, -1.0  # and in the tail
    m = L.analyze(x, SR, peak=float(np.abs(x).max()) if peak_known else None)
    left, right = x.astype(np.float64)
    assert m.clipped_samples == 4
    np.testing.assert_allclose(m.dc_offset, [left.mean(), right.mean()], rtol=1e-9)
    assert m.rms_dbfs == pytest.approx(10 * np.log10(np.mean(np.stack([left, right]) ** 2)), abs=1e-9)
    assert m.correlation == pytest.approx(np.sum(left * right) / np.sqrt(np.sum(left**2) * np.sum(right**2)), abs=1e-12)
    mid, side = (left + right) / 2, (left - right) / 2
    assert m.side_mid_ratio_db == pytest.approx(10 * np.log10(np.sum(side**2) / np.sum(mid**2)), abs=1e-9)
    assert m.sample_peak_dbfs == 0.0
    assert L.analyze(x, SR, threads=1).to_dict() == L.analyze(x, SR, threads=2).to_dict()
    assert L.analyze(x.astype(np.float64), SR).rms_dbfs == pytest.approx(m.rms_dbfs, abs=1e-9)  # separate level pass
