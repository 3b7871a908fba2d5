"""Peak memory and time of mastering long files (issue 4 section 8: "long files, up to an hour").

For each length in ``--minutes`` (default 10, 30 and 60) it synthesises a stereo 44.1 kHz mix
on disk (32-bit float WAV in a temporary folder, written block by block so this script never
holds it), then in fresh subprocesses, side by side in the same run:

* **read** -- only reads the file into memory (``automix.audio.load_audio``), the floor any
  in-memory tool pays;
* **master** -- ``automix.mastering.master(mix, out, target=-14)`` (with ``--reference``: a
  30 s synthetic reference, so the tonal-match FIR runs too), writing a 24-bit WAV.

It prints each run's peak RSS (``resource.getrusage(...).ru_maxrss`` of the subprocess) beside
the file's float32 size, the ratio of the master's peak RSS to that size and to the read-only
run, the time ratio master / read, the measured loudness and true peak of the master, the load
average of the machine, and a summary table over the lengths.

    python benchmarks/mastering_memory.py [--minutes 10 30 60] [--reference] [--keep DIR]
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
    extra = {"lufs": r.integrated_lufs, "true_peak_dbtp": r.true_peak_dbtp, "reached": r.landing.reached,
             "gain_reduction_db": r.landing.max_gain_reduction_db, "renders": r.landing.renders,
             "warnings": r.warnings}
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


def measure(minutes: float, folder: Path, reference: bool) -> dict:
    """Synthesise ``minutes`` of mix, read it and master it in fresh subprocesses; print and return the numbers."""
    import os

    mix = folder / f"long_mix_{minutes:g}min.wav"
    t0 = time.perf_counter()
    write_long(mix, minutes * 60.0)
    print(f"synthesised {minutes:g} min in {time.perf_counter() - t0:.0f} s: {mix.stat().st_size / 2**30:.2f} GiB")
    ref = None
    if reference:
        import soundfile as sf

        ref = folder / "reference.wav"
        if not ref.exists():
            r = synth_block(7, int(30 * SR), np.random.default_rng(1))
            sf.write(str(ref), np.clip(r * 3.0, -0.99, 0.99), SR, subtype="FLOAT")
    out = folder / "master.wav"
    try:
        read = run_child("read", mix, folder / "unused.wav", None)
        done = run_child("master", mix, out, ref)
    finally:
        mix.unlink(missing_ok=True)
        out.unlink(missing_ok=True)
    load = os.getloadavg()
    f32 = read["frames"] * 2 * 4
    gib = 2.0 ** 30
    print(f"file: {read['frames'] / SR / 60:.1f} min stereo, float32 size {f32 / gib:.2f} GiB "
          f"(load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f})")
    print(f"read only : peak RSS {read['peak_rss'] / gib:6.2f} GiB  time {read['seconds']:7.1f} s")
    print(f"master    : peak RSS {done['peak_rss'] / gib:6.2f} GiB  time {done['seconds']:7.1f} s  "
          f"({done['lufs']:.2f} LUFS, {done['true_peak_dbtp']:.2f} dBTP, limiting {done['gain_reduction_db']:.1f} dB, "
          f"{done['renders']} render(s))")
    for warning in done["warnings"]:
        print(f"  warning: {warning}")
    print(f"ratios    : master peak RSS / float32 size {done['peak_rss'] / f32:.2f}, "
          f"/ read-only RSS {done['peak_rss'] / read['peak_rss']:.2f}; time master / read "
          f"{done['seconds'] / read['seconds']:.1f}", flush=True)
    return {"minutes": minutes, "float32_gib": f32 / gib, "read_gib": read["peak_rss"] / gib,
            "master_gib": done["peak_rss"] / gib, "master_s": done["seconds"], "read_s": read["seconds"],
            "lufs": done["lufs"], "true_peak_dbtp": done["true_peak_dbtp"], "load": load}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, nargs="+", default=[10.0, 30.0, 60.0])
    parser.add_argument("--reference", action="store_true", help="match a 30 s synthetic reference (EQ runs)")
    parser.add_argument("--keep", type=Path, default=None, help="folder for the files (default: a temp dir)")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory(dir=args.keep) as tmp:
        for minutes in args.minutes:
            rows.append(measure(minutes, Path(tmp), args.reference))
    print()
    print(f"{'minutes':>7s} {'float32 GiB':>11s} {'read GiB':>9s} {'master GiB':>10s} {'master/f32':>10s} "
          f"{'master s':>9s} {'LUFS':>7s} {'dBTP':>6s}  load avg (1/5/15 min)")
    for r in rows:
        print(f"{r['minutes']:7g} {r['float32_gib']:11.2f} {r['read_gib']:9.2f} {r['master_gib']:10.2f} "
              f"{r['master_gib'] / r['float32_gib']:10.2f} {r['master_s']:9.1f} {r['lufs']:7.2f} "
              f"{r['true_peak_dbtp']:6.2f}  {r['load'][0]:.1f} {r['load'][1]:.1f} {r['load'][2]:.1f}")
    hour = [r for r in rows if r["minutes"] >= 60]
    if hour:
        print(f"peak RSS below 2 GiB for {hour[0]['minutes']:g} min (the target for a 60 min file): "
              f"{'yes' if hour[0]['master_gib'] < 2 else 'NO'}")


if __name__ == "__main__":
    main()
