"""Features and roles of the mix model, checked against independent references."""
import numpy as np
import pyloudnorm
import pytest
import scipy.signal
import torch

from automix.model.features import FEATURE_NAMES, N_FEATURES, SCALARS, audio_features, describe, loudness_lufs, stem_features
from automix.model.roles import GROUPS, ROLES, group_of_role, role_from_name

torch.set_num_threads(1)
RNG = np.random.default_rng(7)


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.tensor(np.asarray(x), dtype=torch.float32)


def _tone(freq_hz: float, sr: int, seconds: float = 2.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return np.stack([amp * np.sin(2 * np.pi * freq_hz * t)] * 2)


@pytest.mark.parametrize("sr", [22050, 44100, 48000])
def test_loudness_matches_pyloudnorm(sr):
    meter = pyloudnorm.Meter(sr)
    n = int(sr * 2.5)
    pink = scipy.signal.lfilter([0.049922035, -0.095993537, 0.050612699, -0.004408786],
                                [1, -2.494956002, 2.017265875, -0.522189400], RNG.standard_normal((2, n)))
    signals = [
        0.1 * RNG.standard_normal((2, n)),
        0.5 * pink / np.abs(pink).max(),
        _tone(100, sr, 2.5),
        _tone(5000, sr, 2.5, 0.05),
        np.stack([0.2 * RNG.standard_normal(n), 0.02 * RNG.standard_normal(n)]),
    ]
    for x in signals:
        expected = meter.integrated_loudness(x.T)
        got = float(loudness_lufs(_t(x), sr))
        assert abs(got - expected) < 0.3, (expected, got)


def test_loudness_is_batched_and_tracks_gain():
    x = _t(0.1 * RNG.standard_normal((2, 44100)))
    batch = torch.stack([x, x * 10 ** (-6 / 20), x * 10 ** (-20 / 20)])
    lufs = loudness_lufs(batch, 44100)
    assert lufs.shape == (3,)
    assert torch.allclose(lufs[0] - lufs, torch.tensor([0.0, 6.0, 20.0]), atol=0.05)


def test_silence_gives_finite_floor_features():
    f = audio_features(torch.zeros(2, 3, 2, 22050), 22050)
    assert f.shape == (2, 3, N_FEATURES) and torch.isfinite(f).all()
    d = describe(f[0, 0])
    assert d["loudness_lufs"] <= -99 and d["active_fraction"] == 0


def test_scalar_features_measure_what_they_say():
    sr = 44100
    n = sr * 2
    noise = RNG.standard_normal(n) * 0.1
    other = RNG.standard_normal(n) * 0.1
    cases = {
        "mono_sine": _tone(1000, sr),
        "uncorrelated": np.stack([noise, other]),
        "anti_phase": np.stack([noise, -noise]),
        "hard_left": np.stack([noise, np.zeros(n)]),
    }
    d = {k: describe(audio_features(_t(v), sr)) for k, v in cases.items()}
    # Centroid of a 1 kHz sine: 0 octaves above 1 kHz; white noise: middle of 30 Hz-10 kHz.
    assert abs(d["mono_sine"]["centroid_oct"]) < 0.05
    assert abs(d["uncorrelated"]["centroid_oct"] - np.log2(5015 / 1000)) < 0.05
    # Crest factor: sine sqrt(2) = 3.01 dB; Gaussian noise over 10 dB at this length.
    assert abs(d["mono_sine"]["crest_db"] - 3.01) < 0.1
    assert d["uncorrelated"]["crest_db"] > 10
    # Flatness: a sine is tonal; white noise is flat (the power of one channel's bin is
    # exponential, flatness exp(-0.5772) = -2.5 dB; averaging two channels: -1.2 dB).
    assert d["mono_sine"]["flatness_db"] < -30
    assert -1.6 < d["uncorrelated"]["flatness_db"] < -0.8
    # Stereo image.
    assert d["mono_sine"]["width"] < 1e-4 and d["mono_sine"]["correlation"] > 0.999
    assert abs(d["uncorrelated"]["width"] - 0.5) < 0.02 and abs(d["uncorrelated"]["correlation"]) < 0.03
    assert d["anti_phase"]["width"] > 0.999 and d["anti_phase"]["correlation"] < -0.999
    assert d["hard_left"]["balance"] < -0.999 and abs(d["uncorrelated"]["balance"]) < 0.03
    # Loudness range: steady noise ~0, noise switching between two levels 10 dB apart ~5 LU.
    steps = np.repeat(np.tile([1.0, 10 ** (-10 / 20)], 2), n // 4)
    d_steps = describe(audio_features(_t(np.stack([noise * steps] * 2)), sr))
    assert d["uncorrelated"]["loudness_range_lu"] < 0.5
    assert 3.5 < d_steps["loudness_range_lu"] < 6.0


def test_mel_shape_sees_eq_tilt_and_ignores_level():
    sr = 22050
    noise = RNG.standard_normal((2, sr * 2)) * 0.1
    sos = scipy.signal.butter(2, 1000, "lowpass", fs=sr, output="sos")
    dark = scipy.signal.sosfilt(sos, noise)
    i0 = FEATURE_NAMES.index("mel_shape_0")
    shape = lambda x: audio_features(_t(x), sr)[i0:i0 + 24] * 20  # noqa: E731 (dB)
    flat, low = shape(noise), shape(dark)
    quiet = shape(noise * 0.01)
    assert torch.allclose(flat, quiet, atol=0.2)  # level-independent
    assert flat[-1] - flat[0] > -6  # white noise: no strong tilt per mel band
    assert (low[-1] - low[0]) - (flat[-1] - flat[0]) < -30  # lowpass: top bands far down


def test_features_agree_across_sample_rates():
    sig = RNG.standard_normal((2, 44100 * 2)) * 0.1
    sig = scipy.signal.sosfilt(scipy.signal.butter(2, 3000, "lowpass", fs=44100, output="sos"), sig)
    low = scipy.signal.resample_poly(sig, 1, 2, axis=-1)
    a = audio_features(_t(sig), 44100)
    b = audio_features(_t(low), 22050)
    n = len(SCALARS)
    assert torch.allclose(a[:n], b[:n], atol=0.05)
    assert torch.allclose(a[n:], b[n:], atol=0.15)


def test_stem_features_relative_loudness_and_mask():
    sr = 22050
    x = _t(RNG.standard_normal((1, 3, 2, sr)) * 0.1)
    x[0, 1] *= 10 ** (-12 / 20)
    mask = torch.tensor([[True, True, False]])
    feats, mix = stem_features(x, sr, mask)
    assert feats.shape == (1, 3, N_FEATURES + 1) and mix.shape == (1, N_FEATURES)
    rel_db = feats[0, :, -1] * 20
    assert abs(float(rel_db[0] - rel_db[1]) - 12.0) < 0.3
    # The padded stem is zeroed and excluded from the mix loudness (2 stems ~ +0.27 dB over stem 0).
    assert torch.all(feats[0, 2] == 0)
    assert abs(float(mix[0, 0] * 20) - float(loudness_lufs(x[0, :2].sum(0), sr))) < 1e-3


@pytest.mark.parametrize(
    "name, role",
    [
        ("03 Kick In.wav", "kick"),
        ("Snare Top.flac", "snare"),
        ("OH L.wav", "cymbals"),
        ("LeadVox.wav", "vocals"),
        ("BGV 2.wav", "backing_vocals"),
        ("Synth Bass 1.wav", "bass"),
        ("Bass Drum.wav", "kick"),
        ("ch10_drums.wav", "drums"),
        ("Acoustic Grand Piano.wav", "keys"),
        ("Overdriven Guitar.wav", "guitar"),
        ("Drawbar Organ.wav", "organ"),
        ("Pad 2 (warm).wav", "pad"),
        ("String Ensemble 1.wav", "strings"),
        ("Trumpet.wav", "brass"),
        ("Flute.wav", "woodwinds"),
        ("FX 3 (crystal).wav", "fx"),
        ("Lead 1 (square).wav", "lead"),
        ("arp_pluck.wav", "synth"),
        ("Shaker.wav", "percussion"),
        ("track01.wav", "other"),
        ("/some/song/vocals.wav", "vocals"),
    ],
)
def test_role_from_name(name, role):
    assert ROLES[role_from_name(name)] == role


def test_every_role_has_a_group():
    assert ROLES[0] == "other"
    assert {group_of_role(i) for i in range(len(ROLES))} == set(GROUPS)
    assert group_of_role("kick") == "drums" and group_of_role("lead") == "music"
    with pytest.raises(ValueError):
        group_of_role("banana")


def test_features_of_stems_on_threads_equal_the_plain_analysis():
    # automix mix analyses long stems one per CPU with torch single-threaded
    # (items_on_threads); the features are those of the plain analysis up to rounding.
    from automix.model.features import audio_features, items_on_threads

    sr = 48000
    rng = np.random.default_rng(5)
    t = np.arange(12 * sr) / sr
    stems = np.stack([
        np.stack([0.3 * np.sin(2 * np.pi * f * t) * (1 + np.sin(2 * np.pi * 0.5 * t)),
                  0.2 * np.sin(2 * np.pi * f * t + 0.3) + 0.01 * rng.standard_normal(t.size)])
        for f in (55.0, 220.0, 880.0)]).astype(np.float32)
    stems[2, :, 4 * sr:] = 0.0  # a stem that stops: silence is analysed the same way too
    x = torch.from_numpy(stems)
    plain = audio_features(x, sr)
    threads = torch.get_num_threads()
    with items_on_threads(2):
        assert torch.get_num_threads() == 1
        threaded = audio_features(x, sr)
    assert torch.get_num_threads() == threads
    assert plain.shape == threaded.shape == (3, N_FEATURES)
    assert float(plain.abs().max()) > 0.5  # real values, not all zeros
    assert torch.max(torch.abs(plain - threaded)) < 1e-5


@pytest.mark.parametrize("sample_rate", [22050, 44100, 48000, 96000])
def test_mel_filterbank_equals_torchaudio(sample_rate):
    """automix's own HTK mel filterbank (no torchaudio import in a mix) is torchaudio's."""
    import torchaudio.functional as AF

    from automix.model.features import MEL_FMAX_HZ, MEL_FMIN_HZ, N_MELS, fft_size, mel_filterbank

    n_freqs = fft_size(sample_rate) // 2 + 1
    fmax = min(MEL_FMAX_HZ, sample_rate / 2.0)
    ours = mel_filterbank(n_freqs, MEL_FMIN_HZ, fmax, N_MELS, sample_rate)
    ref = AF.melscale_fbanks(n_freqs, MEL_FMIN_HZ, fmax, N_MELS, sample_rate, norm=None, mel_scale="htk")
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    assert torch.equal(ours, ref)
    assert bool((ours.amax(0) > 0).all())  # every band has bins
