"""automix master vs Matchering on the same real tracks, side by side in one run.

Cases (real GPL game soundtracks fetched by ``python -m train.fetch_masters``):

* **restore** -- an excerpt of a master degraded by a known EQ (+5 dB low shelf at 120 Hz,
  -4 dB bell at 800 Hz, -6 dB high shelf at 6 kHz) and -9 dB, mastered with the original
  excerpt as the reference.
* **match** -- a quiet track mastered towards a loud, different track.

Per case and in summary it prints: |integrated loudness - target| (LU; the target is the
reference's loudness), tonal distance to the reference (RMS dB difference of
level-normalised 1/3-octave spectra, 31.5 Hz - 16 kHz), true peak (dBTP), and the time
ratio automix / Matchering (wall time, file in -> file out, both warmed up first; each tool
runs ``--repeats`` times per case, alternating, and its fastest run counts).

    python benchmarks/mastering_vs_matchering.py [--seconds 30] [--data /work/data/masters] [--json out.json]

Needs the ``bench`` extra (``pip install matchering``).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

RESTORE = ["hedgewars/Rock.ogg", "hedgewars/pirate.ogg", "hedgewars/City.ogg", "hedgewars/Jungle.ogg",
           "supertux/forest_theme.ogg", "supertux/arctic_cave.ogg"]
MATCH = [("supertux/forest.ogg", "hedgewars/Fruit.ogg"), ("supertux/saharan_penguin.ogg", "hedgewars/snow.ogg"),
         ("hedgewars/Freeway.ogg", "hedgewars/oriental.ogg"),
         ("supertux/battle_theme.ogg", "supertux/beneath_the_rabbit_hole.ogg")]


def excerpt(path: Path, offset_s: float, seconds: float) -> tuple[np.ndarray, int]:
    info = sf.info(str(path))
    start = int(min(offset_s, max(0.0, info.duration - seconds)) * info.samplerate)
    x, sr = sf.read(str(path), start=start, frames=int(seconds * info.samplerate), dtype="float32", always_2d=True)
    return np.ascontiguousarray(x.T), sr


def degrade(x: np.ndarray, sr: int) -> np.ndarray:
    """The known degradation of the restore cases (scipy filtering of RBJ designs) and -9 dB."""
    import torch
    from scipy.signal import sosfilt

    from automix.dsp import biquad as bq

    sections = [bq.design_low_shelf(torch.tensor(120.0), torch.tensor(5.0), sr),
                bq.design_peaking(torch.tensor(800.0), torch.tensor(-4.0), torch.tensor(1.0), sr),
                bq.design_high_shelf(torch.tensor(6000.0), torch.tensor(-6.0), sr)]
    sos = np.array([np.concatenate([b.numpy(), a.numpy()]) for b, a in sections])
    return (sosfilt(sos, x.astype(np.float64), axis=-1) * 10 ** (-9 / 20)).astype(np.float32)


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


def measure(path: Path, ref: np.ndarray, ref_sr: int, target: float) -> dict:
    from automix.loudness import integrated_loudness, true_peak_dbtp

    y, sr = sf.read(str(path), dtype="float32", always_2d=True)
    y = y.T
    return {"loudness_error_lu": abs(integrated_loudness(y, sr) - target),
            "tonal_distance_db": tonal_distance(y, ref, sr, ref_sr),
            "true_peak_dbtp": true_peak_dbtp(y, sr)}


def run_automix(mix: Path, ref: Path, out: Path, max_limiting_db: float) -> float:
    from automix.mastering import master

    t0 = time.perf_counter()
    master(mix, out, reference=ref, max_limiting_db=max_limiting_db, overwrite=True)
    return time.perf_counter() - t0


def run_matchering(mix: Path, ref: Path, out: Path) -> float:
    import matchering as mg

    t0 = time.perf_counter()
    mg.process(target=str(mix), reference=str(ref), results=[mg.pcm24(str(out))])
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/work/data/masters"))
    parser.add_argument("--seconds", type=float, default=30.0, help="excerpt length (s)")
    parser.add_argument("--offset", type=float, default=30.0, help="excerpt start (s)")
    parser.add_argument("--ceiling", type=float, default=-1.0, help="automix ceiling (dBTP)")
    parser.add_argument("--max-limiting", type=float, default=12.0,
                        help="automix limiting allowance (dB); Matchering has no such limit")
    parser.add_argument("--repeats", type=int, default=2,
                        help="runs per tool and case (alternating); the fastest of each counts")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    try:
        import matchering  # noqa: F401
    except ImportError:
        print("matchering is not installed: pip install 'automix[bench]'", file=sys.stderr)
        return 1
    from automix.loudness import integrated_loudness

    missing = [p for p in RESTORE + [m for pair in MATCH for m in pair] if not (args.data / p).exists()]
    if missing:
        print(f"missing tracks ({', '.join(missing)}); run: python -m train.fetch_masters", file=sys.stderr)
        return 1

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-master-") as tmp_name:
        tmp = Path(tmp_name)
        cases = []
        for name in RESTORE:
            x, sr = excerpt(args.data / name, args.offset, args.seconds)
            cases.append(("restore", Path(name).stem, degrade(x, sr), x, sr, sr))
        for mix_name, ref_name in MATCH:
            x, sr = excerpt(args.data / mix_name, args.offset, args.seconds)
            r, rsr = excerpt(args.data / ref_name, args.offset, args.seconds)
            cases.append(("match", f"{Path(mix_name).stem}->{Path(ref_name).stem}", x, r, sr, rsr))
        # warm up both tools once (imports, JIT caches) on the first case
        kind, label, mix, ref, sr, rsr = cases[0]
        sf.write(tmp / "warm_mix.wav", mix.T, sr, subtype="FLOAT")
        sf.write(tmp / "warm_ref.wav", ref.T, rsr, subtype="FLOAT")
        run_automix(tmp / "warm_mix.wav", tmp / "warm_ref.wav", tmp / "warm_a.wav", args.max_limiting)
        run_matchering(tmp / "warm_mix.wav", tmp / "warm_ref.wav", tmp / "warm_m.wav")

        header = (f"{'case':8s} {'track':38s} | {'|dL| LU':>8s} {'tonal dB':>8s} {'TP dBTP':>8s} | "
                  f"{'|dL| LU':>8s} {'tonal dB':>8s} {'TP dBTP':>8s} | {'time ratio':>10s}")
        print(f"{'':48s} | {'automix':^26s} | {'matchering':^26s} |")
        print(header)
        print("-" * len(header))
        for i, (kind, label, mix, ref, sr, rsr) in enumerate(cases):
            mix_path, ref_path = tmp / f"mix{i}.wav", tmp / f"ref{i}.wav"
            sf.write(mix_path, mix.T, sr, subtype="FLOAT")
            sf.write(ref_path, ref.T, rsr, subtype="FLOAT")
            target = integrated_loudness(ref, rsr)
            t_a, t_m = [], []
            for _ in range(args.repeats):  # alternate the tools; keep each one's fastest run (least disturbed)
                t_a.append(run_automix(mix_path, ref_path, tmp / f"a{i}.wav", args.max_limiting))
                t_m.append(run_matchering(mix_path, ref_path, tmp / f"m{i}.wav"))
            t_a, t_m = min(t_a), min(t_m)
            a = measure(tmp / f"a{i}.wav", ref, rsr, target)
            m = measure(tmp / f"m{i}.wav", ref, rsr, target)
            row = {"case": kind, "track": label, "target_lufs": target,
                   "before_tonal_distance_db": tonal_distance(mix, ref, sr, rsr),
                   "automix": {**a, "time_s": t_a}, "matchering": {**m, "time_s": t_m}, "time_ratio": t_a / t_m}
            rows.append(row)
            print(f"{kind:8s} {label:38s} | {a['loudness_error_lu']:8.3f} {a['tonal_distance_db']:8.3f} "
                  f"{a['true_peak_dbtp']:8.2f} | {m['loudness_error_lu']:8.3f} {m['tonal_distance_db']:8.3f} "
                  f"{m['true_peak_dbtp']:8.2f} | {row['time_ratio']:10.2f}", flush=True)

    def med(tool: str, key: str) -> float:
        return statistics.median(r[tool][key] for r in rows)

    summary = {
        "cases": len(rows),
        "median_loudness_error_lu": {"automix": med("automix", "loudness_error_lu"),
                                     "matchering": med("matchering", "loudness_error_lu")},
        "median_tonal_distance_db": {"automix": med("automix", "tonal_distance_db"),
                                     "matchering": med("matchering", "tonal_distance_db")},
        "max_true_peak_dbtp": {"automix": max(r["automix"]["true_peak_dbtp"] for r in rows),
                               "matchering": max(r["matchering"]["true_peak_dbtp"] for r in rows)},
        "tonal_better_than_matchering_cases": sum(r["automix"]["tonal_distance_db"] < r["matchering"]["tonal_distance_db"]
                                                  for r in rows),
        "median_time_ratio_automix_over_matchering": statistics.median(r["time_ratio"] for r in rows),
        "total_time_ratio": sum(r["automix"]["time_s"] for r in rows) / sum(r["matchering"]["time_s"] for r in rows),
    }
    print("-" * len(header))
    print(f"summary over {len(rows)} cases ({args.seconds:g} s excerpts):")
    print(f"  median |loudness - target|: automix {summary['median_loudness_error_lu']['automix']:.3f} LU, "
          f"matchering {summary['median_loudness_error_lu']['matchering']:.3f} LU")
    print(f"  median tonal distance: automix {summary['median_tonal_distance_db']['automix']:.3f} dB, "
          f"matchering {summary['median_tonal_distance_db']['matchering']:.3f} dB; automix closer on "
          f"{summary['tonal_better_than_matchering_cases']}/{len(rows)} cases")
    print(f"  highest true peak: automix {summary['max_true_peak_dbtp']['automix']:.2f} dBTP "
          f"(ceiling {args.ceiling:g}), matchering {summary['max_true_peak_dbtp']['matchering']:.2f} dBTP")
    print(f"  time automix / matchering: median {summary['median_time_ratio_automix_over_matchering']:.2f}, "
          f"total {summary['total_time_ratio']:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
