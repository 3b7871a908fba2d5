"""Mixing toward a reference: the mix model with and without a reference mix of the same song.

The mix-quality protocol (``benchmarks/mix_quality.py``: the first ``--max-seconds`` of every
held-out song, seeded BENCHMARK perturbation of +/-9 dB gain and tilt EQ per stem), plus a
**reference**: the song's original mix from a *different* part of the song (from
``--max-seconds`` on, at most ``--reference-seconds``), as a user would pass a rough mix or
an earlier bounce of another section with ``automix mix --reference``. Songs with less than
``--min-reference-seconds`` left after the evaluated part are skipped.

Systems, measured side by side in one run:

* **model** -- ``automix mix`` without a reference (the main benchmark's system);
* **model+ref (net)** -- the model reading the reference's features, faders not fitted
  (``match_reference=False``);
* **model+ref** -- ``automix mix --reference``: the model, then the faders fitted to the
  reference's spectrum (:mod:`automix.reference_balance`);
* **sum**, **equal_loudness** -- the baselines.

Printed: per-song and mean multi-resolution log-spectral distance to the original mix (dB)
and per-stem balance error (LU) measured from the ``--stems-out`` files, as in
``mix_quality.py``.

Usage::

    python benchmarks/mix_reference.py [--data DIR ...] [--model models/mixer.pt] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mix_quality import (add_protocol_arguments, baselines, load_song, mix_with_stems_out,  # noqa: E402
                         perturb_to_folder, score_systems)

from automix.audio import write_audio  # noqa: E402
from automix.data.layout import scan_folder  # noqa: E402

SYSTEMS = ("model", "model+ref (net)", "model+ref", "sum", "equal_loudness")


def evaluate_song(song, model: str | None, seconds: float, ref_seconds: float, min_ref_seconds: float, seed: int,
                  workdir: Path) -> dict | None:
    names, full, sr = load_song(song, seconds + ref_seconds)
    n = int(seconds * sr)
    if full.shape[-1] - n < min_ref_seconds * sr:
        return None
    stems, reference = full[..., :n], full[..., n:].sum(0)
    folder = workdir / song.name / "perturbed"
    perturbed = perturb_to_folder(song.name, names, stems, sr, seed, folder)  # the main benchmark's seeds
    ref_path = write_audio(workdir / song.name / "reference.wav", reference.numpy(), sr, subtype="FLOAT")
    systems = {}
    for k, (system, ref, fit) in enumerate((("model", None, True), ("model+ref (net)", ref_path, False),
                                            ("model+ref", ref_path, True))):
        systems[system] = mix_with_stems_out(folder, workdir / song.name / f"system{k}", names, model=model,
                                             reference=ref, match_reference=fit)
    systems.update(baselines(perturbed, sr))
    result = {"song": song.name, "stems": len(names), "seconds": n / sr, "reference_seconds": reference.shape[-1] / sr}
    result.update(score_systems(systems, stems, sr))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_protocol_arguments(parser)
    parser.add_argument("--reference-seconds", type=float, default=60.0, help="reference: up to N seconds after that")
    parser.add_argument("--min-reference-seconds", type=float, default=10.0, help="skip songs with less left")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    songs = [s for root in args.data if Path(root).is_dir() for s in scan_folder(root)]
    if not songs:
        print("no songs found", file=sys.stderr)
        return 2
    print(f"{'song':34s} {'S':>3s} " + " ".join(f"{s:>22s}" for s in SYSTEMS) + "   (LSD dB / balance LU)")
    results = []
    with tempfile.TemporaryDirectory(prefix="mix_reference_") as tmp:
        for song in songs:
            r = evaluate_song(song, args.model, args.max_seconds, args.reference_seconds, args.min_reference_seconds,
                              args.seed, Path(tmp))
            if r is None:
                print(f"{song.name[:34]:34s}  skipped: shorter than {args.max_seconds + args.min_reference_seconds:g} s")
                continue
            results.append(r)
            cells = " ".join(f"{r[s]['spectral_distance_db']:10.2f} / {r[s]['balance_error_lu']:9.2f}" for s in SYSTEMS)
            print(f"{song.name[:34]:34s} {r['stems']:3d} {cells}", flush=True)
    if not results:
        return 2
    mean = {s: {k: float(np.mean([r[s][k] for r in results])) for k in ("spectral_distance_db", "balance_error_lu")}
            for s in SYSTEMS}
    print(f"\nmean over {len(results)} songs:")
    for s in SYSTEMS:
        wins = sum(r[s]["spectral_distance_db"] < min(r["sum"]["spectral_distance_db"],
                                                      r["equal_loudness"]["spectral_distance_db"]) for r in results)
        print(f"  {s:16s} LSD {mean[s]['spectral_distance_db']:5.2f} dB   balance {mean[s]['balance_error_lu']:5.2f} LU"
              f"   (balance / equal loudness {mean[s]['balance_error_lu'] / mean['equal_loudness']['balance_error_lu']:.2f};"
              f" LSD below both baselines on {wins}/{len(results)})" if s.startswith("model") else
              f"  {s:16s} LSD {mean[s]['spectral_distance_db']:5.2f} dB   balance {mean[s]['balance_error_lu']:5.2f} LU")
    if args.json:
        Path(args.json).write_text(json.dumps({"songs": results, "mean": mean}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
