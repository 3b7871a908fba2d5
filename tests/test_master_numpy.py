"""Mastering without torch (issue 15): the numpy path equals the torch path, and ``automix master``
does not import torch (its import alone cost about as much CPU as mastering a 90-s excerpt)."""
from __future__ import annotations

import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import soundfile as sf
import torch

from automix.dsp import biquad as bq
from automix.dsp.eq import eq_response, eq_sos
from automix.dsp.params import MASTERING
from automix.errors import ModelError
from automix.mastering.chain import ChainSettings, linear_phase_firs
from automix.mastering.model import (DEFAULT_MODEL, ArrayMasteringNet, MasteringNet, feature_array, load_model,
                                     load_predictor, predict_values, profile_features, save_model)
from automix.mastering.profile import analyze_profile
from automix.mastering.tonal import FITTED, fit_parametric_eq
from automix.mastering.width import side_response_db
from automix.weights import read_weight_arrays
from master_signals import song
from test_startup import _imported_modules

SR = 44100


def _random_settings(rng: np.random.Generator, n: int) -> np.ndarray:
    """``(n, P)`` float64 MASTERING values spread over every range (unit positions uniform)."""
    return MASTERING.from_unit(rng.uniform(0.0, 1.0, (n, MASTERING.size)))


def test_param_table_maps_numpy_like_torch():
    rng = np.random.default_rng(0)
    unit = rng.uniform(0.0, 1.0, (5, MASTERING.size))
    np.testing.assert_allclose(MASTERING.from_unit(unit), MASTERING.from_unit(torch.from_numpy(unit)).numpy(),
                               rtol=1e-12)
    values = MASTERING.from_unit(unit)
    np.testing.assert_allclose(MASTERING.to_unit(values), MASTERING.to_unit(torch.from_numpy(values)).numpy(),
                               rtol=1e-9, atol=1e-12)
    unit32 = unit.astype(np.float32)
    np.testing.assert_allclose(MASTERING.from_unit(unit32), MASTERING.from_unit(torch.from_numpy(unit32)).numpy(),
                               rtol=2e-6)
    assert MASTERING.defaults(dtype=np.float32).dtype == np.float32
    np.testing.assert_array_equal(MASTERING.defaults(3, dtype=np.float64), MASTERING.defaults(3, dtype=torch.float64))
    assert MASTERING.to_dict(values[0]) == MASTERING.to_dict(torch.from_numpy(values[0]))


def test_filter_design_and_responses_numpy_equal_torch():
    rng = np.random.default_rng(1)
    values = _random_settings(rng, 16)
    freqs = np.geomspace(5.0, SR / 2, 300)
    vt, ft = torch.from_numpy(values), torch.from_numpy(freqs)
    np.testing.assert_allclose(eq_sos(values, MASTERING, SR), eq_sos(vt, MASTERING, SR).numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(eq_response(values, MASTERING, freqs, SR), eq_response(vt, MASTERING, ft, SR).numpy(),
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(side_response_db(values, freqs, SR), side_response_db(vt, ft, SR).numpy(),
                               rtol=1e-9, atol=1e-9)
    for design in (bq.design_highpass, bq.design_lowpass):
        b, a = design(np.array([40.0, 900.0]), 0.7, SR)
        bt, at = design(torch.tensor([40.0, 900.0], dtype=torch.float64), 0.7, SR)
        np.testing.assert_allclose(np.stack([b, a]), torch.stack([bt, at]).numpy(), rtol=1e-12, atol=1e-15)
    # and against an independent design: scipy's Butterworth is the RBJ high-pass at q = 1/sqrt(2)
    from scipy.signal import butter

    b, a = bq.design_highpass(np.float64(120.0), 1 / np.sqrt(2), SR)
    sb, sa = butter(2, 120.0, btype="highpass", fs=SR)
    np.testing.assert_allclose(np.concatenate([b, a]), np.concatenate([sb, sa]), rtol=1e-9, atol=1e-12)


def test_linear_phase_filters_from_numpy_settings_equal_torch_ones():
    rng = np.random.default_rng(2)
    values = _random_settings(rng, 1)[0].astype(np.float32)
    freqs = np.geomspace(20, 20000, 60)
    fine = rng.normal(0, 3, freqs.size)
    a = linear_phase_firs(ChainSettings(values=values, fine_freqs_hz=freqs, fine_db=fine), SR)
    b = linear_phase_firs(ChainSettings(values=torch.from_numpy(values.copy()), fine_freqs_hz=freqs, fine_db=fine), SR)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def _real_ish_pairs(n: int):
    pairs = []
    for i in range(n):
        mix = song(4.0, SR, seed=60 + i, level_db=-20.0, bright=0.5 + 0.3 * i)
        ref = song(4.0, SR, seed=80 + i, level_db=-12.0, bright=1.8 - 0.2 * i)
        pairs.append((analyze_profile(mix, SR), analyze_profile(ref, SR)))
    return pairs


def test_numpy_mastering_model_equals_the_torch_model():
    torch_net, array_net = load_model(DEFAULT_MODEL), load_predictor(DEFAULT_MODEL)
    assert isinstance(array_net, ArrayMasteringNet) and array_net.n_features == torch_net.n_features
    for mix, ref in _real_ish_pairs(3):
        np.testing.assert_array_equal(feature_array(mix, ref), profile_features(mix, ref).numpy())
        a = predict_values(array_net, mix, ref)
        b = predict_values(torch_net, mix, ref).numpy()
        assert isinstance(a, np.ndarray) and a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
        # and the fit that starts from it (numpy base) equals the fit from the torch prediction
        freqs = mix.freqs_hz
        target = np.clip(ref.total_db - mix.total_db, -24, 24)
        target = target - target.mean()
        fa = fit_parametric_eq(freqs, target, SR, base=a)
        fb = fit_parametric_eq(freqs, target, SR, base=torch.from_numpy(b))
        assert isinstance(fa.values, np.ndarray) and isinstance(fb.values, torch.Tensor)
        idx = [MASTERING.index(n) for n in FITTED]
        np.testing.assert_allclose(fa.values[idx], fb.values.numpy()[idx], rtol=1e-3, atol=1e-3)
    rng = np.random.default_rng(3)
    feats = rng.normal(0.0, 1.5, (64, array_net.n_features)).astype(np.float32)
    with torch.no_grad():
        expected = torch_net(torch.from_numpy(feats)).numpy()
    np.testing.assert_allclose(array_net(feats), expected, rtol=1e-5, atol=1e-5)


def test_weight_arrays_reader_equals_torch_load_and_refuses_code(tmp_path):
    net = MasteringNet(12, hidden=8)
    path = save_model(net, tmp_path / "m.pt", {"note": "x", "numbers": [1, 2.5]})
    arrays = read_weight_arrays(path, "mastering-model")
    loaded = torch.load(path, weights_only=True)
    assert arrays["meta"] == loaded["meta"] and arrays["predicted"] == loaded["predicted"]
    for key, tensor in loaded["state_dict"].items():
        np.testing.assert_array_equal(arrays["state_dict"][key], tensor.numpy())
    # a strided (transposed) tensor and a float64 one come back as their values
    torch.save({"t": torch.arange(12.0).reshape(3, 4).t(), "d": torch.linspace(0, 1, 5, dtype=torch.float64)},
               tmp_path / "strided.pt")
    back = read_weight_arrays(tmp_path / "strided.pt", "test")
    np.testing.assert_array_equal(back["t"], np.arange(12.0).reshape(3, 4).T)
    assert back["d"].dtype == np.float64 and np.allclose(back["d"], np.linspace(0, 1, 5))
    # code is refused (a global other than tensors and plain containers)
    evil = tmp_path / "evil.pt"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("evil/data.pkl", pickle.dumps({"x": np.float64(1.0)}, protocol=2))
    with pytest.raises(ModelError, match="refused"):
        read_weight_arrays(evil, "mastering-model")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read mastering-model weights"):
        load_predictor(bad)
    with pytest.raises(ModelError, match="no mastering-model weights"):
        load_predictor(tmp_path / "missing.pt")
    torch.save({"format_version": 999}, tmp_path / "other.pt")
    with pytest.raises(ModelError, match="not an automix mastering model"):
        load_predictor(tmp_path / "other.pt")


def test_master_command_does_not_import_torch(tmp_path):
    mix = song(6.0, SR, seed=5, level_db=-20.0, bright=0.7)
    ref = song(6.0, SR, seed=6, level_db=-10.0, bright=1.5)
    sf.write(tmp_path / "mix.wav", mix.T, SR, subtype="PCM_24")
    sf.write(tmp_path / "ref.wav", ref.T, SR, subtype="PCM_24")
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "automix", "master", str(tmp_path / "mix.wav"),
                           "--reference", str(tmp_path / "ref.wav"), "-o", str(tmp_path / "out.wav"), "-q"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "out.wav").is_file()
    modules = _imported_modules(proc.stderr)
    assert "numpy" in modules and "automix.mastering.master" in modules  # the parse found the imports
    assert "torch" not in modules, "automix master imported torch"
