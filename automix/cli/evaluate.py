"""``automix evaluate``: score the mix model against the two baselines on held-out songs."""
from __future__ import annotations

import argparse

DESCRIPTION = """\
Score a mix model on held-out multitracks (songs it was not trained on).

Each song's stems are knocked off balance the same seeded way every time (per stem: random
gain within +/-9 dB and a tilt EQ within +/-6 dB); the model, the plain sum of the stems, and
every stem normalised to equal loudness then mix them. Each result is compared with the
song's original mix (its mix.* file, else the sum of its stems):

  spectral distance  multi-resolution log-spectral distance to the original mix, dB,
                     after matching loudness (lower is better)
  balance error      mean absolute error of every stem's loudness relative to the mix,
                     LU (lower is better)

DATA_DIR holds one folder per song with its stems (ROOT/<song>/<stem>.wav ... + optional
mix.*), or is a MUSDB18-HQ folder (--layout musdb: its test/ songs are used)."""

EPILOG = """\
examples:
  automix evaluate /data/heldout_midi
  automix evaluate /data/heldout_lmms --model runs/mine/best.pt --seconds 20 --json scores.json
  automix evaluate /data/musdb18hq --layout musdb --baselines-only
"""


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("evaluate", help="score the mix model against baselines on held-out songs",
                              description=DESCRIPTION, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data_dir", metavar="DATA_DIR", help="folder of held-out songs")
    p.add_argument("--model", metavar="PATH", help="checkpoint (default: the shipped models/mixer.pt)")
    p.add_argument("--layout", choices=("folder", "musdb"), default="folder", help="dataset layout")
    p.add_argument("--seconds", type=float, default=30.0,
                   help="score the middle N seconds of each song; 0 = whole songs (default 30)")
    p.add_argument("--sample-rate", type=int, metavar="HZ",
                   help="analysis rate (default: the model's training rate)")
    p.add_argument("--seed", type=int, default=0, help="seed of the perturbation (default 0)")
    p.add_argument("--baselines-only", action="store_true", help="score only the two baselines")
    p.add_argument("--json", metavar="FILE", help="also write per-song scores and means as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    return p


def run(args: argparse.Namespace) -> int:
    import json
    import os
    import sys
    from dataclasses import asdict
    from pathlib import Path

    import torch

    from automix.audio import check_output_path
    from automix.data.layout import scan_folder, scan_musdb
    from automix.evaluation import SYSTEMS, evaluate_songs, model_mixer, summarize

    songs = scan_folder(args.data_dir) if args.layout == "folder" else scan_musdb(args.data_dir, "test")
    out = Path(args.json) if args.json else None
    if out is not None:  # before the minutes of scoring: never a song's file, not over a file unasked
        inputs = [p for s in songs for p in (*s.stems, *([s.mix] if s.mix else []))]
        check_output_path(out, overwrite=args.overwrite, inputs=inputs)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    mixer, sample_rate = None, args.sample_rate
    if not args.baselines_only:
        from automix.model.checkpoint import load_model

        model, info = load_model(args.model)
        mixer = model_mixer(model)
        sample_rate = sample_rate or int(info.get("sample_rate", 44100))
    sample_rate = sample_rate or 44100
    scores = evaluate_songs(songs, mixer, sample_rate, seconds=args.seconds or None, seed=args.seed,
                            progress=sys.stderr.isatty())
    systems = [s for s in SYSTEMS if any(x.system == s for x in scores)]
    table = {(x.song, x.system): x for x in scores}
    width = max(12, *(len(s.name) for s in songs))
    header = " ".join(f"{s[:14]:>14}" for s in systems)
    print(f"{'':{width}}  {'spectral distance (dB)':^{15 * len(systems)}}  {'balance error (LU)':^{15 * len(systems)}}")
    print(f"{'song':{width}}  {header}  {header}")
    for song in songs:
        lsd = " ".join(f"{table[song.name, s].spectral_distance_db:14.2f}" for s in systems)
        bal = " ".join(f"{table[song.name, s].balance_error_lu:14.2f}" for s in systems)
        print(f"{song.name:{width}}  {lsd}  {bal}")
    summary = summarize(scores)
    lsd = " ".join(f"{summary[s]['spectral_distance_db']:14.2f}" for s in systems)
    bal = " ".join(f"{summary[s]['balance_error_lu']:14.2f}" for s in systems)
    print(f"{'mean':{width}}  {lsd}  {bal}")
    if out is not None:
        payload = {"data_dir": str(args.data_dir), "model": args.model, "sample_rate": sample_rate,
                   "seconds": args.seconds, "seed": args.seed, "summary": summary,
                   "songs": [asdict(x) for x in scores]}
        from automix.outputs import write_text_atomic

        write_text_atomic(out, json.dumps(payload, indent=2))
    return 0
