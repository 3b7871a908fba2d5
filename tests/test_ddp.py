"""DDP: two CPU processes under torchrun (gloo) train a few steps and stay identical."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from multitrack_synth import write_dataset

RANK_SCRIPT = textwrap.dedent('''
    import json, os, sys
    import torch
    sys.path.insert(0, sys.argv[1])
    from test_train_e2e import compose, tiny_overrides
    from train.__main__ import run

    root, cache, run_dir = sys.argv[2:5]
    trainer = run(compose(tiny_overrides(root, cache, run_dir, max_steps=3)), run_dir)
    rank = int(os.environ["RANK"])
    torch.save(trainer.model.state_dict(), os.path.join(run_dir, f"rank{rank}.pt"))
    trainer.sampler.set_epoch(0)
    with open(os.path.join(run_dir, f"rank{rank}.json"), "w") as f:
        json.dump({"positions": list(trainer.sampler), "world_size": trainer.env.world_size,
                   "history": trainer.history}, f)
''')


def test_two_cpu_processes_stay_identical(tmp_path):
    root = write_dataset(tmp_path / "songs", n_songs=5, seconds=2.0)
    script = tmp_path / "rank.py"
    script.write_text(RANK_SCRIPT)
    run_dir = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).parent))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(script), str(Path(__file__).parent), str(root), str(tmp_path / "cache"), str(run_dir)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
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
