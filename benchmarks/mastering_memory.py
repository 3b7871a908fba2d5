"""Peak memory and time of mastering a long file (issue 4 section 8: "long files, up to an hour").

Synthesises a stereo 44.1 kHz mix of ``--minutes`` minutes on disk (32-bit float WAV in a
temporary folder, written block by block so this script never holds it), then in fresh
subprocesses, side by side in the same run:

* **read** -- only reads the file into memory (``automix.audio.load_audio``), the floor any
  in-memory tool pays;
* **master** -- ``automix.mastering.master(mix, out, target=-14)`` (with ``--reference``: a
  30 s synthetic reference, so the tonal-match FIR runs too), writing a 24-bit WAV.

It prints each run's peak RSS (``resource.getrusage(...).ru_maxrss`` of the subprocess), the ratio
of the master's peak RSS to the file's float32 size and to the read-only run, the time ratio
master / read, and the measured loudness and true peak of the master.

    python benchmarks/mastering_memory.py --minutes 10 [--reference] [--keep DIR]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SR = 44100
BLOCK_S = 10.0


def synth_block(index: int, frames: int, rng: np.random.Generator) -> np.ndarray:
    """``(frames, 2)`` float32 of music-like material: bass, chords, kick and hats, slowly changing level."""
    t = (index * frames + np.arange(frames)) / SR
    beat = np.mod(t, 0.5)
    bar = (t // 2.0).astype(np.int64)
    f0 = np.array([55.0, 65.4, 49.0, 73.4])[bar % 4]
    mid = 0.4 * np.exp(-beat * 6.0) * np.sin(2 * np.pi * f0 * t)
    mid += 0.3 * np.exp(-beat * 30.0) * np.sin(2 * np.pi * 60.0 * beat * (1 + np.exp(-beat * 40)))
    side = np.zeros(frames)
    for k, f in enumerate((220.0, 277.2, 329.6)):
        for h in range(1, 5):
            mid += 0.15 / h * np.exp(-np.mod(t, 2.0)) * np.sin(2 * np.pi * f * h * t + k)
            side += 0.05 / h * np.sin(2 * np.pi * f * h * 1.003 * t)
    hat = np.mod(t - 0.25, 0.5) < 0.05
    mid += hat * 0.08 * np.diff(rng.standard_normal(frames + 1))
    level = 10 ** ((-20.0 + 4.0 * np.sin(2 * np.pi * t / 97.0)) / 20.0)  # slow dynamics over minutes
    x = np.stack([mid + side, mid - side], axis=1) * (level / 0.5)[:, None]
    return x.astype(np.float32)


def write_long(path: Path, seconds: float) -> None:
    import soundfile as sf

    rng = np.random.default_rng(0)
    frames = int(BLOCK_S * SR)
    total = int(seconds * SR)
    with sf.SoundFile(str(path), "w", SR, 2, subtype="FLOAT", format="WAV") as f:
        for i, start in enumerate(range(0, total, frames)):
            f.write(synth_block(i, min(frames, total - start), rng))


CHILD = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(1)
mode, mix, out, ref = sys.argv[1:5]
from automix.audio import load_audio
from automix.mastering import master
t0 = time.perf_counter()
if mode == "read":
    audio = load_audio(mix)
    extra = {"frames": int(audio.samples.shape[-1])}
else:
    r = master(mix, out, reference=ref or None, target=-14.0, model=None)
    extra = {"lufs": r.integrated_lufs, "true_peak_dbtp": r.true_peak_dbtp}
seconds = time.perf_counter() - t0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"seconds": seconds, "peak_rss": rss, **extra}))
"""


def run_child(mode: str, mix: Path, out: Path, ref: Path | None) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, mode, str(mix), str(out), str(ref or "")],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--reference", action="store_true", help="match a 30 s synthetic reference (EQ runs)")
    parser.add_argument("--keep", type=Path, default=None, help="folder for the files (default: a temp dir)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(dir=args.keep) as tmp:
        folder = Path(tmp)
        mix = folder / "long_mix.wav"
        t0 = time.perf_counter()
        write_long(mix, args.minutes * 60.0)
        print(f"synthesised {args.minutes:g} min in {time.perf_counter() - t0:.0f} s: {mix.stat().st_size / 2**30:.2f} GiB")
        ref = None
        if args.reference:
            import soundfile as sf

            ref = folder / "reference.wav"
            r = synth_block(7, int(30 * SR), np.random.default_rng(1))
            sf.write(str(ref), np.clip(r * 3.0, -0.99, 0.99), SR, subtype="FLOAT")
        read = run_child("read", mix, folder / "unused.wav", None)
        done = run_child("master", mix, folder / "master.wav", ref)
        f32 = read["frames"] * 2 * 4
        gib = 2.0 ** 30
        print(f"file: {read['frames'] / SR / 60:.1f} min stereo, float32 size {f32 / gib:.2f} GiB")
        print(f"read only : peak RSS {read['peak_rss'] / gib:6.2f} GiB  time {read['seconds']:7.1f} s")
        print(f"master    : peak RSS {done['peak_rss'] / gib:6.2f} GiB  time {done['seconds']:7.1f} s  "
              f"({done['lufs']:.2f} LUFS, {done['true_peak_dbtp']:.2f} dBTP)")
        print(f"ratios    : master peak RSS / float32 size {done['peak_rss'] / f32:.2f}, "
              f"/ read-only RSS {done['peak_rss'] / read['peak_rss']:.2f}; time master / read "
              f"{done['seconds'] / read['seconds']:.1f}")
        print(f"peak RSS below 2 GiB (the target for a 60 min file): {'yes' if done['peak_rss'] < 2 * gib else 'NO'}")


if __name__ == "__main__":
    main()
