"""Speed of ``automix analyze``: its time as a ratio to merely decoding the file, same run.

Workload (issue 2): a 3.5-minute stereo file at 44.1 kHz, synthesised into a temporary
folder and written as 24-bit WAV, 16-bit WAV and 24-bit FLAC (``--formats`` picks):

* ``song`` -- the synthetic multitrack of ``tests/multitrack_synth.py`` (kick, bass, chords,
  hats, lead) summed and brought to a mastered level (peak -1 dBFS, soft-clipped);
* ``dense`` -- pink noise peak-normalised to -1 dBFS: every stretch is near the peak, the
  worst case for the true-peak meter (it can skip nothing).

Measured, interleaved so that the shared machine's noise hits both alike, best of N:

* **read** -- ``soundfile.read(path, dtype="float32")``: merely decoding the file;
* **analyze** -- what ``automix analyze FILE`` does after start-up: load (with automix's
  checks), reject silence, measure everything (:func:`automix.cli.analyze.analyze_file`;
  it decodes long files in parallel parts and measures on all usable CPUs, so the wall
  ratio depends on how busy the machine is -- the load average is printed).

Prints ``analyze / read`` per file and format (target: below 3) from wall-clock times, the
same ratio from CPU times (all threads; steadier when other jobs load the machine), and the
CPU time of each stage.

Usage: ``python benchmarks/analyze_speed.py [--minutes 3.5] [--repeats 5] [--formats wav24,wav16,flac24]``
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

SR = 44100
FORMATS = {"wav24": ("wav", "PCM_24"), "wav16": ("wav", "PCM_16"), "flac24": ("flac", "PCM_24")}


def make_song(seconds: float) -> np.ndarray:
    from multitrack_synth import render_stems

    mix = sum(render_stems(7, seconds=seconds, sample_rate=SR, n_stems=5).values()).astype(np.float64)
    mix -= mix.mean(axis=1, keepdims=True)
    mix *= 10 ** (6 / 20) / np.abs(mix).max()  # drive 6 dB into a soft clipper, like a loud master
    mix = np.tanh(mix)
    return (mix * 10 ** (-1 / 20) / np.abs(mix).max()).astype(np.float32)


def make_dense(seconds: float) -> np.ndarray:
    import conftest

    x = conftest.pink_noise(seconds, rms=0.1, sample_rate=SR, seed=3).astype(np.float64)
    return (x * 10 ** (-1 / 20) / np.abs(x).max()).astype(np.float32)


def timed(func) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    func()
    return time.perf_counter() - wall, time.process_time() - cpu


def stage_times(path: Path, repeats: int) -> dict[str, float]:
    """CPU seconds of each stage of the analysis (best of ``repeats``)."""
    from automix import loudness as L
    from automix.audio import check_not_silent, load_audio

    audio = load_audio(path, mono_to_stereo=False)
    x, sr = audio.samples, audio.sample_rate

    def load():
        check_not_silent(load_audio(path, mono_to_stereo=False))

    x32 = np.ascontiguousarray(x, dtype=np.float32)
    plan = L._SpectrumPlan.for_signal(sr, x.shape[-1])
    stages = (("plain read", lambda: sf.read(str(path), dtype="float32", always_2d=True)),
              ("load+checks", load),
              ("K-weighting", lambda: L.hop_energies(x, sr)),
              ("level sums", lambda: L._levels(x, audio.peak)),
              ("true peak", lambda: [L._channel_true_peak(c) for c in x32]),
              ("1/3-octave spectrum", lambda: plan.accumulate(x32, np.zeros(plan.bins))),
              ("all measurements, 1 thread", lambda: L.analyze(x, sr, threads=1, peak=audio.peak)))
    return {name: min(timed(func)[1] for _ in range(repeats)) for name, func in stages}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--formats", default=",".join(FORMATS), help="comma list of " + ", ".join(FORMATS))
    args = parser.parse_args()

    from automix.audio import usable_cpus
    from automix.cli.analyze import analyze_file

    seconds = args.minutes * 60
    print(f"automix analyze speed: {args.minutes:g}-minute stereo files at {SR} Hz, best of {args.repeats}; "
          f"{usable_cpus()} CPUs, load average {_load_average()}")
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        signals = {"song": make_song(seconds), "dense": make_dense(seconds)}
        analyze_file(_write(Path(tmp), "warmup", signals["song"][:, : SR * 5], "wav24"))  # imports, caches
        for fmt in args.formats.split(","):
            for name, x in signals.items():
                path = _write(Path(tmp), name, x, fmt)
                reads, analyses = [], []
                for _ in range(args.repeats):  # interleaved: noise hits both alike
                    reads.append(timed(lambda: sf.read(str(path), dtype="float32", always_2d=True)))
                    analyses.append(timed(lambda: analyze_file(str(path))))
                (read, read_cpu), (analysis, analysis_cpu) = np.min(reads, axis=0), np.min(analyses, axis=0)
                ratio = analysis / read
                worst = max(worst, ratio)
                print(f"  {name:5s} {fmt:6s}: read {read:6.3f} s  analyze {analysis:6.3f} s  "
                      f"ratio analyze/read = {ratio:4.2f}   (CPU time: read {read_cpu:.3f} s, "
                      f"analyze {analysis_cpu:.3f} s, ratio {analysis_cpu / read_cpu:4.2f})")
                stages = stage_times(path, args.repeats)
                print("          CPU per stage: " + ", ".join(f"{k} {v:.3f} s" for k, v in stages.items()))
    print(f"worst ratio analyze/read: {worst:.2f} (target < 3); load average {_load_average()}")
    return 0


def _load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def _write(folder: Path, name: str, x: np.ndarray, fmt: str) -> Path:
    ext, subtype = FORMATS[fmt]
    path = folder / f"{name}.{fmt}.{ext}"
    sf.write(str(path), x.T, SR, subtype=subtype)
    return path


if __name__ == "__main__":
    sys.exit(main())
