"""Speed of ``automix mix``: wall time as a ratio to the I/O floor, measured in the same run.

Workload (issue 6): 8 stereo stems of 3.5 minutes at 44.1 kHz (24-bit WAV; synthesised:
drum-like bursts, bass and chord tones, noise pads, so the compressor and EQ really work).

* **I/O floor** -- read the 8 stems and write one mix (the sum) with automix's own audio I/O,
  in this process: nothing a mixer could skip.
* **automix mix** -- the command as a user runs it (a fresh ``python -m automix mix``
  process: start-up, imports, loading, analysis, model, full-length exact console render,
  writing the mix), and the same work through the Python API in this process.

Prints both ratios (target: ``automix mix`` / I/O floor <= 3). The machine is shared and
noisy, so each measurement is repeated and the best time is kept.

Usage: ``python benchmarks/mix_speed.py [--minutes 3.5] [--stems 8] [--repeats 2] [--model PATH]``
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROLES = ("kick", "snare", "hihat", "bass", "guitar", "piano", "pad", "vocals", "strings", "synth")


def synth_stem(role: str, seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A stereo stem ``[2, T]`` with the envelope and spectrum typical of ``role``."""
    n = int(seconds * sr)
    t = np.arange(n) / sr
    beat = (t * 2.0) % 1.0  # 120 bpm quarter notes
    if role in ("kick", "snare", "hihat"):
        decay = {"kick": 25.0, "snare": 18.0, "hihat": 60.0}[role]
        env = np.exp(-decay * beat)
        body = np.sin(2 * np.pi * 55 * t) if role == "kick" else rng.standard_normal(n)
        if role == "hihat":
            body = np.diff(body, prepend=0.0)
        mono = 0.2 * env * body
    elif role == "bass":
        mono = 0.3 * np.sin(2 * np.pi * 55 * (1 + (np.floor(t / 2) % 4) / 4) * t)
    elif role == "pad":
        mono = 0.05 * np.convolve(rng.standard_normal(n), np.ones(64) / 64, mode="same")
    else:
        f0 = {"guitar": 196.0, "piano": 261.6, "vocals": 330.0, "strings": 392.0, "synth": 523.0}[role]
        mono = sum(0.15 / k * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) for k in range(1, 6))
        mono = mono * (0.6 + 0.4 * np.sin(2 * np.pi * 0.25 * t))
    spread = rng.uniform(0.7, 1.0)
    return np.stack([mono, spread * mono + (1 - spread) * np.roll(mono, 17)]).astype(np.float32)


def best_of(repeats: int, fn) -> tuple[float, float]:
    """Best wall time and best CPU time (this process and its children, all threads) of ``fn``."""
    walls, cpus = [], []
    for _ in range(repeats):
        c0 = _cpu()
        t0 = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(_cpu() - c0)
    return min(walls), min(cpus)


def _cpu() -> float:
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.5)
    parser.add_argument("--stems", type=int, default=8)
    parser.add_argument("--sample-rate", type=int, default=44100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model", default=None, help="checkpoint (default: models/mixer.pt, else an untrained model)")
    args = parser.parse_args(argv)

    import torch

    from automix.audio import load_audio, write_audio
    from automix.mixing import mix
    from automix.model.checkpoint import DEFAULT_MODEL_PATH, save_checkpoint
    from automix.model.mixnet import MixModel

    sr = args.sample_rate
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="mix_speed_") as tmp:
        tmp = Path(tmp)
        stems_dir = tmp / "stems"
        stems_dir.mkdir()
        for i in range(args.stems):
            role = ROLES[i % len(ROLES)]
            write_audio(stems_dir / f"{i:02d}_{role}.wav", synth_stem(role, args.minutes * 60, sr, rng), sr,
                        subtype="PCM_24")
        model = args.model
        if model is None:
            if DEFAULT_MODEL_PATH.is_file():
                model = str(DEFAULT_MODEL_PATH)
            else:
                model = str(save_checkpoint(tmp / "untrained.pt", MixModel(), {"sample_rate": 22050}))
                print("note: no shipped weights; timing an untrained model of the default size")
        files = sorted(stems_dir.iterdir())

        def io_floor() -> None:
            audio = [load_audio(f).samples for f in files]
            write_audio(tmp / "floor.wav", np.sum(audio, axis=0) / len(audio), sr, subtype="PCM_24", overwrite=True)

        def cli() -> None:
            subprocess.run([sys.executable, "-m", "automix", "mix", str(stems_dir), "-o", str(tmp / "cli.wav"),
                            "--model", model, "--overwrite", "-q"], check=True, stdout=subprocess.DEVNULL)

        def api() -> None:
            mix(stems_dir, tmp / "api.wav", model=model, overwrite=True)

        io_floor()  # warm the page cache for everyone
        floor = best_of(args.repeats, io_floor)
        t_cli = best_of(args.repeats, cli)
        t_api = best_of(args.repeats, api)
        floor_again = best_of(args.repeats, io_floor)
    floor = (min(floor[0], floor_again[0]), min(floor[1], floor_again[1]))
    print(f"workload: {args.stems} stereo stems x {args.minutes:g} min at {sr} Hz, torch threads {torch.get_num_threads()}")
    print("                                          wall s   ratio |  CPU s   ratio (CPU time: less sensitive to other jobs)")
    for label, (wall, cpu) in (("I/O floor (read stems + write one mix)", floor),
                               ("automix mix (command, fresh process)", t_cli),
                               ("automix.mixing.mix (Python API)", t_api)):
        print(f"{label:40s} {wall:7.2f} {wall / floor[0]:7.2f} | {cpu:6.2f} {cpu / floor[1]:7.2f}")
    print("target: automix mix wall time <= 3 x the I/O floor")
    return 0


if __name__ == "__main__":
    sys.exit(main())
