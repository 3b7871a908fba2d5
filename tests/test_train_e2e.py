"""End to end on tiny synthetic multitracks: train, checkpoint, kill, resume, evaluate."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from busy_cores import busy_cores  # noqa: F401 (fixture)
from multitrack_synth import write_dataset

torch.set_num_threads(1)
SR = 16000


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from train.__main__ import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return hydra_compose("train", overrides=overrides)


def tiny_overrides(root: Path, cache: Path, run_dir: Path, max_steps: int = 5) -> list[str]:
    """3 steps per epoch of 2 half-second excerpts; a checkpoint every 2 steps."""
    return [f"data.root={root}", f"data.cache_dir={cache}", f"run_dir={run_dir}",
            f"data.sample_rate={SR}", "data.excerpt_seconds=0.5", "data.excerpts_per_epoch=6",
            "data.valid_fraction=0.25", "data.valid_excerpts_per_song=2", "data.reference_probability=0.5",
            "trainer=smoke", f"trainer.max_steps={max_steps}", "trainer.batch_size=2",
            "trainer.checkpoint_every=2", "trainer.log_every=1", "trainer.keep_checkpoints=2",
            "trainer.progress=false", "trainer.learning_rate=1e-3",
            "model.d_model=32", "model.n_layers=1", "loss.terms.stft.fft_sizes=[512,128]"]


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    base = tmp_path_factory.mktemp("e2e")
    return (write_dataset(base / "train", n_songs=5, seconds=2.0), write_dataset(base / "heldout", n_songs=2, seconds=2.0),
            base / "cache")  # decoded once, shared by the tests


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_train_kill_resume_matches_uninterrupted_run_and_evaluates(busy_cores, songs, tmp_path, monkeypatch,
                                                                  capsys):
    from automix.cli import main as automix_main
    from automix.dsp.params import PARAM_TABLE_VERSION
    from automix.model.checkpoint import load_model
    from train.__main__ import run
    from train.trainer import Trainer

    root, heldout, cache = songs
    # dropout: the global torch generator decides every step too (it is in the checkpoint)
    dropout = ["model.dropout=0.1"]
    # both configs read now: an edit saved to configs/ between the runs cannot make them differ
    config_a, config_b = (compose(tiny_overrides(root, cache, tmp_path / d) + dropout) for d in "AB")
    straight = run(config_a, tmp_path / "A")
    assert straight.step == 5

    # the same run, killed during its 4th step (last checkpoint: step 2, mid-epoch), then resumed
    real_step = Trainer._train_step

    def dying_step(self, *args, **kwargs):
        if self.step == 3:
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_train_step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        run(config_b, tmp_path / "B")
    assert torch.load(tmp_path / "B" / "last.pt", weights_only=True)["training"]["step"] == 2
    monkeypatch.setattr(Trainer, "_train_step", real_step)
    resumed = run(config_b, tmp_path / "B")
    assert resumed.step == 5
    from hydra.utils import instantiate

    torch.manual_seed(0)
    initial = instantiate(compose(tiny_overrides(root, cache, tmp_path / "A")).model).state_dict()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    moved = max(float((a[n] - initial[n]).abs().max()) for n in a)
    assert moved > 1e-3
    different = [n for n in a if not torch.equal(a[n], b[n])]
    assert not different, different  # bit for bit: the resumed run is the run that was started

    # files of a run
    run_a = tmp_path / "A"
    config = yaml.safe_load((run_a / "config.yaml").read_text())
    assert config["data"]["root"] == str(root) and config["data"]["sample_rate"] == SR
    assert sorted(p.name for p in run_a.glob("step_*.pt")) == ["step_0000004.pt", "step_0000005.pt"]
    rows = _read_csv(tmp_path / "B" / "train.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, 6))  # rows after the kill were replaced
    for ra, rb in zip(_read_csv(run_a / "train.csv"), rows):
        assert rb["loss"] == ra["loss"]
    assert 0.0 <= float(rows[-1]["data_wait_fraction"]) < 1.0
    valid = _read_csv(run_a / "valid.csv")
    assert [int(r["step"]) for r in valid] == [3, 5]  # end of epoch 0, end of the run
    for system in ("model", "sum", "equal_loudness"):
        assert float(valid[-1][f"lsd_db.{system}"]) > 0 and float(valid[-1][f"balance_lu.{system}"]) > 0

    # checkpoints: plain tensors + config, ready for inference
    payload = torch.load(run_a / "last.pt", weights_only=True)
    assert payload["param_table_version"] == PARAM_TABLE_VERSION
    assert payload["info"]["sample_rate"] == SR and payload["info"]["config"]["model"]["d_model"] == 32
    model, info = load_model(run_a / "best.pt")
    model, info = load_model(run_a / "last.pt")
    x = torch.randn(1, 3, 2, SR) * 0.1
    roles, mask = torch.zeros(1, 3, dtype=torch.long), torch.ones(1, 3, dtype=torch.bool)
    straight.model.eval()
    torch.testing.assert_close(model(x, SR, roles, mask), straight.model(x, SR, roles, mask))

    # held-out evaluation through the CLI
    out = tmp_path / "scores.json"
    assert automix_main(["evaluate", str(heldout), "--model", str(run_a / "last.pt"), "--seconds", "1.5",
                         "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "song0" in printed and "mean" in printed
    scores = json.loads(out.read_text())
    assert set(scores["summary"]) == {"model", "sum", "equal_loudness"}
    assert len(scores["songs"]) == 6 and scores["sample_rate"] == SR
    for row in scores["songs"]:
        assert math.isfinite(row["spectral_distance_db"]) and row["balance_error_lu"] >= 0
    assert scores["summary"]["sum"]["balance_error_lu"] > 1.0  # +/-9 dB gains did move the stems
    assert automix_main(["evaluate", str(heldout), "--model", str(run_a / "last.pt"), "--json", str(out)]) == 2


def test_gradients_through_the_console_fit_one_batch(songs, tmp_path):
    """A few optimiser steps on one batch must cut its loss: the model learns through the audio."""
    from hydra.utils import instantiate

    from automix.data import MultitrackData, collate_excerpts
    from automix.losses import MixPrediction
    from train.step import step_generator

    cfg = compose(tiny_overrides(songs[0], songs[2], tmp_path / "run"))
    data: MultitrackData = instantiate(cfg.data)
    ds = data.dataset(data.prepare(("train",))["train"])
    batch = collate_excerpts([ds[(0, 4000)], ds[(1, 12000)]])
    torch.manual_seed(0)
    model, loss_fn, render = instantiate(cfg.model), instantiate(cfg.loss), instantiate(cfg.console)
    inputs, _ = data.perturbation.apply(batch["stems"], SR, step_generator(0, 0, 0), stem_mask=batch["mask"],
                                        render=render)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(10):
        strip = model(inputs, SR, batch["roles"], batch["mask"])
        result = render(inputs, strip, SR, stem_mask=batch["mask"])
        loss, _ = loss_fn(MixPrediction(result.mix, result.stems, batch["target_mix"], batch["stems"],
                                        batch["mask"], strip, SR))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0], losses


def test_command_line_reports_a_bad_dataset_in_one_line(tmp_path):
    """``python -m train`` (the Hydra app) composes the configs and turns DatasetError into exit 2."""
    import subprocess
    import sys

    (tmp_path / "empty").mkdir()
    proc = subprocess.run([sys.executable, "-m", "train", f"data.root={tmp_path / 'empty'}",
                           f"run_dir={tmp_path / 'run'}", "trainer=smoke"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "automix-train: error: no songs found" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (tmp_path / "run" / ".hydra" / "config.yaml").exists()


def test_resume_weights_only_fine_tunes_from_step_zero_and_a_changed_model_says_how(songs, tmp_path):
    from automix.errors import AutomixError
    from train.__main__ import run

    root, _, cache = songs
    run(compose(tiny_overrides(root, cache, tmp_path / "A", max_steps=2)), tmp_path / "A")
    source = torch.load(tmp_path / "A" / "last.pt", weights_only=True)
    # an optimiser state that does not fit the model (as after the model gained parameters)
    broken = dict(source, training=dict(source["training"]))
    optimizer = {**broken["training"]["optimizer"]}
    optimizer["param_groups"] = [dict(g, params=g["params"][:-1]) for g in optimizer["param_groups"]]
    broken["training"]["optimizer"] = optimizer
    torch.save(broken, tmp_path / "changed.pt")
    with pytest.raises(AutomixError, match="trainer.resume_weights_only=true"):
        run(compose(tiny_overrides(root, cache, tmp_path / "B", max_steps=2)
                    + [f"trainer.resume={tmp_path / 'changed.pt'}", "trainer.validate=false"]), tmp_path / "B")
    # with the switch: the weights come over, the run starts at step 0 and trains max_steps steps
    run(compose(tiny_overrides(root, cache, tmp_path / "C", max_steps=1)
                + [f"trainer.resume={tmp_path / 'changed.pt'}", "trainer.resume_weights_only=true",
                   "trainer.learning_rate=0", "trainer.validate=false"]), tmp_path / "C")
    rows = _read_csv(tmp_path / "C" / "train.csv")
    assert [int(r["step"]) for r in rows] == [1]
    tuned = torch.load(tmp_path / "C" / "last.pt", weights_only=True)
    assert tuned["training"]["step"] == 1
    for name, value in source["state_dict"].items():  # learning rate 0: the weights are the source's
        assert torch.equal(tuned["state_dict"][name], value), name
    # a checkpoint from before the pair-spread head: fine-tuning starts the head at pairs 0.6 apart
    # (loaded for inference it has no spread, and no gradient to learn one)
    old = dict(source, state_dict={k: v for k, v in source["state_dict"].items() if "spread" not in k})
    torch.save(old, tmp_path / "old.pt")
    from automix.model.mixnet import MAX_PAIR_SPREAD

    run(compose(tiny_overrides(root, cache, tmp_path / "D", max_steps=1)
                + [f"trainer.resume={tmp_path / 'old.pt'}", "trainer.resume_weights_only=true",
                   "trainer.learning_rate=0", "trainer.validate=false"]), tmp_path / "D")
    started = torch.load(tmp_path / "D" / "last.pt", weights_only=True)["state_dict"]
    assert MAX_PAIR_SPREAD * float(torch.sigmoid(started["spread_bias"])) == pytest.approx(0.6)
    assert not started["spread_weight"].any()
