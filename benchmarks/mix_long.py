"""Peak memory of ``automix mix`` on long, large sessions (issue 14: "a 12-minute, 16-stem session
mixes with bounded memory").

For each session size (``--minutes`` x ``--stems``, default 12 min x 16 stems, and 3 min x 16 for
the scaling) it synthesises stereo 24-bit 44.1 kHz stems on disk (block by block: this script
never holds a session), then runs, as fresh processes side by side:

* **read** -- only decodes the stems into one array (:func:`automix.stems_reader.read_stems`), the
  floor any in-memory mixer pays;
* **mix** -- ``python -m automix mix SONG -o mix.wav`` (shipped model, full-length render, 24-bit).

It prints each run's peak RSS (``ru_maxrss`` of the child, from :func:`os.wait4`), the session's
size as float32, the ratio of the mix's peak to that size and to the read-only run, the time of
each, the estimate :func:`automix.memory.mix_bytes` makes before refusing a session too large
for the machine, and the load average.

    python benchmarks/mix_long.py [--minutes 12 3] [--stems 16] [--keep DIR]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SR = 44100
BLOCK_S = 20.0
ROLES = ("kick", "snare", "hats", "bass", "keys", "pad", "lead vox", "gtr", "strings", "synth", "perc", "fx",
         "bvox", "organ", "brass", "sub")

READ_ONLY = "import sys\nfrom automix.stems_reader import read_stems\nr = read_stems(sys.argv[1])\n" \
            "print(r.audio.shape)\n"


def synth_block(stem: int, index: int, frames: int, rng: np.random.Generator) -> np.ndarray:
    """``(frames, 2)`` float32: a decaying tone per beat at a pitch of its own, plus a little noise."""
    t = (index * frames + np.arange(frames)) / SR
    beat = np.mod(t * 2.0, 1.0)
    f0 = 55.0 * 2 ** (stem / 4.0)
    mono = 0.25 * np.exp(-beat * (3 + stem)) * np.sin(2 * np.pi * f0 * t) + 0.01 * rng.standard_normal(frames)
    pan = (stem % 5 - 2) / 4.0
    return np.stack([mono * (1 - pan), mono * (1 + pan)], axis=1).astype(np.float32) * 0.7


def write_session(folder: Path, stems: int, seconds: float) -> None:
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    frames = int(BLOCK_S * SR)
    total = int(seconds * SR)
    for s in range(stems):
        rng = np.random.default_rng(s)
        with sf.SoundFile(str(folder / f"{ROLES[s % len(ROLES)]} {s:02d}.wav"), "w", SR, 2, subtype="PCM_24",
                          format="WAV") as f:
            for i, start in enumerate(range(0, total, frames)):
                f.write(synth_block(s, i, min(frames, total - start), rng))


def run_measured(argv: list[str]) -> tuple[float, float, str]:
    """(peak RSS in GiB, wall seconds, last line of output) of a child process."""
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed:\n{out}")
    return usage.ru_maxrss / (1 << 20), wall, (out.strip().splitlines() or [""])[-1]


def measure(minutes: float, stems: int, root: Path) -> dict:
    from automix.memory import GIB, mix_bytes

    song = root / f"session_{stems}x{minutes:g}min"
    if not song.exists():
        t0 = time.perf_counter()
        write_session(song, stems, minutes * 60.0)
        print(f"  wrote {stems} stems x {minutes:g} min in {time.perf_counter() - t0:.0f} s", flush=True)
    out = root / f"mix_{stems}x{minutes:g}.wav"
    out.unlink(missing_ok=True)
    frames = int(minutes * 60.0 * SR)
    size = stems * 2 * frames * 4 / GIB
    read_rss, read_s, _ = run_measured([sys.executable, "-c", READ_ONLY, str(song)])
    mix_rss, mix_s, line = run_measured([sys.executable, "-m", "automix", "mix", str(song), "-o", str(out), "-q"])
    row = {"minutes": minutes, "stems": stems, "float32_gib": size, "read_rss_gib": read_rss, "read_s": read_s,
           "mix_rss_gib": mix_rss, "mix_s": mix_s, "estimate_gib": mix_bytes(stems, frames) / GIB,
           "load": os.getloadavg()[0], "result": line}
    print(f"  {stems} stems x {minutes:g} min: session {size:.2f} GiB as float32; peak RSS read-only "
          f"{read_rss:.2f} GiB ({read_s:.0f} s), automix mix {mix_rss:.2f} GiB ({mix_s:.0f} s) = "
          f"{mix_rss / size:.2f}x the session, {mix_rss / read_rss:.2f}x the read-only run; estimate "
          f"{row['estimate_gib']:.2f} GiB; load {row['load']:.1f}\n    {line}", flush=True)
    out.unlink(missing_ok=True)
    return row


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[12.0, 3.0])
    parser.add_argument("--stems", type=int, default=16)
    parser.add_argument("--keep", type=Path, default=None, help="keep the synthesised sessions in this folder")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="automix_mix_long_") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        for minutes in args.minutes:
            rows.append(measure(minutes, args.stems, root))
    print("\n| stems x minutes | float32 GiB | read-only peak RSS GiB | mix peak RSS GiB | mix / session | "
          "mix / read-only | estimate GiB | mix s | load |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['stems']} x {r['minutes']:g} | {r['float32_gib']:.2f} | {r['read_rss_gib']:.2f} | "
              f"{r['mix_rss_gib']:.2f} | {r['mix_rss_gib'] / r['float32_gib']:.2f} | "
              f"{r['mix_rss_gib'] / r['read_rss_gib']:.2f} | {r['estimate_gib']:.2f} | {r['mix_s']:.0f} | {r['load']:.1f} |")
    return rows


if __name__ == "__main__":
    main()
