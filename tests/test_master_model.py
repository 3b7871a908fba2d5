"""Mastering model: features, restore loss, training reduces it, checkpoints load safely."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from automix.dsp.params import MASTERING
from automix.errors import ModelError
from automix.mastering.chain import ChainSettings, render_chain
from automix.mastering.model import (MasteringNet, load_model, predict_values, profile_features,
                                     restored_spectrum_loss, save_model)
from automix.mastering.profile import analyze_profile
from master_signals import song

torch.set_num_threads(1)
SR = 44100


def _examples(n: int, seed: int):
    from train.train_mastering import random_degradation

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        x = song(2.0, SR, seed=seed * 100 + i, level_db=-18.0, bright=float(rng.uniform(0.5, 2.0)))
        ref = analyze_profile(x, SR)
        settings, gain_db = random_degradation(rng, 8.0, 6.0)
        y = render_chain(x, SR, settings) * np.float32(10 ** (gain_db / 20))
        mix = analyze_profile(y, SR)
        rows.append((profile_features(mix, ref), mix, ref, settings.values))
    feats = torch.stack([r[0] for r in rows])
    mix_mid = torch.stack([torch.from_numpy(r[1].mid_db.copy()) for r in rows])
    mix_side = torch.stack([torch.from_numpy(r[1].side_db.copy()) for r in rows])
    ref_total = torch.stack([torch.from_numpy(r[2].total_db.copy()) for r in rows])
    ref_sm = torch.stack([torch.from_numpy(np.clip(r[2].side_db - r[2].mid_db, -30, 10)) for r in rows])
    freqs = torch.from_numpy(rows[0][2].freqs_hz.copy())
    sel = (freqs >= 24) & (freqs <= 16500)
    return feats, (mix_mid[:, sel], mix_side[:, sel], ref_total[:, sel], ref_sm[:, sel], freqs[sel]), rows


def test_restore_loss_is_small_for_the_true_inverse():
    feats, (mm, ms, rt, rsm, f), rows = _examples(2, seed=1)
    neutral = MASTERING.neutral.expand(2, -1).clone()
    inverse = neutral.clone()
    for j, (_, _, _, deg) in enumerate(rows):  # the exact inverse EQ of the degradation (gains negated)
        for name in MASTERING.names:
            if name.startswith("eq.") and not name.endswith("hpf.mix") and not name.startswith("eq.hpf"):
                v = float(deg[MASTERING.index(name)])
                inverse[j, MASTERING.index(name)] = -v if name.endswith("gain_db") else v
        for r in ("low", "mid", "high"):
            inverse[j, MASTERING.index(f"width.{r}_side_db")] = -float(deg[MASTERING.index(f"width.{r}_side_db")])
    before = restored_spectrum_loss(neutral, mm, ms, rt, rsm, f, SR)
    after = restored_spectrum_loss(inverse, mm, ms, rt, rsm, f, SR)
    assert torch.all(after < 0.25 * before)
    assert torch.all(after < 1.0)  # about 1 dB RMS at most: the loss measures what it says


def test_training_steps_reduce_heldout_loss_and_checkpoint_roundtrip(tmp_path):
    feats, (mm, ms, rt, rsm, f), _ = _examples(12, seed=2)
    torch.manual_seed(0)
    net = MasteringNet(feats.shape[1], hidden=32)
    train, test = slice(0, 8), slice(8, 12)

    def loss(s):
        return restored_spectrum_loss(net(feats[s]), mm[s], ms[s], rt[s], rsm[s], f, SR).mean()

    with torch.no_grad():
        start = float(loss(test))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(80):
        opt.zero_grad()
        loss(train).backward()
        opt.step()
    with torch.no_grad():
        end = float(loss(test))
    assert end < 0.8 * start
    path = save_model(net, tmp_path / "m.pt", {"note": "test"})
    loaded = load_model(path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(feats[:3]), net(feats[:3]))


def test_bad_checkpoints_raise_model_error(tmp_path):
    with pytest.raises(ModelError, match="no mastering-model weights"):
        load_model(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read mastering-model weights"):
        load_model(bad)
    torch.save({"format_version": 999}, tmp_path / "other.pt")
    with pytest.raises(ModelError, match="not an automix mastering model"):
        load_model(tmp_path / "other.pt")


def test_master_uses_a_given_model(tmp_path):
    from automix.mastering import MasteringOptions, master_audio

    feats, _, rows = _examples(1, seed=3)
    net = MasteringNet(feats.shape[1], hidden=16)
    path = save_model(net, tmp_path / "m.pt", {})
    values = predict_values(load_model(path), rows[0][1], rows[0][2])
    MASTERING.validate(values)
    mix = song(4.0, SR, seed=40, level_db=-20.0, bright=0.6)
    ref = song(4.0, SR, seed=41, level_db=-16.0, bright=1.6)
    with_model = master_audio(mix, SR, [(ref, SR)], MasteringOptions(model=path))
    without = master_audio(mix, SR, [(ref, SR)], MasteringOptions(model=None))
    assert abs(with_model.integrated_lufs - without.integrated_lufs) < 0.15
    with pytest.raises(ModelError):
        master_audio(mix, SR, [(ref, SR)], MasteringOptions(model=tmp_path / "nope.pt"))


def test_differentiable_chain_matches_file_renderer_and_has_gradients():
    from automix.mastering.chain import render_chain_torch

    x = song(1.0, SR, seed=50, level_db=-20.0)
    values = MASTERING.defaults().clone()
    for name, v in (("eq.low_shelf.gain_db", 3.0), ("eq.peak2.gain_db", -4.0), ("eq.high_shelf.gain_db", 2.0),
                    ("width.mid_side_db", 2.0), ("width.low_side_db", -6.0), ("comp.ratio", 2.0),
                    ("comp.threshold_db", -30.0), ("output_gain_db", -1.5)):
        values[MASTERING.index(name)] = v
    settings = ChainSettings(values=values.clone())
    reference = render_chain(x, SR, settings, linear_phase=False) * np.float32(10 ** (-1.5 / 20))
    v = values.double().requires_grad_(True)
    y = render_chain_torch(torch.from_numpy(x).double(), v, SR)
    np.testing.assert_allclose(y.detach().numpy(), reference, atol=2e-4)
    # gradients reach EQ, width, compressor and gain
    spec = torch.fft.rfft(y, dim=-1).abs().pow(2).sum(0)
    loss = torch.log(spec[200:4000] + 1e-9).mean() + torch.log(spec[4000:20000] + 1e-9).mean()
    loss.backward()
    for name in ("eq.low_shelf.gain_db", "eq.peak2.gain_db", "eq.high_shelf.gain_db", "width.mid_side_db",
                 "comp.threshold_db", "output_gain_db"):
        assert float(v.grad[MASTERING.index(name)].abs()) > 0, name
