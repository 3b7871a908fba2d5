"""`automix mix` without torch (issue 17): the numpy inference equals the torch path.

Features (:mod:`automix.model.array_features` against :mod:`automix.model.features`), the model
(:mod:`automix.model.inference` against :class:`MixModel` / :class:`MixEnsemble`: the shipped v1
ensemble, whose checkpoint predates the pair-side and spread weights, and fresh models with the
spread head), the console's kernel arguments and render, amount/trims and tidying, and whole mixes,
on synthetic multitracks (tests/multitrack_synth.py) with a recording's noise floor.

Pure synthetic tones leave high-frequency bins at float32 rounding noise, where torch's own
features move by ~1e-2 when the input moves by 1e-7 (one float32 step); there the numpy path is
checked to be as close to torch as torch is to itself.
"""
import numpy as np
import pytest
import torch
from mix_models import opinionated_model_checkpoint
from multitrack_synth import render_stems

from automix import mixing
from automix.dsp.console import BlockRenderer, kernel_arguments
from automix.dsp.params import MASTER, STRIP
from automix.errors import ModelError
from automix.model.array_features import audio_features_array, features_array, mel_filterbank_array, stem_features_array
from automix.model.checkpoint import DEFAULT_MODEL_PATH, load_model, save_checkpoint
from automix.model.features import audio_features, mel_filterbank, stem_features
from automix.model.inference import ArrayMixModel, load_array_model, role_parity_array
from automix.model.mixnet import MixFeatures, MixModel, MixModelConfig, role_parity
from automix.model.roles import role_from_name

torch.set_num_threads(1)


def _song(seed: int, sr: int, seconds: float, n_stems: int = 5, floor_dbfs: float | None = -110.0) -> np.ndarray:
    stems = np.stack(list(render_stems(seed, seconds, sr, n_stems).values()))
    if floor_dbfs is not None:  # a recording's noise floor (24-bit dither sits near -140 dBFS, rooms far above)
        stems = stems + 10 ** (floor_dbfs / 20) * np.random.default_rng(seed).standard_normal(stems.shape)
    return stems.astype(np.float32)


def _stems(audio: np.ndarray, names, sr: int) -> mixing.Stems:
    peaks = list(20 * np.log10(np.abs(audio).reshape(len(audio), -1).max(-1)))
    return mixing.Stems(list(names), [], audio, sr, [role_from_name(n) for n in names], [False] * len(names),
                        [audio.shape[-1]] * len(names), peaks_dbfs=peaks)


def _dbfs(x) -> float:
    return float(20 * np.log10(np.abs(np.asarray(x)).max() + 1e-30))


# ----------------------------------------------------------------------------- features
@pytest.mark.parametrize("sr", [22050, 44100, 48000, 96000])
def test_features_equal_torch_on_a_multitrack(sr):
    x = _song(1, sr, 8.0)
    x[2, 1] *= 0.3  # a stem leaning left
    got, got_mix = stem_features_array(x[None], sr)
    want, want_mix = stem_features(torch.from_numpy(x[None]), sr)
    assert got.shape == tuple(want.shape) and got.dtype == np.float32
    assert np.abs(got - want.numpy()).max() < 5e-4  # 0.01 dB of a band level, 0.01 LU
    assert np.abs(got_mix - want_mix.numpy()).max() < 5e-4  # 0.01 dB of a band level, 0.01 LU
    mono = x[:, :1]
    want_mono = audio_features(torch.from_numpy(mono), sr).numpy()
    assert np.abs(audio_features_array(mono, sr) - want_mono).max() < 5e-4


def test_features_of_pure_tones_are_as_close_to_torch_as_torch_is_to_itself():
    sr = 44100
    x = _song(3, sr, 6.0, floor_dbfs=None)
    want = audio_features(torch.from_numpy(x), sr).numpy()
    nudged = (x * (1 + 1e-7 * np.random.default_rng(0).standard_normal(x.shape))).astype(np.float32)
    torch_to_itself = np.abs(audio_features(torch.from_numpy(nudged), sr).numpy() - want).max()
    assert np.abs(audio_features_array(x, sr) - want).max() <= 2 * torch_to_itself + 1e-5


def test_silence_short_signals_and_the_mel_filterbank():
    z = np.zeros((3, 2, 22050), np.float32)
    assert np.array_equal(audio_features_array(z, 22050), audio_features(torch.from_numpy(z), 22050).numpy())
    short = (0.1 * np.random.default_rng(0).standard_normal((2, 500))).astype(np.float32)  # shorter than a window
    assert np.abs(features_array(short, 22050) - audio_features(torch.from_numpy(short), 22050).numpy()).max() < 1e-5
    for sr in (16000, 44100, 48000):
        n = 1025
        want = mel_filterbank(n, 30.0, min(11000.0, sr / 2), 24, sr).numpy()
        assert np.abs(mel_filterbank_array(n, 30.0, min(11000.0, sr / 2), 24, sr) - want).max() < 1e-5


# ----------------------------------------------------------------------------- model
def _features(seed=2, sr=22050, n=5):
    x = _song(seed, sr, 6.0, n)
    sf_, mf = stem_features_array(x[None], sr)
    return sf_, mf, MixFeatures(torch.from_numpy(sf_), torch.from_numpy(mf))


def test_shipped_v1_ensemble_equals_torch():
    sf_, mf, feats = _features()
    roles = np.array([[1, 3, 5, 5, 7]])  # two of one role: parity (and, in newer models, the spread)
    torch_model, info = load_model(DEFAULT_MODEL_PATH)
    array_model, array_info = load_array_model(DEFAULT_MODEL_PATH)
    assert array_info == info and len(array_model.members) == len(torch_model.members)
    assert "pair_side" not in torch.load(DEFAULT_MODEL_PATH, weights_only=True)["members"][0]  # v1: lacks newer keys
    with torch.no_grad():
        want = torch_model.predict_unit(feats, torch.from_numpy(roles)).numpy()
        want_values = torch_model.predict(feats, torch.from_numpy(roles)).numpy()
    assert np.abs(array_model.predict_unit(sf_, mf, roles) - want).max() < 2e-6
    got_values = array_model.predict(sf_, mf, roles)
    assert np.allclose(got_values, want_values, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("layers,heads", [(1, 2), (2, 4)])
def test_fresh_model_with_spread_head_equals_torch(tmp_path, layers, heads):
    torch.manual_seed(layers)
    model = MixModel(MixModelConfig(d_model=48, n_heads=heads, n_layers=layers, role_dim=8))
    with torch.no_grad():  # far from neutral, pairs pushed apart by a spread that depends on the stem
        model.head[-1].weight.normal_(0, 0.5)
        model.spread_weight.normal_(0, 1.0)
        model.pair_side.normal_(0, 1.0)
    model.eval()
    path = save_checkpoint(tmp_path / "fresh.pt", model, {"sample_rate": 22050})
    array_model, _ = load_array_model(path)
    assert isinstance(array_model, ArrayMixModel)
    sf_, mf, feats = _features(seed=5)
    roles = np.array([[4, 4, 4, 9, 1]])
    assert np.array_equal(role_parity_array(roles), role_parity(torch.from_numpy(roles)).numpy())
    with torch.no_grad():
        want = model.predict_unit(feats, torch.from_numpy(roles)).numpy()
        with_ref = model.predict_unit(MixFeatures(feats.stems, feats.mix, feats.mix * 0.8), torch.from_numpy(roles)).numpy()
    pan = STRIP.index("pan")
    assert np.abs(want[0, 0, pan] - want[0, 1, pan]) > 0.05  # the spread really moves the pair
    assert np.abs(array_model.predict_unit(sf_, mf, roles) - want).max() < 2e-6
    assert np.abs(array_model.predict_unit(sf_, mf, roles, mf * 0.8) - with_ref).max() < 2e-6


def test_array_loader_refuses_what_the_torch_loader_refuses(tmp_path):
    with pytest.raises(ModelError, match="no mix-model weights"):
        load_array_model(tmp_path / "missing.pt")
    model = MixModel(MixModelConfig(d_model=32, n_heads=2, n_layers=1))
    path = save_checkpoint(tmp_path / "m.pt", model)
    payload = torch.load(path, weights_only=True)
    del payload["state_dict"]["head.0.weight"]
    torch.save(payload, tmp_path / "broken.pt")
    with pytest.raises(ModelError, match="head.0.weight"):
        load_array_model(tmp_path / "broken.pt")
    payload["format"] = "something-else"
    torch.save(payload, tmp_path / "other.pt")
    with pytest.raises(ModelError, match="not an automix mix-model checkpoint"):
        load_array_model(tmp_path / "other.pt")


# ----------------------------------------------------------------------------- console and settings
def _random_settings(n: int, table, seed: int = 0) -> np.ndarray:
    unit = np.random.default_rng(seed).uniform(0.05, 0.95, size=(n, table.size))
    return table.from_unit(unit).astype(np.float32)


@pytest.mark.parametrize("channels", [1, 2])
def test_kernel_arguments_from_numpy_equal_torch(channels):
    for table in (STRIP, MASTER):
        values = _random_settings(7, table, seed=channels)
        got = kernel_arguments(values, table, 48000, channels if table is STRIP else 2)
        want = kernel_arguments(torch.from_numpy(values), table, 48000, channels if table is STRIP else 2)
        for g, w in zip(got, want):
            assert g.dtype == np.float64 and np.allclose(g, w, rtol=1e-12, atol=1e-14)


def test_numpy_render_equals_torch_render_block_by_block():
    sr = 44100
    audio = _song(4, sr, 5.0, 5)
    values = _random_settings(5, STRIP, seed=3)
    master = _random_settings(1, MASTER, seed=4)
    mask = np.array([[True, True, False, True, True]])
    a = BlockRenderer(values[None], sr, master, mask, reuse_buffers=True)
    b = BlockRenderer(torch.from_numpy(values)[None], sr, torch.from_numpy(master), torch.from_numpy(mask))
    for start in range(0, audio.shape[-1], 30000):
        block = audio[None, :, :, start:start + 30000]
        ra, rb = a.process(block), b.process(torch.from_numpy(block))
        assert isinstance(ra.mix, np.ndarray) and ra.mix.dtype == np.float32
        assert np.abs(ra.mix - rb.mix.numpy()).max() < 1e-6 and np.abs(ra.stems - rb.stems.numpy()).max() < 1e-6
    stems = _stems(audio, [f"s{i}.wav" for i in range(5)], sr)
    mix_np, proc_np = mixing.render(stems, values, keep_stems=True)
    mix_t, proc_t = mixing.render(stems, torch.from_numpy(values), keep_stems=True)
    assert isinstance(mix_np, np.ndarray) and np.abs(mix_np - mix_t.numpy()).max() < 1e-6
    assert np.abs(proc_np - proc_t.numpy()).max() < 1e-6


def test_amount_trims_and_tidy_take_numpy_like_torch():
    values = _random_settings(6, STRIP, seed=9)
    roles = [role_from_name(n) for n in ("kick", "bass", "vox", "gtr", "keys", "fx")]
    got = mixing.apply_amount_and_trims(values, roles, 70.0, {"vocals": 2.0, "drums": -1.0}, [False] * 5 + [True])
    want = mixing.apply_amount_and_trims(torch.from_numpy(values), roles, 70.0, {"vocals": 2.0, "drums": -1.0},
                                         [False] * 5 + [True])
    assert isinstance(got, np.ndarray) and got.dtype == np.float32
    assert np.allclose(got, want.numpy(), rtol=1e-6, atol=1e-5)
    i = STRIP.index
    values[:3, i("comp.ratio")] = [1.03, 4.0, 1.5]
    values[:3, i("comp.threshold_db")] = [-0.6, -20.0, -3.0]
    values[:3, i("comp.makeup_db")] = 0.0
    values[:2, i("sat.mix")] = [0.005, 0.5]
    peaks = np.array([-6.0, -3.0, -1.0, -6.0, -6.0, -6.0], np.float32)
    got = mixing.tidy_settings(values, peaks)
    want = mixing.tidy_settings(torch.from_numpy(values), torch.from_numpy(peaks))
    assert np.array_equal(got, want.numpy())


# ----------------------------------------------------------------------------- whole mixes
@pytest.mark.parametrize("model_kind", ["shipped", "fresh"])
def test_numpy_suggest_and_mix_equal_the_torch_path(tmp_path, model_kind):
    sr = 48000
    names = ["kick.wav", "bass.wav", "gtr_1.wav", "gtr_2.wav", "lead_vox.wav"]
    audio = _song(6, sr, 40.0, 5)  # longer than the analysis excerpts (30 s in 3-s pieces)
    stems = _stems(audio, names, sr)
    path = DEFAULT_MODEL_PATH if model_kind == "shipped" else opinionated_model_checkpoint(tmp_path, seed=3)
    torch_model, _ = load_model(path)
    numpy_settings, _ = mixing.suggest(stems, model=path, amount_percent=90.0, group_trims_db={"bass": 1.0})
    torch_settings, _ = mixing.suggest(stems, model=torch_model, amount_percent=90.0, group_trims_db={"bass": 1.0})
    a, b = numpy_settings.strip_array(), torch_settings.strip_array()
    assert np.abs(STRIP.to_unit(a.astype(np.float64)) - STRIP.to_unit(b.astype(np.float64))).max() < 1e-4
    mix_a, _ = mixing.render(stems, a)
    mix_b, _ = mixing.render(stems, torch.from_numpy(b))
    assert _dbfs(mix_a - mix_b.numpy()) < -100.0
    # and the whole mix() with outputs, numpy by default
    report = mixing.mix(stems, tmp_path / "mix.wav", model=path, stems_out=tmp_path / "stems", subtype="FLOAT")
    import soundfile as sf

    written, _ = sf.read(tmp_path / "mix.wav", dtype="float32")
    reference = mixing.mix(stems, tmp_path / "mix_t.wav", model=torch_model, subtype="FLOAT")
    written_t, _ = sf.read(tmp_path / "mix_t.wav", dtype="float32")
    assert _dbfs(written - written_t) < -100.0
    assert abs(report.loudness_lufs - reference.loudness_lufs) < 1e-3
    assert len(report.stems_out) == 5


def test_real_fft_uses_pocketfft_equal_to_numpy_and_leaves_scipy_fft_working():
    import subprocess
    import sys

    code = """
import sys
import numpy as np
from automix.model.array_features import _pocketfft_r2c, real_fft
assert _pocketfft_r2c() is not None, "scipy's pocketfft did not load"
assert "scipy.fft" not in sys.modules and "scipy.special" not in sys.modules
frames = np.random.default_rng(0).standard_normal((2, 7, 2048)).astype(np.float32)
got = real_fft(frames)
assert got.dtype == np.complex64 and got.shape == (2, 7, 1025)
assert np.abs(got - np.fft.rfft(frames.astype(np.float64), axis=-1)).max() < 1e-3
import scipy.fft
assert np.allclose(scipy.fft.rfft(frames, axis=-1), got, atol=1e-4)
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
