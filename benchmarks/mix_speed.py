"""Speed of ``automix mix``: wall time as a ratio to the I/O floor, measured in the same run.

Workload (issue 6): 8 stereo stems of 3.5 minutes at 44.1 kHz (24-bit WAV; synthesised:
drum-like bursts, bass and chord tones, noise pads, so the compressor and EQ really work).

* **I/O floor** -- read the 8 stems and write one mix (their sum), nothing a mixer could
  skip, measured two ways: as a command (a fresh Python process that reads the stems with
  soundfile, sums them and writes the mix: start-up and the I/O libraries' imports are part
  of any command's floor), and inside this process with automix's own audio I/O.
* **automix mix** -- the command as a user runs it (a fresh ``python -m automix mix``
  process: start-up, imports, loading, analysis, model, full-length exact console render,
  writing the mix), compared with the command floor; and the same work through the Python
  API in this process, compared with the in-process floor.

Prints both ratios (target: ``automix mix`` / I/O floor <= 3). The machine is shared and
noisy, so each measurement is repeated (interleaved) and the best time is kept.

Usage: ``python benchmarks/mix_speed.py [--minutes 3.5] [--stems 8] [--repeats 2] [--model PATH]``;
``--long [--minutes 12 3] [--stems 16]``: peak RSS of long, large sessions (``benchmarks/mix_long.py``).
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


#: The command floor: read the stems with soundfile, sum them, write the mix (24-bit WAV).
FLOOR_COMMAND = """
import sys
import numpy as np
import soundfile as sf
files, out = sys.argv[1:-1], sys.argv[-1]
total = None
for f in files:
    x, sr = sf.read(f, dtype="float32", always_2d=True)
    total = x if total is None else total + x
sf.write(out, total / len(files), sr, subtype="PCM_24")
"""


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


def long_sessions(argv: list[str]) -> int:
    """``--long``: peak RSS of 12-minute, 16-stem sessions (``benchmarks/mix_long.py``, its options)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from mix_long import main as mix_long_main

    mix_long_main([a for a in argv if a != "--long"])
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--long" in argv:
        return long_sessions(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.5)
    parser.add_argument("--stems", type=int, default=8)
    parser.add_argument("--sample-rate", type=int, default=44100)
    parser.add_argument("--repeats", type=int, default=3)
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

        def floor_command() -> None:
            subprocess.run([sys.executable, "-c", FLOOR_COMMAND, *map(str, files), str(tmp / "floor_cmd.wav")],
                           check=True)

        def io_floor() -> None:
            total = load_audio(files[0]).samples
            for f in files[1:]:
                total += load_audio(f).samples
            write_audio(tmp / "floor.wav", total / len(files), sr, subtype="PCM_24", overwrite=True)

        def cli() -> None:
            subprocess.run([sys.executable, "-m", "automix", "mix", str(stems_dir), "-o", str(tmp / "cli.wav"),
                            "--model", model, "--overwrite", "-q"], check=True, stdout=subprocess.DEVNULL)

        def api() -> None:
            mix(stems_dir, tmp / "api.wav", model=model, overwrite=True)

        io_floor()  # warm the page cache for everyone
        cli()  # and numba's on-disk cache of compiled kernels (as after any first run)
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in ("cmd_floor", "cli", "floor", "api")}
        for _ in range(args.repeats):  # interleaved, so a noisy spell hits every measurement alike
            for key, fn in (("cmd_floor", floor_command), ("cli", cli), ("floor", io_floor), ("api", api)):
                times[key].append(best_of(1, fn))
    best = {k: (min(w for w, _ in v), min(c for _, c in v)) for k, v in times.items()}
    print(f"workload: {args.stems} stereo stems x {args.minutes:g} min at {sr} Hz, torch threads {torch.get_num_threads()}, "
          f"best of {args.repeats}")
    print("                                             wall s   ratio |  CPU s   ratio (CPU: less sensitive to other jobs)")
    rows = (("I/O floor, command (fresh process)", "cmd_floor", "cmd_floor"),
            ("automix mix (command, fresh process)", "cli", "cmd_floor"),
            ("I/O floor, in this process", "floor", "floor"),
            ("automix.mixing.mix (Python API)", "api", "floor"))
    for label, key, ref in rows:
        (wall, cpu), (ref_wall, ref_cpu) = best[key], best[ref]
        print(f"{label:43s} {wall:7.2f} {wall / ref_wall:7.2f} | {cpu:6.2f} {cpu / ref_cpu:7.2f}")
    ratio = best["cli"][0] / best["cmd_floor"][0]
    print(f"automix mix / I/O floor (commands): {ratio:.2f} (target <= 3: {'met' if ratio <= 3 else 'not met'})")
    print(f"Python API / I/O floor (in process): {best['api'][0] / best['floor'][0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
