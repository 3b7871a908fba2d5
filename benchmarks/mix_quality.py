"""Mix quality on held-out multitracks: the model against the two baselines.

Protocol (issue 6, the training issue's perturbation): each held-out song's stems are
taken as well mixed; their sum is the target mix. Every stem is knocked off balance by
the seeded :data:`automix.perturb.BENCHMARK` perturbation (random gain +/-9 dB and tilt
EQ +/-6 dB). The perturbed stems are written to a folder and mixed by

* **model** -- ``automix mix PERTURBED -o mix.wav --stems-out DIR`` (the Python API
  :func:`automix.mixing.mix`, same code path as the command);
* **sum** -- the perturbed stems summed as they are;
* **equal_loudness** -- every perturbed stem brought to the same loudness.

Printed per song and averaged: the multi-resolution log-spectral distance (dB) of each
mix to the target mix (after matching loudness), and the per-stem balance error (LU):
each stem's loudness relative to its mix, compared with the original stems in the
target. The model's balance is measured from the files written by ``--stems-out``.

Targets: model balance error <= 1.5 LU and <= half the equal-loudness baseline's;
spectral distance below both baselines on every song.

Usage::

    python benchmarks/mix_quality.py [--data /work/data/heldout_midi /work/data/heldout_lmms]
        [--model models/mixer.pt] [--max-seconds 60] [--seed 0] [--json results.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from automix.audio import load_audio, write_audio
from automix.data.layout import scan_folder
from automix.evaluation import (balance_error_lu, equal_loudness_baseline, log_spectral_distance_db, song_seed,
                                sum_baseline)
from automix.mixing import mix
from automix.perturb import BENCHMARK

DEFAULT_DATA = ("/work/data/heldout_midi", "/work/data/heldout_lmms")
SYSTEMS = ("model", "sum", "equal_loudness")


def load_song(song, max_seconds: float | None) -> tuple[list[str], torch.Tensor, int]:
    """Original stems ``[S, 2, T]`` (common rate, aligned, padded) and their names."""
    arrays, names, rate = [], [], None
    for path in song.stems:
        audio = load_audio(path, sample_rate=rate, mono_to_stereo=True)
        rate = rate or audio.sample_rate
        arrays.append(np.asarray(audio.samples, dtype=np.float32)[:2])
        names.append(path.name)
    length = max(a.shape[-1] for a in arrays)
    if max_seconds:
        length = min(length, int(max_seconds * rate))
    stems = torch.zeros(len(arrays), 2, length)
    for i, a in enumerate(arrays):
        n = min(length, a.shape[-1])
        stems[i, :, :n] = torch.from_numpy(a[:, :n])
    return names, stems, int(rate)


def perturb_to_folder(song_name: str, names: list[str], stems: torch.Tensor, sr: int, seed: int,
                      folder: Path) -> torch.Tensor:
    """The song's seeded BENCHMARK perturbation of ``stems`` ``[S, 2, T]``, written to ``folder``."""
    generator = torch.Generator().manual_seed(song_seed(song_name, seed))
    mask = torch.ones(1, stems.shape[0], dtype=torch.bool)
    perturbed = BENCHMARK.apply(stems[None], sr, generator, stem_mask=mask, mode="exact")[0][0]
    folder.mkdir(parents=True)
    for name, audio in zip(names, perturbed):
        write_audio(folder / f"{Path(name).stem}.wav", audio.numpy(), sr, subtype="FLOAT")
    return perturbed


def mix_with_stems_out(folder: Path, out: Path, names: list[str], **options) -> tuple[torch.Tensor, torch.Tensor]:
    """``automix mix FOLDER -o OUT.wav --stems-out OUT/`` (API) -> (processed stems ``[S, 2, T]``, mix ``[2, T]``) as written."""
    report = mix(folder, out.with_suffix(".wav"), stems_out=out, subtype="FLOAT", **options)
    processed = torch.stack([torch.from_numpy(np.asarray(
        load_audio(out / f"{Path(n).stem}.wav", mono_to_stereo=True).samples, dtype=np.float32)) for n in names])
    return processed, torch.from_numpy(np.asarray(load_audio(report.mix_path).samples, dtype=np.float32))


def score_systems(systems: dict, stems: torch.Tensor, sr: int) -> dict:
    """LSD (dB) and balance error (LU) of every system's ``(stems, mix)`` against the original ``stems``."""
    target = stems.sum(0)
    mask = torch.ones(1, stems.shape[0], dtype=torch.bool)
    scores = {}
    for system, (est_stems, est_mix) in systems.items():
        n = min(est_mix.shape[-1], target.shape[-1])
        lsd = float(log_spectral_distance_db(est_mix[None, :, :n], target[None, :, :n], sr)[0])
        bal = float(balance_error_lu(est_stems[None, ..., :n], est_mix[None, :, :n], stems[None, ..., :n],
                                     target[None, :, :n], sr, mask)[0])
        scores[system] = {"spectral_distance_db": lsd, "balance_error_lu": bal}
    return scores


def baselines(perturbed: torch.Tensor, sr: int) -> dict:
    """The two baselines' ``(stems, mix)``: the perturbed sum and equal loudness."""
    mask = torch.ones(1, perturbed.shape[0], dtype=torch.bool)
    eq = equal_loudness_baseline(perturbed[None], sr, mask)[0]
    return {"sum": (sum_baseline(perturbed), perturbed.sum(0)), "equal_loudness": (eq, eq.sum(0))}


def evaluate_song(song, model: str | None, max_seconds: float | None, seed: int, workdir: Path) -> dict:
    names, stems, sr = load_song(song, max_seconds)
    perturbed = perturb_to_folder(song.name, names, stems, sr, seed, workdir / song.name / "perturbed")
    t0 = time.perf_counter()
    systems = {"model": mix_with_stems_out(workdir / song.name / "perturbed", workdir / song.name / "stems_out",
                                           names, model=model)}
    mix_seconds = time.perf_counter() - t0
    systems.update(baselines(perturbed, sr))
    result = {"song": song.name, "stems": len(names), "seconds": stems.shape[-1] / sr, "mix_wall_s": mix_seconds}
    result.update(score_systems(systems, stems, sr))
    return result


def add_protocol_arguments(parser: argparse.ArgumentParser) -> None:
    """The held-out protocol's options (shared with ``mix_reference.py``)."""
    parser.add_argument("--data", nargs="+", default=list(DEFAULT_DATA), help="held-out dataset folders")
    parser.add_argument("--model", default=None, help="checkpoint (default models/mixer.pt)")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="evaluate the first N seconds of each song")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="also write the results here")



def held_out_songs(roots) -> list:
    """Every song under the held-out folders that exist (an empty folder is skipped with a line)."""
    songs = []
    for root in roots:
        if Path(root).is_dir():
            try:
                songs += scan_folder(root)
            except Exception as exc:  # DatasetError: an empty held-out folder
                print(f"skipping {root}: {exc}", file=sys.stderr)
    return songs

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_protocol_arguments(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    songs = held_out_songs(args.data)
    if not songs:
        print("no held-out songs found", file=sys.stderr)
        return 2
    results = []
    header = f"{'song':40s} {'S':>3s} " + " ".join(f"{s + ' LSD':>18s} {s + ' bal':>18s}" for s in SYSTEMS)
    print(header)
    with tempfile.TemporaryDirectory(prefix="mix_quality_") as tmp:
        for song in songs:
            r = evaluate_song(song, args.model, args.max_seconds, args.seed, Path(tmp))
            results.append(r)
            cells = " ".join(f"{r[s]['spectral_distance_db']:18.2f} {r[s]['balance_error_lu']:18.2f}" for s in SYSTEMS)
            print(f"{song.name[:40]:40s} {r['stems']:3d} {cells}", flush=True)

    mean = {s: {k: float(np.mean([r[s][k] for r in results])) for k in ("spectral_distance_db", "balance_error_lu")}
            for s in SYSTEMS}
    print()
    print(f"mean over {len(results)} songs (spectral distance dB / balance error LU):")
    for s in SYSTEMS:
        print(f"  {s:15s} {mean[s]['spectral_distance_db']:6.2f} dB   {mean[s]['balance_error_lu']:6.2f} LU")
    bal_model, bal_eq = mean["model"]["balance_error_lu"], mean["equal_loudness"]["balance_error_lu"]
    lsd_wins = sum(r["model"]["spectral_distance_db"] < min(r["sum"]["spectral_distance_db"],
                                                            r["equal_loudness"]["spectral_distance_db"]) for r in results)
    print(f"balance error ratio model / equal-loudness: {bal_model / max(bal_eq, 1e-9):.2f} (target <= 0.5)")
    print(f"balance error model: {bal_model:.2f} LU (target <= 1.5)")
    print(f"spectral distance below both baselines on {lsd_wins}/{len(results)} songs (target: all)")
    passed = bal_model <= 1.5 and bal_model <= 0.5 * bal_eq and lsd_wins == len(results)
    print("TARGETS MET" if passed else "targets not met")
    if args.json:
        Path(args.json).write_text(json.dumps({"songs": results, "mean": mean, "passed": passed}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
