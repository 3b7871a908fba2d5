"""Ctrl-C (SIGINT) and SIGTERM in the middle of ``automix mix``, ``automix master`` and training:
no partial output, no temporary file, one line, exit status 130 / 143.

Each command runs as a real process. So that the signal lands mid-work on a small test
input, the process runs the real command with one stage slowed down (a short sleep per
rendered block or per written block) and says on stderr when that stage has begun; the test
then sends the signal and checks what is left on disk.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mix_models import opinionated_model_checkpoint

REPO = Path(__file__).resolve().parents[1]
MARK = "test: stage started"

#: Python run before the command: slows one stage and announces it (``{stage}`` picks which).
SLOW = textwrap.dedent('''
    import sys, time
    stage = {stage!r}
    said = []

    def announce():
        if not said:
            said.append(1)
            print({mark!r}, file=sys.stderr, flush=True)

    if stage == "render":
        import automix.mixing as mixing
        real_render = mixing.render

        def render(*args, progress=None, **kwargs):
            def slow(done, total):
                announce()
                time.sleep(0.25)
                if progress is not None:
                    progress(done, total)
            kwargs["block_seconds"] = 0.5  # 12 blocks of the 6 s song
            return real_render(*args, progress=slow, **kwargs)

        mixing.render = render
    elif stage == "write":
        import soundfile
        real_write = soundfile.SoundFile.write

        def write(self, data):
            announce()
            time.sleep(1.5)
            return real_write(self, data)

        soundfile.SoundFile.write = write
    elif stage == "train":
        from train.trainer import Trainer
        real_step = Trainer._train_step

        def step(self, *args, **kwargs):
            announce()
            time.sleep(0.2)
            return real_step(self, *args, **kwargs)

        Trainer._train_step = step
''')


def start(stage: str, entry: str, args: list[str], cwd: Path) -> subprocess.Popen:
    code = SLOW.format(stage=stage, mark=MARK) + entry
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def interrupt_when_started(proc: subprocess.Popen, signum: int, timeout: float = 120.0,
                           ready=lambda: True) -> tuple[int, str]:
    """Wait for the stage's mark on stderr (and ``ready()``), send ``signum``; returns (status, stderr)."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if MARK in line:
            time.sleep(0.3)  # well inside the slowed stage
            assert ready(), "the stage began but its sign is not there"
            proc.send_signal(signum)
            break
    else:
        proc.kill()
        pytest.fail(f"the stage never started: {''.join(seen)}")
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert MARK in "".join(seen), "".join(seen) + err
    return proc.returncode, err


def leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _song(folder: Path, seconds: float = 6.0, rate: int = 22050, stems: int = 3) -> Path:
    folder.mkdir(parents=True)
    t = np.arange(int(seconds * rate)) / rate
    for i in range(stems):
        x = 0.2 * np.sin(2 * np.pi * (110 * (i + 1)) * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.5 * t))
        sf.write(folder / f"stem{i}.wav", np.stack([x, x]).T, rate, subtype="PCM_24")
    return folder


def _check_stopped(status: int, err: str, signum: int) -> None:
    assert status == 128 + signum, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip() and MARK not in line]
    assert len(lines) == 1, lines
    name = "Ctrl-C (SIGINT)" if signum == signal.SIGINT else "SIGTERM"
    assert lines[0].startswith("automix") and f"stopped by {name}" in lines[0], lines[0]


CLI = "from automix.cli import console_main\nsys.argv = ['automix', *sys.argv[1:]]\nconsole_main()\n"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_mix_stopped_mid_render_leaves_nothing(tmp_path, signum):
    song = _song(tmp_path / "song")
    model = opinionated_model_checkpoint(tmp_path, seed=0)
    out = tmp_path / "out"
    out.mkdir()
    before = {p: p.read_bytes() for p in song.iterdir()}
    proc = start("render", CLI, ["mix", str(song), "-o", str(out / "mix.wav"), "--model", str(model),
                                 "--stems-out", str(out / "stems"), "--settings-out", str(out / "s.json")], tmp_path)
    status, err = interrupt_when_started(proc, signum)
    _check_stopped(status, err, signum)
    assert leftovers(out) == []  # no mix, no stems, no settings, no temporary file
    assert {p: p.read_bytes() for p in song.iterdir()} == before


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_master_stopped_while_writing_leaves_nothing(tmp_path, signum):
    rate = 22050
    t = np.arange(8 * rate) / rate
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.7 * t))
    mix = tmp_path / "mix.wav"
    sf.write(mix, np.stack([x, 0.9 * x]).T, rate, subtype="PCM_24")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("an unrelated file\n")
    proc = start("write", CLI, ["master", str(mix), "-o", str(out / "master.wav"), "--target", "-16"], tmp_path)
    status, err = interrupt_when_started(proc, signum, ready=lambda: any(p.name.startswith(".master.")
                                                                         for p in out.iterdir()))
    _check_stopped(status, err, signum)
    assert leftovers(out) == ["keep.txt"]  # the half-written temporary file is gone, no master appeared


TRAIN = "from train.__main__ import main\nsys.argv = ['train', *sys.argv[1:]]\nmain()\n"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_training_stopped_mid_step_keeps_its_last_checkpoint(tmp_path, signum):
    import torch
    from multitrack_synth import write_dataset
    from test_train_e2e import tiny_overrides

    root = write_dataset(tmp_path / "songs", n_songs=4, seconds=1.5)
    run_dir = tmp_path / "run"
    overrides = tiny_overrides(root, tmp_path / "cache", run_dir, max_steps=400) + ["trainer.checkpoint_every=1"]
    proc = start("train", TRAIN, overrides, tmp_path)
    deadline = time.monotonic() + 180
    seen = []
    while time.monotonic() < deadline:  # wait until a checkpoint exists and training goes on
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if MARK in line:
            while time.monotonic() < deadline and not (run_dir / "last.pt").exists():
                time.sleep(0.1)
            time.sleep(0.5)
            proc.send_signal(signum)
            break
    _, err = proc.communicate(timeout=180)
    status = proc.returncode
    assert status == 128 + signum, "".join(seen) + err
    lines = [line for line in err.splitlines() if line.startswith("automix-train:")]
    assert len(lines) == 1 and "stopped by" in lines[0], err
    assert "Traceback" not in err
    names = leftovers(run_dir)
    assert not [n for n in names if ".tmp" in n or Path(n).name.startswith(".")], names  # no temporary file
    payload = torch.load(run_dir / "last.pt", weights_only=True)  # the last checkpoint is whole
    assert payload["training"]["step"] >= 1
