"""The mix model: shapes, ranges, neutral start, set behaviour, learning, checkpoints."""
import numpy as np
import pytest
import torch

from automix.dsp.params import PARAM_TABLE_VERSION, STRIP
from automix.errors import ModelError
from automix.model.checkpoint import load_model, read_checkpoint, save_checkpoint
from automix.model.mixnet import MAX_STEMS, MixModel, MixModelConfig
from automix.model.roles import ROLES, role_from_name

torch.set_num_threads(1)
SR = 16000


def _stems(batch: int, n: int, seconds: float = 0.5, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, n, 2, int(SR * seconds), generator=g) * 0.1
    # Give every stem its own colour and level so they are distinguishable.
    tilt = torch.linspace(0.2, 1.0, n).view(1, n, 1, 1)
    x = x * tilt
    x[..., 1:] += 0.9 * x[..., :-1].clone() * (tilt - 0.6)
    return x


def _model(seed: int = 0, **kw) -> MixModel:
    torch.manual_seed(seed)
    return MixModel(MixModelConfig(**{"d_model": 32, "n_heads": 2, "n_layers": 2, **kw})).eval()


def _randomise_heads(model: MixModel) -> None:
    with torch.no_grad():
        model.head[-1].weight.normal_(0, 0.3)


def test_output_shape_and_declared_ranges():
    model = _model()
    _randomise_heads(model)
    stems = _stems(2, 5)
    roles = torch.randint(0, len(ROLES), (2, 5))
    out = model(stems, SR, roles, torch.ones(2, 5, dtype=torch.bool))
    assert out.shape == (2, 5, STRIP.size)
    STRIP.validate(out.clamp(min=STRIP._min.float(), max=STRIP._max.float()))
    lo, hi = STRIP._min.float(), STRIP._max.float()
    assert torch.all(out >= lo - 1e-4 * hi.abs()) and torch.all(out <= hi + 1e-4 * hi.abs())


def test_untrained_model_is_near_neutral():
    model = _model()
    # four different roles: no pair to spread (see the pair-spread test below)
    out = model(_stems(1, 4), SR, torch.arange(4)[None])
    values = {n: out[0, :, i] for i, n in enumerate(STRIP.names)}
    # Settings that change the sound are (nearly) off; frequencies may sit anywhere.
    assert values["gain_db"].abs().max() < 0.5
    assert values["pan"].abs().max() < 0.05
    for band in ("low_shelf", "peak1", "peak2", "peak3", "high_shelf"):
        assert values[f"eq.{band}.gain_db"].abs().max() < 0.5
    assert values["eq.hpf.mix"].max() < 0.03
    assert values["comp.ratio"].max() < 1.1 and values["comp.makeup_db"].max() < 0.5
    assert values["sat.mix"].max() < 0.03


def test_permutation_equivariance_and_padding_invariance():
    model = _model()
    _randomise_heads(model)
    stems = _stems(1, 6)
    roles = torch.tensor([[1, 2, 6, 16, 8, 0]])
    out = model(stems, SR, roles)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    out_p = model(stems[:, perm], SR, roles[:, perm])
    assert torch.allclose(out_p, out[:, perm], atol=1e-4)
    # Padding stems (mask False), whatever they contain, do not change the real stems' settings.
    padded = torch.cat([stems, torch.randn(1, 3, 2, stems.shape[-1])], 1)
    mask = torch.tensor([[True] * 6 + [False] * 3])
    out_pad = model(padded, SR, torch.cat([roles, torch.tensor([[3, 3, 3]])], 1), mask)
    assert torch.allclose(out_pad[:, :6], out, atol=1e-4)
    # Context matters: removing a stem changes the others' settings.
    out_less = model(stems[:, :5], SR, roles[:, :5])
    assert (out_less - out[:, :5]).abs().max() > 1e-3


@pytest.mark.parametrize("n_stems", [1, MAX_STEMS])
def test_one_to_max_stems(n_stems):
    model = _model()
    stems = _stems(1, n_stems, seconds=0.25)
    out = model(stems, SR, torch.zeros(1, n_stems, dtype=torch.long))
    assert out.shape == (1, n_stems, STRIP.size) and torch.isfinite(out).all()


def test_reference_conditioning_changes_the_output():
    model = _model()
    _randomise_heads(model)
    torch.nn.init.normal_(model.reference_encoder[-1].weight, std=0.5)
    stems = _stems(1, 3)
    roles = torch.tensor([[1, 6, 16]])
    plain = model(stems, SR, roles)
    bright = torch.randn(1, 2, SR) * 0.1
    dark = torch.cumsum(torch.randn(1, 2, SR), -1) * 0.001
    with_bright = model(stems, SR, roles, reference=bright)
    with_dark = model(stems, SR, roles, reference=dark)
    assert (with_bright - plain).abs().max() > 1e-3
    assert (with_bright - with_dark).abs().max() > 1e-3


def test_gradients_reach_every_weight():
    model = _model().train()
    stems = _stems(2, 3)
    out = model(stems, SR, torch.tensor([[1, 6, 16], [2, 7, 7]]), reference=stems.sum(1))  # 7 twice: pair_side
    out.square().mean().backward()
    used = {n for n, p in model.named_parameters() if p.grad is not None}
    assert used == {n for n, _ in model.named_parameters()} - {"no_reference"}
    for name, p in model.named_parameters():
        if name in used:
            assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    # Without a reference the learned "no reference" token is used instead.
    model.zero_grad()
    model(stems, SR, torch.tensor([[1, 6, 16], [2, 7, 0]])).square().mean().backward()
    assert model.no_reference.grad is not None and model.no_reference.grad.abs().sum() > 0


def test_model_learns_to_undo_random_gains():
    """Stems with known random gains: a short fit predicts the inverse gain (held-out examples)."""
    model = _model(d_model=32)
    gain_i = STRIP.index("gain_db")
    g = torch.Generator().manual_seed(1)
    base = _stems(1, 4, seconds=0.4)[0]
    roles = torch.tensor([[1, 6, 8, 16]])

    def batch(n):
        offsets = (torch.rand(n, 4, generator=g) * 18 - 9)
        stems = base.unsqueeze(0) * (10 ** (offsets / 20)).view(n, 4, 1, 1)
        return model.analyse(stems, SR), offsets

    train_f, train_off = batch(48)
    test_f, test_off = batch(16)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(150):
        pred = model.predict(train_f, roles.expand(48, 4))[..., gain_i]
        loss = (pred + train_off).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        pred = model.predict(test_f, roles.expand(16, 4))[..., gain_i]
    # The un-perturbed balance is recovered up to a common offset (loudness is relative).
    err = pred + test_off
    err = err - err.mean(1, keepdim=True)
    start = test_off - test_off.mean(1, keepdim=True)
    assert err.abs().mean() < 0.25 * start.abs().mean()


def test_checkpoint_round_trip(tmp_path):
    model = _model()
    _randomise_heads(model)
    path = save_checkpoint(tmp_path / "m.pt", model, info={"steps": 3, "data": ["a", "b"]})
    loaded, info = load_model(path)
    assert info == {"steps": 3, "data": ["a", "b"]}
    assert loaded.config == model.config and not loaded.training
    stems = _stems(1, 3)
    roles = torch.tensor([[role_from_name("kick.wav"), 6, 16]])
    assert torch.equal(loaded(stems, SR, roles), model(stems, SR, roles))
    assert not list(tmp_path.glob("*.tmp"))


def test_checkpoint_errors(tmp_path):
    with pytest.raises(ModelError, match="no mix-model weights"):
        load_model(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelError, match="cannot read"):
        load_model(bad)
    path = save_checkpoint(tmp_path / "m.pt", _model())
    payload = torch.load(path, weights_only=True)
    payload["param_table_version"] = PARAM_TABLE_VERSION + 1
    torch.save(payload, tmp_path / "old.pt")
    with pytest.raises(ModelError, match="parameter table version"):
        load_model(tmp_path / "old.pt")
    payload = torch.load(path, weights_only=True)
    payload["state_dict"].pop("head.0.weight")
    torch.save(payload, tmp_path / "arch.pt")
    with pytest.raises(ModelError, match="architecture"):
        load_model(tmp_path / "arch.pt")
    # Pickled code is refused (weights_only=True), reported as a ModelError.
    torch.save({"format": "automix-mixer", "x": np.random.default_rng(0)}, tmp_path / "code.pt")
    with pytest.raises(ModelError, match="cannot read"):
        read_checkpoint(tmp_path / "code.pt")


def test_ensemble_averages_members_in_each_parameters_own_scale(tmp_path):
    from automix.model.mixnet import MixEnsemble

    a, b = _model(1), _model(2)
    _randomise_heads(a)
    _randomise_heads(b)
    ensemble = MixEnsemble([a, b]).eval()
    stems = _stems(1, 4, seed=3)
    roles = torch.tensor([[role_from_name("kick.wav"), role_from_name("bass.wav"), 6, 16]])
    pa, pb, pe = a(stems, SR, roles), b(stems, SR, roles), ensemble(stems, SR, roles)
    assert not torch.allclose(pa, pb, atol=1e-3)  # the members really disagree
    gain, freq = STRIP.index("gain_db"), STRIP.index("eq.low_shelf.freq_hz")
    # A linear parameter (dB) averages arithmetically, a log-scaled one (Hz) geometrically.
    torch.testing.assert_close(pe[..., gain], (pa[..., gain] + pb[..., gain]) / 2, atol=1e-4, rtol=0)
    torch.testing.assert_close(pe[..., freq], (pa[..., freq] * pb[..., freq]).sqrt(), rtol=1e-4, atol=0)
    torch.testing.assert_close(STRIP.clamp(pe), pe)  # inside the declared ranges
    # Saved and loaded as an ensemble; readers of one model (resuming training) get member 0.
    path = save_checkpoint(tmp_path / "ens.pt", ensemble, info={"members": 2})
    loaded, info = load_model(path)
    assert isinstance(loaded, MixEnsemble) and len(loaded.members) == 2 and info == {"members": 2}
    torch.testing.assert_close(loaded(stems, SR, roles), pe)
    payload = torch.load(path, weights_only=True)
    assert all(torch.equal(payload["state_dict"][k], v) for k, v in a.state_dict().items())
    with pytest.raises(ValueError, match="same architecture"):
        MixEnsemble([a, _model(0, d_model=16)])


def test_mix_with_an_ensemble_checkpoint(tmp_path):
    """`automix mix --model ENSEMBLE.pt` on rendered tones: the faders are the members' mean."""
    import soundfile as sf

    from automix import mixing
    from automix.model.mixnet import MixEnsemble

    sr = 22050
    t = np.arange(int(1.5 * sr)) / sr
    folder = tmp_path / "song"
    folder.mkdir()
    for name, f0, level in (("bass.wav", 55.0, 0.5), ("keys.wav", 262.0, 0.1), ("lead.wav", 880.0, 0.05)):
        tone = level * np.sin(2 * np.pi * f0 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))
        sf.write(folder / name, np.stack([tone, tone], 1).astype(np.float32), sr)
    a, b = _model(4), _model(5)
    _randomise_heads(a)
    _randomise_heads(b)
    path = save_checkpoint(tmp_path / "ens.pt", MixEnsemble([a, b]), info={"sample_rate": sr})
    stems = mixing.load_stems(folder)
    together, _ = mixing.suggest(stems, model=path)
    alone = [mixing.suggest(stems, model=m)[0] for m in (a, b)]
    gains = [[s.strip["gain_db"] for s in x.stems] for x in (together, *alone)]
    assert np.allclose(gains[0], np.mean(gains[1:], axis=0), atol=0.05)
    report = mixing.mix(stems, tmp_path / "mix.wav", model=path)
    audio, rate = sf.read(report.mix_path)
    assert rate == sr and np.isfinite(audio).all() and np.abs(audio).max() > 0.01


def test_role_parity_alternates_within_a_role_and_old_checkpoints_still_load():
    from automix.model.mixnet import role_parity

    roles = torch.tensor([[3, 5, 3, 7, 3, 5]])
    mask = torch.tensor([[True, True, True, True, True, False]])
    assert role_parity(roles, mask).tolist() == [[1.0, 0.0, -1.0, 0.0, 1.0, 0.0]]
    model = MixModel(d_model=16, n_heads=2, n_layers=1, role_dim=4)
    state = {k: v for k, v in model.state_dict().items() if k != "pair_side"}
    fresh = MixModel(d_model=16, n_heads=2, n_layers=1, role_dim=4)
    fresh.load_state_dict(state)  # a checkpoint without the pair embedding loads with zeros
    assert torch.count_nonzero(fresh.pair_side) == 0
    # with the embedding, two identical stems of one role get different settings
    with torch.no_grad():
        fresh.pair_side.normal_()
    stem = torch.randn(1, 1, 2, 24000) * 0.1
    out = fresh(stem.expand(1, 2, 2, 24000).contiguous(), 24000, torch.tensor([[3, 3]]))
    assert not torch.allclose(out[0, 0], out[0, 1])


def test_two_identical_parts_of_one_role_leave_the_centre_in_opposite_directions():
    """The pair-spread head: an untrained model already puts two alike guitars apart, a lone stem stays."""
    from automix.model.mixnet import MAX_PAIR_SPREAD

    torch.manual_seed(1)
    model = MixModel(d_model=16, n_heads=2, n_layers=1, role_dim=4).eval()
    i = STRIP.index("pan")
    guitar = torch.randn(1, 1, 2, 24000) * 0.1
    bass = torch.randn(1, 1, 2, 24000) * 0.1
    stems = torch.cat([guitar, guitar, bass], 1)
    roles = torch.tensor([[3, 3, 5]])
    with torch.no_grad():
        pans = model(stems, 24000, roles)[0, :, i]
    gap = float(pans[0] - pans[1])
    assert 0.55 < gap < 0.65  # the head starts at 0.6 pan units apart (sigmoid(0) x MAX_PAIR_SPREAD)
    assert abs(float(pans[0] + pans[1]) / 2 - float(pans[2])) < 0.05  # the bass sits between them
    # the spread is learned: it moves with its head and stays within MAX_PAIR_SPREAD
    with torch.no_grad():
        model.spread_bias.fill_(8.0)
        wide = model(stems, 24000, roles)[0, :, i]
    assert MAX_PAIR_SPREAD * 0.99 < float(wide[0] - wide[1]) <= MAX_PAIR_SPREAD + 1e-6
    # a checkpoint from before the head loads without spread: it mixes exactly as it did
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("spread_")}
    fresh = MixModel(d_model=16, n_heads=2, n_layers=1, role_dim=4).eval()
    fresh.load_state_dict(state)
    with torch.no_grad():
        pans = fresh(stems, 24000, roles)[0, :, i]
        fresh.spread_bias.fill_(-1e9)
        fresh.spread_weight.zero_()
        unspread = fresh(stems, 24000, roles)[0, :, i]
    assert torch.equal(pans, unspread) and abs(float(pans[0] - pans[1])) < 1e-6


def test_pans_are_the_heads_own_not_recentred_per_mix():
    """Every stem's pan comes from its own head output (plus the pair spread): a mix is not shifted
    so that its pans average zero (that moved the drums whenever a pair leaned one way)."""
    torch.manual_seed(0)
    model = MixModel(d_model=16, n_heads=2, n_layers=1, role_dim=4)
    i = STRIP.index("pan")
    with torch.no_grad():
        model.head[-1].weight.zero_()
        model.head[-1].bias[i] = torch.logit(torch.tensor(0.7))  # unit 0.7 = pan +0.4
    stems = torch.randn(1, 3, 2, 24000) * 0.1
    roles = torch.tensor([[0, 1, 2]])  # three different roles: no pair spread
    pans = model(stems, 24000, roles)[0, :, i]
    assert torch.allclose(pans, torch.full((3,), 0.4), atol=1e-5), pans
