"""DDP: two CPU processes under torchrun (gloo) train a few steps and stay identical;
killed after a checkpoint and resumed, they end with the uninterrupted run's weights bit for bit.

The torchrun jobs run from one copy of the code taken when the test starts
(:func:`snapshot_code`): every job imports the package afresh, and run from the checkout
an edit saved between two of them (the checkout is shared with people working on it)
trains the resumed run on other code than the uninterrupted one. That, not the trainer, was
issue 16's one unexplained failure: a model and loss edit (7812118) landed while the loop's
19th iteration ran, and the resumed weights differed everywhere on both ranks.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from busy_cores import busy_cores  # noqa: F401 (fixture)
from multitrack_synth import write_dataset

RANK_SCRIPT = textwrap.dedent('''
    import json, os, sys
    import torch
    sys.path.insert(0, sys.argv[1])
    from test_train_e2e import compose, tiny_overrides
    from train.__main__ import run
    from train.trainer import Trainer

    root, cache, run_dir = sys.argv[2:5]
    import automix, train.trainer
    with open(os.environ["IMPORT_REPORT"] + ".rank" + os.environ["RANK"], "w") as f:  # where the code came from
        f.write(os.path.dirname(os.path.dirname(train.trainer.__file__)) + " "
                + os.path.dirname(os.path.dirname(automix.__file__)))
    die_at = int(os.environ.get("DIE_AT_STEP", "-1"))
    if die_at >= 0:  # both ranks stop at the start of that step, as a killed job would
        real_step = Trainer._train_step

        def dying_step(self, *args, **kwargs):
            if self.step == die_at:
                raise KeyboardInterrupt
            return real_step(self, *args, **kwargs)

        Trainer._train_step = dying_step
    term_at = int(os.environ.get("TERM_AT_SAVE", "-1"))
    if term_at >= 0 and os.environ["RANK"] == "0":  # SIGTERM while rank 0 writes that step's last.pt
        import signal
        import train.checkpoint
        real_save = train.checkpoint.save_checkpoint

        def interrupted_save(path, model, info):
            real_save(path, model, info)  # the temporary file holds the weights, not yet the resume state
            if info["step"] == term_at and os.path.basename(path).startswith(".last.pt."):
                os.kill(os.getpid(), signal.SIGTERM)

        train.checkpoint.save_checkpoint = interrupted_save
    from automix.interrupts import stop_on_signals
    with stop_on_signals():  # SIGTERM raises, as under automix-train
        trainer = run(compose(tiny_overrides(root, cache, run_dir, max_steps=3)), run_dir)
    rank = int(os.environ["RANK"])
    torch.save(trainer.model.state_dict(), os.path.join(run_dir, f"rank{rank}.pt"))
    trainer.sampler.set_epoch(0)
    with open(os.path.join(run_dir, f"rank{rank}.json"), "w") as f:
        json.dump({"positions": list(trainer.sampler), "world_size": trainer.env.world_size,
                   "history": trainer.history}, f)
''')


def snapshot_code(dest: Path) -> Path:
    """Copy the code the jobs import (``automix``, ``train``, ``configs``, ``tests``) to ``dest``.

    Numba's cached kernels come along (they are keyed by their source file's time stamp and size,
    which the copy keeps: an up-to-date cache saves the first job ~25 s of compiling); bytecode and
    files being written (``*.tmp.*``, ``*.pyc.*``) do not.
    """
    repo = Path(__file__).resolve().parents[1]
    skip = shutil.ignore_patterns("*.pyc", "*.pyc.*", "*.tmp.*", "*.tmp")
    for name in ("automix", "train", "configs", "tests"):
        shutil.copytree(repo / name, dest / name, ignore=skip)
    return dest


def torchrun(tmp_path: Path, code: Path, root: Path, run_dir: Path, die_at: int = -1,
             term_at: int = -1) -> subprocess.CompletedProcess:
    """Two ranks of RANK_SCRIPT, importing only from the snapshot ``code`` (each rank reports it in a file)."""
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    report = tmp_path / f"imported-{len(list(tmp_path.glob('imported-*.rank0')))}"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{code}{os.pathsep}{code / 'tests'}",
               DIE_AT_STEP=str(die_at), TERM_AT_SAVE=str(term_at), IMPORT_REPORT=str(report))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script), str(code / "tests"), str(root), str(tmp_path / "cache"), str(run_dir)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    imported = [Path(f"{report}.rank{r}").read_text() if Path(f"{report}.rank{r}").exists() else None
                for r in range(2)]
    assert imported == [f"{code} {code}"] * 2, (imported, proc.stdout[-2000:] + proc.stderr[-2000:])
    return proc


def test_two_cpu_processes_stay_identical_and_resume_exactly(busy_cores, tmp_path):
    code = snapshot_code(tmp_path / "snapshot")  # every job runs this code, whatever the checkout does meanwhile
    root = write_dataset(tmp_path / "songs", n_songs=5, seconds=2.0)
    run_dir = tmp_path / "run"
    proc = torchrun(tmp_path, code, root, run_dir)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    import json

    ranks = [json.loads((run_dir / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    a, b = (torch.load(run_dir / f"rank{r}.pt", weights_only=True) for r in range(2))
    for name in a:
        assert torch.equal(a[name], b[name]), name  # DDP averaged the same gradients on both ranks
    assert ranks[0]["positions"] != ranks[1]["positions"]  # ...computed on different excerpts
    assert ranks[0]["history"] == ranks[1]["history"] and ranks[0]["history"]  # all-reduced validation
    checkpoint = torch.load(run_dir / "last.pt", weights_only=True)
    assert checkpoint["training"]["world_size"] == 2 and checkpoint["training"]["step"] == 3
    for name in a:
        assert torch.equal(checkpoint["state_dict"][name], a[name])
    assert not list(tmp_path.glob("rank*.log"))

    # killed at the start of step 3 (the last checkpoint: step 2), then resumed
    killed = tmp_path / "killed"
    proc = torchrun(tmp_path, code, root, killed, die_at=2)
    assert proc.returncode != 0 and "KeyboardInterrupt" in proc.stdout + proc.stderr
    assert torch.load(killed / "last.pt", weights_only=True)["training"]["step"] == 2
    # resumed, then stopped by SIGTERM while rank 0 writes the step-3 checkpoint (the other rank waits
    # in the last barrier): the step-2 one stays whole and no temporary file is left
    proc = torchrun(tmp_path, code, root, killed, term_at=3)
    assert proc.returncode != 0 and "Interrupted" in proc.stdout + proc.stderr, proc.stderr[-3000:]
    assert torch.load(killed / "last.pt", weights_only=True)["training"]["step"] == 2
    assert not list(killed.glob(".*")) and not list(killed.glob("*.tmp"))
    # resumed again: the uninterrupted run's weights
    proc = torchrun(tmp_path, code, root, killed)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for r in range(2):
        resumed = torch.load(killed / f"rank{r}.pt", weights_only=True)
        different = [name for name in a if not torch.equal(resumed[name], a[name])]
        assert not different, (r, different)

