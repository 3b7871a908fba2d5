"""Console training on top of a feature-space fit (``model=strip_on_fit``, issue 12).

The fit's members are frozen and keep giving faders and EQ; one trainable member gives pans,
compressors and saturation. Checked: the composite's faders/EQ are the fit's, only the new
member learns (and the frozen ones are bit for bit the fit's after a run and a resume), the
saved composite loads for ``automix mix`` (torch and numpy paths equal), and bad output lists
are refused with a message.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from multitrack_synth import render_stems, write_dataset

from automix.dsp.params import STRIP
from automix.errors import ModelError
from automix.model.checkpoint import load_model, save_checkpoint
from automix.model.inference import load_array_model, output_weights, select_outputs
from automix.model.mixnet import CONSOLE_OUTPUTS, MixEnsemble, strip_on_fit

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
FIT = ROOT / "models" / "mixer_fit.pt"
SR = 16000


def _stems(seed: int = 2, seconds: float = 4.0, n: int = 5) -> torch.Tensor:
    audio = np.stack(list(render_stems(seed, seconds, SR, n).values())).astype(np.float32)
    return torch.from_numpy(audio)[None]


def test_select_outputs_and_weights():
    assert select_outputs(["pan"]) == ["pan"]
    comp = select_outputs("comp.*")
    assert comp and all(n.startswith("comp.") for n in comp)
    assert select_outputs(None) == list(STRIP.names)
    with pytest.raises(ModelError, match="names no channel-strip parameter"):
        select_outputs(["compressor.ratio"])
    with pytest.raises(ModelError, match="no member of the ensemble sets"):
        output_weights([["pan"], ["gain_db"]], 2)
    with pytest.raises(ModelError, match="outputs for 1 members but has 2"):
        output_weights([None], 2)
    w = output_weights([None, None, ["pan"]], 3)
    assert np.allclose(w.sum(0), 1.0)
    assert w[2, STRIP.index("pan")] == pytest.approx(1 / 3) and w[2, STRIP.index("gain_db")] == 0


def test_composite_keeps_the_fits_faders_and_eq_and_only_the_new_member_learns():
    model = strip_on_fit(str(FIT))
    fit, _ = load_model(FIT)
    assert isinstance(model, MixEnsemble) and len(model.members) == len(fit.members) + 1
    assert all(not p.requires_grad for m in model.members[:-1] for p in m.parameters())
    assert all(p.requires_grad for p in model.members[-1].parameters())
    stems = _stems()
    roles = torch.tensor([[0, 1, 5, 5, 7]])
    learned = [STRIP.index(n) for n in select_outputs(list(CONSOLE_OUTPUTS))]
    kept = [i for i in range(STRIP.size) if i not in learned]
    model.eval()
    with torch.no_grad():
        got, want = STRIP.to_unit(model(stems, SR, roles)), STRIP.to_unit(fit(stems, SR, roles))
    assert (got[..., kept] - want[..., kept]).abs().max() < 1e-5
    # the learned part is the new member's alone: push its head and only those outputs move
    with torch.no_grad():
        model.members[-1].head[-1].bias.add_(0.5)
        moved = STRIP.to_unit(model(stems, SR, roles))
    assert (moved[..., kept] - got[..., kept]).abs().max() < 1e-5
    assert (moved[..., learned] - got[..., learned]).abs().min() > 1e-5  # some sit near the sigmoid's ends
    assert (moved[..., learned] - got[..., learned]).abs().max() > 0.05
    # gradients reach the new member only, finite, through a console render
    from automix.dsp.console import render_mix

    model.train()
    strip = model(stems, SR, roles)
    render_mix(stems, strip, SR).mix.square().mean().backward()
    grads = [p.grad for p in model.members[-1].parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)
    assert all(p.grad is None for m in model.members[:-1] for p in m.parameters())
    # frozen members stay in eval mode (no dropout) while the ensemble trains
    assert not any(m.training for m in model.members[:-1]) and model.members[-1].training


def test_saved_composite_loads_for_mix_equal_in_torch_and_numpy(tmp_path):
    model = strip_on_fit(str(FIT))
    with torch.no_grad():
        model.members[-1].head[-1].weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(0))
    path = save_checkpoint(tmp_path / "composite.pt", model, {"note": "test"})
    payload = torch.load(path, weights_only=True)
    assert payload["member_outputs"][-1] == select_outputs(list(CONSOLE_OUTPUTS))
    loaded, info = load_model(path)
    array_model, array_info = load_array_model(path)
    assert info == array_info == {"note": "test"}
    stems = _stems(5)
    roles = np.array([[2, 4, 4, 9, 1]])
    feats = loaded.analyse(stems, SR)
    with torch.no_grad():
        want = loaded.predict_unit(feats, torch.from_numpy(roles)).numpy()
        model.eval()
        original = model.predict_unit(feats, torch.from_numpy(roles)).numpy()
    assert np.abs(want - original).max() < 1e-6
    # the same features into the numpy model (features alone are compared in test_mix_numpy.py)
    got = array_model.predict_unit(feats.stems.numpy(), feats.mix.numpy(), roles)
    assert np.abs(got - want).max() < 2e-6
    # a composite is not a fit to build on
    with pytest.raises(ValueError, match="already has members for some parameters only"):
        strip_on_fit(str(path))


def test_training_run_and_resume_leave_the_fit_untouched(tmp_path):
    from hydra import compose, initialize_config_dir

    from train.__main__ import CONFIG_DIR, run

    root = write_dataset(tmp_path / "songs", n_songs=4, seconds=2.0)
    run_dir = tmp_path / "run"

    def config(steps: int):
        overrides = [f"data.root={root}", f"data.cache_dir={tmp_path / 'cache'}", f"run_dir={run_dir}",
                     f"data.sample_rate={SR}", "data.excerpt_seconds=0.5", "data.excerpts_per_epoch=4",
                     "data.valid_fraction=0.25", "data.valid_excerpts_per_song=1", "trainer=smoke",
                     f"trainer.max_steps={steps}", "trainer.batch_size=2", "trainer.checkpoint_every=2",
                     "trainer.progress=false", "trainer.learning_rate=1e-2", "loss.terms.stft.fft_sizes=[512,128]",
                     "model=strip_on_fit", f"model.fit={FIT}"]
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            return compose("train", overrides=overrides)

    run(config(2), run_dir)
    run(config(4), run_dir)  # resumes from last.pt (the whole ensemble) and trains two more steps
    saved = torch.load(run_dir / "last.pt", weights_only=True)
    assert saved["training"]["step"] == 4
    fit = torch.load(FIT, weights_only=True)
    assert len(saved["members"]) == len(fit["members"]) + 1
    for got, want in zip(saved["members"], fit["members"]):
        for name, value in want.items():
            assert torch.equal(got[name], value), name
    learner, start = saved["members"][-1], fit["members"][0]
    assert any(not torch.equal(learner[k], start[k]) for k in start if k in learner)
    model, _ = load_model(run_dir / "last.pt")
    assert isinstance(model, MixEnsemble) and model.member_outputs[-1] == select_outputs(list(CONSOLE_OUTPUTS))


def test_added_eq_starts_as_the_fits_and_moves_by_the_learners_correction_in_db(tmp_path):
    added = select_outputs(["eq.*.gain_db"])
    learn = [*CONSOLE_OUTPUTS, "eq.hpf.*"]
    model = strip_on_fit(str(FIT), learn=learn, add=["eq.*.gain_db"]).eval()
    fit, _ = load_model(FIT)
    assert model.member_residual[-1] == added and all(r == [] for r in model.member_residual[:-1])
    stems, roles = _stems(3), torch.tensor([[0, 1, 5, 5, 7]])
    learned = [STRIP.index(n) for n in select_outputs(learn)]
    kept = [i for i in range(STRIP.size) if i not in learned]
    with torch.no_grad():
        start, want = model(stems, SR, roles), fit(stems, SR, roles)
    # at the start the correction is zero: every parameter not learned is the fit's, EQ gains included
    assert (STRIP.to_unit(start) - STRIP.to_unit(want))[..., kept].abs().max() < 1e-5
    # the learner's band gains add to the fit's, in dB (unit 0.5 +/- x over the 30 dB range)
    shift = {name: k for k, name in enumerate(added, start=1)}  # a different logit per band
    with torch.no_grad():
        for name, k in shift.items():
            model.members[-1].head[-1].bias[STRIP.index(name)] = 0.1 * k
        moved = model(stems, SR, roles)
    for name, k in shift.items():
        i = STRIP.index(name)
        step_db = 30.0 * (torch.sigmoid(torch.tensor(0.1 * k)).item() - 0.5)
        expect = (want[..., i] + step_db).clamp(-15.0, 15.0)
        assert (moved[..., i] - expect).abs().max() < 1e-3, name
    others = [i for i in kept if STRIP.names[i] not in added]
    assert (STRIP.to_unit(moved) - STRIP.to_unit(want))[..., others].abs().max() < 1e-5
    # saved, it loads as the same model in torch and in numpy
    path = save_checkpoint(tmp_path / "added.pt", model, {})
    assert torch.load(path, weights_only=True)["member_residual"][-1] == added
    loaded, _ = load_model(path)
    array_model, _ = load_array_model(path)
    feats = loaded.analyse(stems, SR)
    with torch.no_grad():
        torch_units = loaded.predict_unit(feats, roles).numpy()
        orig_units = model.predict_unit(feats, roles).numpy()
    numpy_units = array_model.predict_unit(feats.stems.numpy(), feats.mix.numpy(), roles.numpy())
    assert np.abs(torch_units - orig_units).max() < 1e-6 and np.abs(numpy_units - torch_units).max() < 2e-6
    # the correction trains through a render: gradients reach the learner's band-gain head rows
    from automix.dsp.console import render_mix

    model.train()
    render_mix(stems, model(stems, SR, roles), SR).mix.square().mean().backward()
    grad = model.members[-1].head[-1].bias.grad
    assert torch.isfinite(grad).all() and all(grad[STRIP.index(n)].abs() > 0 for n in added)
    with pytest.raises(ValueError, match="in both learn and add"):
        strip_on_fit(str(FIT), learn=["pan", "eq.peak1.gain_db"], add=["eq.*.gain_db"])
    with pytest.raises(ModelError, match="both sets and adds"):
        MixEnsemble([fit.members[0], fit.members[1]], [None, ["pan"]], [[], ["pan"]])
