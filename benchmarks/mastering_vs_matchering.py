"""automix master vs Matchering on loud references, both run with their defaults as processes.

Cases (real GPL game soundtracks fetched by ``python -m train.fetch_masters``): a quieter master
(the "mix") is mastered towards a loud, different master (the reference, -10 to -8 LUFS), on
90-s excerpts and on whole tracks. Each tool runs as a fresh process, start-up included, with its
defaults only::

    automix master mix.wav --reference ref.wav -o out.wav
    python -c "import matchering as mg; mg.process(target=mix, reference=ref, results=[mg.pcm24(out)])"

The two tools alternate (which one goes first alternates from case to case), under ``nice``, so a
busy machine slows both alike; times are reported as the ratio automix / Matchering.

Per case it prints, for both tools: |integrated loudness - reference loudness| (LU), tonal
distance to the reference (RMS dB of level-normalised 1/3-octave spectra, 31.5 Hz - 16 kHz), true
peak by an independent meter (``scipy.signal.resample_poly`` 8x of the written file, dBTP), the
non-linear residual against the mix (:func:`automix.mastering.distortion.nonlinear_residual`:
least-squares 4096-tap FIR per channel pair, residual energy relative to the output, overall and
in the loudest 10 % of 400 ms blocks, dB, lower is cleaner) and the wall time of the process.

    python benchmarks/mastering_vs_matchering.py [--data /work/data/masters] [--json out.json]

Needs the ``bench`` extra (``pip install matchering``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

EXCERPT_S = 90.0

#: (mix, mix offset s, reference, reference offset s); None as offset: the whole track
CASES = [
    ("hedgewars/Freeway.ogg", 30.0, "hedgewars/Castle.ogg", 0.0),
    ("hedgewars/Rock.ogg", 60.0, "supertux/ice_music.ogg", 30.0),
    ("hedgewars/City.ogg", 60.0, "hedgewars/Fruit.ogg", 45.0),
    ("hedgewars/pirate.ogg", 60.0, "supertux/voc-daytime2.ogg", 0.0),
    ("hedgewars/Jungle.ogg", 60.0, "hedgewars/Castle.ogg", 255.0),
    ("supertux/arctic_breeze.ogg", 30.0, "supertux/worldmap_old.ogg", 0.0),
    ("hedgewars/Beach.ogg", None, "supertux/ice_music.ogg", None),
    ("supertux/airship_2.ogg", None, "supertux/worldmap_old.ogg", None),
]

MATCHERING = ("import sys, matchering as mg; "
              "mg.process(target=sys.argv[1], reference=sys.argv[2], results=[mg.pcm24(sys.argv[3])])")


def read(path: Path, offset_s: float | None, seconds: float = EXCERPT_S) -> tuple[np.ndarray, int]:
    """``(channels, T)`` float32 of a 90-s excerpt from ``offset_s`` (None: the whole file)."""
    info = sf.info(str(path))
    if offset_s is None:
        x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    else:
        start = int(min(offset_s, max(0.0, info.duration - seconds)) * info.samplerate)
        x, sr = sf.read(str(path), start=start, frames=int(seconds * info.samplerate), dtype="float32",
                        always_2d=True)
    return np.ascontiguousarray(x.T), sr


def polyphase_true_peak_dbtp(x: np.ndarray, up: int = 8, chunk: int = 1 << 19, pad: int = 256) -> float:
    """Independent true-peak meter: ``resample_poly(x, up, 1)`` per channel (its default Kaiser design),
    in overlapping chunks (the same values as one call on the whole file), largest magnitude in dBTP."""
    from scipy.signal import resample_poly

    peak = 0.0
    for channel in np.atleast_2d(x):
        c = np.asarray(channel, dtype=np.float64)
        for start in range(0, c.size, chunk):
            stop = min(c.size, start + chunk)
            lo, hi = max(0, start - pad), min(c.size, stop + pad)
            y = resample_poly(c[lo:hi], up, 1)
            keep = y[(start - lo) * up: (stop - lo) * up + (up if stop == c.size else 0)]
            peak = max(peak, float(np.abs(keep).max()))
    return 20 * np.log10(peak) if peak > 0 else -np.inf


def tonal_distance(a: np.ndarray, b: np.ndarray, sr_a: int, sr_b: int) -> float:
    """RMS dB difference of level-normalised 1/3-octave spectra over 31.5 Hz - 16 kHz."""
    from automix.loudness import third_octave_spectrum

    fa, la = third_octave_spectrum(a, sr_a)
    fb, lb = third_octave_spectrum(b, sr_b)
    n = min(len(fa), len(fb))
    sel = (fa[:n] >= 31.5 * 0.99) & (fa[:n] <= 16000 * 1.01)
    da, db = la[:n][sel], lb[:n][sel]
    d = (da - da.mean()) - (db - db.mean())
    return float(np.sqrt(np.mean(d ** 2)))


def measure(path: Path, mix: np.ndarray, ref: np.ndarray, ref_sr: int, target: float) -> dict:
    from automix.loudness import integrated_loudness
    from automix.mastering.distortion import nonlinear_residual

    y, sr = sf.read(str(path), dtype="float32", always_2d=True)
    y = np.ascontiguousarray(y.T)
    lufs = integrated_loudness(y, sr)
    residual = nonlinear_residual(mix, y, sr)
    return {"lufs": lufs, "loudness_error_lu": abs(lufs - target),
            "tonal_distance_db": tonal_distance(y, ref, sr, ref_sr),
            "true_peak_dbtp_8x": polyphase_true_peak_dbtp(y),
            "residual_db": residual.overall_db, "residual_loud_db": residual.loud_db}


def timed(cmd: list[str], log: Path) -> tuple[float, float]:
    """``(wall s, CPU s)`` of the process (CPU: user + system of it and its threads, from the kernel's
    accounting of the waited child: on a machine other jobs keep busy the CPU time barely moves, where the
    wall time swings with the load and with how many cores the process could use)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with open(log, "w") as handle:
        done = subprocess.run(["nice", "-n", "10", *cmd], stdout=handle, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {log.read_text()[-2000:]}")
    return seconds, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/work/data/masters"))
    parser.add_argument("--ceiling", type=float, default=-1.0, help="automix's default ceiling (dBTP), for the check")
    parser.add_argument("--cases", type=int, default=len(CASES), help="run only the first N cases")
    parser.add_argument("--only", type=int, nargs="+", default=None, help="run only these cases (0-based)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    try:
        import matchering  # noqa: F401
    except ImportError:
        print("matchering is not installed: pip install 'automix[bench]'", file=sys.stderr)
        return 1
    from automix.loudness import integrated_loudness

    missing = sorted({p for m, _, r, _ in CASES for p in (m, r) if not (args.data / p).exists()})
    if missing:
        print(f"missing tracks ({', '.join(missing)}); run: python -m train.fetch_masters", file=sys.stderr)
        return 1
    automix_cmd = [str(Path(sys.executable).with_name("automix"))]
    if not Path(automix_cmd[0]).exists():
        automix_cmd = [sys.executable, "-m", "automix"]
    rows = []
    header = (f"{'case':44s} {'ref LUFS':>8s} | {'|dL|':>5s} {'tonal':>5s} {'TP8x':>6s} {'resid':>6s} {'loud':>6s} "
              f"{'s':>5s} | {'|dL|':>5s} {'tonal':>5s} {'TP8x':>6s} {'resid':>6s} {'loud':>6s} {'s':>5s} | {'ratio':>5s}")
    print(f"{'':53s} | {'automix (defaults)':^38s} | {'matchering (defaults)':^38s} |")
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="bench-master-") as tmp_name:
        tmp = Path(tmp_name)
        for i, (mix_name, mix_off, ref_name, ref_off) in enumerate(CASES[: args.cases]):
            if args.only is not None and i not in args.only:
                continue
            mix, sr = read(args.data / mix_name, mix_off)
            ref, rsr = read(args.data / ref_name, ref_off)
            mix_path, ref_path = tmp / f"mix{i}.wav", tmp / f"ref{i}.wav"
            sf.write(mix_path, mix.T, sr, subtype="FLOAT")
            sf.write(ref_path, ref.T, rsr, subtype="FLOAT")
            target = integrated_loudness(ref, rsr)
            a_out, m_out = tmp / f"a{i}.wav", tmp / f"m{i}.wav"
            runs = {
                "automix": lambda: timed([*automix_cmd, "master", str(mix_path), "--reference", str(ref_path),
                                          "-o", str(a_out)], tmp / f"a{i}.log"),
                "matchering": lambda: timed([sys.executable, "-c", MATCHERING, str(mix_path), str(ref_path),
                                             str(m_out)], tmp / f"m{i}.log"),
            }
            order = ["automix", "matchering"] if i % 2 == 0 else ["matchering", "automix"]
            measured = {tool: runs[tool]() for tool in order}
            times = {tool: wall for tool, (wall, _) in measured.items()}
            cpu = {tool: c for tool, (_, c) in measured.items()}
            a = measure(a_out, mix, ref, rsr, target)
            m = measure(m_out, mix, ref, rsr, target)
            whole = mix_off is None
            label = (f"{Path(mix_name).stem}->{Path(ref_name).stem}"
                     + (" (whole)" if whole else f" ({mix.shape[-1] / sr:.0f} s)"))
            row = {"mix": mix_name, "reference": ref_name, "whole_tracks": whole,
                   "seconds": mix.shape[-1] / sr, "target_lufs": target,
                   "automix": {**a, "time_s": times["automix"], "cpu_s": cpu["automix"]},
                   "matchering": {**m, "time_s": times["matchering"], "cpu_s": cpu["matchering"]},
                   "time_ratio": times["automix"] / times["matchering"],
                   "cpu_ratio": cpu["automix"] / max(cpu["matchering"], 1e-9),
                   "automix_log_tail": (tmp / f"a{i}.log").read_text()[-600:]}
            rows.append(row)
            print(f"{label:44s} {target:8.2f} | {a['loudness_error_lu']:5.2f} {a['tonal_distance_db']:5.2f} "
                  f"{a['true_peak_dbtp_8x']:6.2f} {a['residual_db']:6.1f} {a['residual_loud_db']:6.1f} "
                  f"{times['automix']:5.1f} | {m['loudness_error_lu']:5.2f} {m['tonal_distance_db']:5.2f} "
                  f"{m['true_peak_dbtp_8x']:6.2f} {m['residual_db']:6.1f} {m['residual_loud_db']:6.1f} "
                  f"{times['matchering']:5.1f} | {row['time_ratio']:5.2f} (CPU {row['cpu_ratio']:4.2f})", flush=True)

    def med(tool: str, key: str) -> float:
        return statistics.median(r[tool][key] for r in rows)

    def wins(key: str) -> int:
        return sum(r["automix"][key] < r["matchering"][key] for r in rows)

    n = len(rows)
    summary = {
        "cases": n,
        "median_loudness_error_lu": {"automix": med("automix", "loudness_error_lu"),
                                     "matchering": med("matchering", "loudness_error_lu")},
        "max_loudness_error_lu": {t: max(r[t]["loudness_error_lu"] for r in rows) for t in ("automix", "matchering")},
        "median_tonal_distance_db": {t: med(t, "tonal_distance_db") for t in ("automix", "matchering")},
        "tonal_better_cases": wins("tonal_distance_db"),
        "max_true_peak_dbtp_8x": {t: max(r[t]["true_peak_dbtp_8x"] for r in rows) for t in ("automix", "matchering")},
        "median_residual_db": {t: med(t, "residual_db") for t in ("automix", "matchering")},
        "median_residual_loud_db": {t: med(t, "residual_loud_db") for t in ("automix", "matchering")},
        "residual_better_cases": wins("residual_db"),
        "residual_loud_better_cases": wins("residual_loud_db"),
        "median_time_ratio": statistics.median(r["time_ratio"] for r in rows),
        "median_cpu_ratio": statistics.median(r["cpu_ratio"] for r in rows),
        "load_average": os.getloadavg(),
    }
    print("-" * len(header))
    print(f"summary over {n} cases (loudness error vs the reference; both tools with defaults, as processes):")
    print(f"  |loudness - reference|: automix median {summary['median_loudness_error_lu']['automix']:.3f} LU, "
          f"max {summary['max_loudness_error_lu']['automix']:.3f}; matchering median "
          f"{summary['median_loudness_error_lu']['matchering']:.3f}, max {summary['max_loudness_error_lu']['matchering']:.3f}")
    print(f"  tonal distance: automix median {summary['median_tonal_distance_db']['automix']:.2f} dB, matchering "
          f"{summary['median_tonal_distance_db']['matchering']:.2f} dB; automix closer on {summary['tonal_better_cases']}/{n}")
    print(f"  true peak (8x resample_poly): automix max {summary['max_true_peak_dbtp_8x']['automix']:.2f} dBTP "
          f"(ceiling {args.ceiling:g}), matchering max {summary['max_true_peak_dbtp_8x']['matchering']:.2f} dBTP")
    print(f"  non-linear residual: automix median {summary['median_residual_db']['automix']:.1f} dB "
          f"(loudest 10 %: {summary['median_residual_loud_db']['automix']:.1f}), matchering "
          f"{summary['median_residual_db']['matchering']:.1f} dB ({summary['median_residual_loud_db']['matchering']:.1f}); "
          f"automix cleaner on {summary['residual_better_cases']}/{n} overall, "
          f"{summary['residual_loud_better_cases']}/{n} in the loudest blocks")
    print(f"  time automix / matchering (processes, start-up included): median {summary['median_time_ratio']:.2f}, "
          f"CPU time median {summary['median_cpu_ratio']:.2f} (load average {summary['load_average'][0]:.1f})")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
