"""Mixing raw-like stems back into the real mix, on held-out real multitracks (issue 12).

Protocol: each held-out song's original stems sum to its real mix (the target). Their mix
decisions are taken out with :func:`automix.raw_like.make_raw_like` (loudness, placement,
dynamics and tone normalised per stem, default :class:`~automix.raw_like.RawLike`), and
three systems mix the raw-like stems:

* **model** — ``automix mix RAW/ -o mix.wav --stems-out DIR`` through the Python API
  (:func:`automix.mixing.mix`, default ``models/mixer.pt``, ``--model PATH``);
* **sum** — the raw-like stems summed as they are;
* **rule** — role-prior levels (each role's mean loudness relative to its mix on the
  training songs, ``benchmarks/role_levels.json``, ``--refit`` recomputes it), kick, snare,
  drums, bass and vocals centred, the other stems panned alternately -0.5 / +0.5.

Each mix (and its processed stems) is scored against the real mix with
:func:`automix.mix_metrics.score_mix`: multi-resolution log-spectral distance (dB,
loudness-matched), stereo-image distance (side/mid per octave, dB), dynamics (short-term
loudness spread, LU; per-stem crest factor, dB), per-stem balance error (LU) and per-stem
left/right balance error (dB). Lower is better everywhere.

Target (issue 12): the model below both baselines on the mean of every metric, and below
the better baseline's spectral distance on at least two thirds of the songs.

Usage::

    python benchmarks/mix_raw.py [--data /work/data/heldout_midi /work/data/heldout_lmms]
        [--model models/mixer.pt] [--seconds 60] [--json out.json] [--refit]

Importable (training validation): :func:`rule_baseline`, :func:`score_systems`,
:func:`evaluate_song`, :func:`fit_role_levels`.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from automix.audio import load_audio, write_audio
from automix.data.layout import Song, scan_folder
from automix.dsp.dc import remove_dc
from automix.mix_metrics import METRICS, score_mix
from automix.model.roles import role_name
from automix.raw_like import RawLike, make_raw_like

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # mix_quality's protocol helpers
DEFAULT_DATA = ("/work/data/heldout_midi", "/work/data/heldout_lmms")
TRAINING_DATA = ("/work/data/midi_mt", "/work/data/lmms_mt")
ROLE_LEVELS = HERE / "role_levels.json"
SYSTEMS = ("model", "sum", "rule")
#: Roles the rule baseline keeps in the centre.
CENTRED_ROLES = frozenset({"kick", "snare", "drums", "bass", "vocals"})
#: Pan of the other stems, alternately left and right.
RULE_PAN = 0.5
#: Rate the role levels are measured at, Hz (relative levels barely depend on it).
FIT_SAMPLE_RATE = 24000


def load_stems(song: Song, seconds: float | None, sample_rate: int | None = None
               ) -> tuple[list[str], np.ndarray, int]:
    """A song's stem names and original stems (S, 2, T) float32 at one rate, the first ``seconds``.

    Each stem's DC offset is removed (:func:`automix.dsp.dc.remove_dc`, the 5 Hz high-pass
    ``automix mix`` applies at load): it is inaudible, and left in the reference it would
    read as crest factor and left/right balance that no mix decision made."""
    arrays, names, rate = [], [], sample_rate
    for path in song.stems:
        audio = load_audio(path, sample_rate=rate, mono_to_stereo=True)
        rate = rate or audio.sample_rate
        arrays.append(remove_dc(np.ascontiguousarray(np.asarray(audio.samples, dtype=np.float32)[:2]), int(rate)))
        names.append(Path(path).name)
    length = max(a.shape[-1] for a in arrays)
    if seconds:
        length = min(length, int(round(seconds * rate)))
    stems = np.zeros((len(arrays), 2, length), np.float32)
    for i, a in enumerate(arrays):
        n = min(length, a.shape[-1])
        stems[i, :, :n] = a[:, :n]
    return names, stems, int(rate)


# ----------------------------------------------------------------------------- rule baseline
def fit_role_levels(roots: Sequence[str | Path], seconds: float | None = 60.0,
                    progress: Callable[[str], None] | None = None) -> dict:
    """Mean loudness of each role relative to its mix (LU), over the songs under ``roots``.

    A stem's level is :func:`automix.evaluation.stem_balance_lu` (ungated K-weighted
    loudness of the stem minus that of the sum of the song's stems), the same measure as
    the balance error; silent stems are left out. Returns ``{"roles": {name: mean LU},
    "counts": {name: n}, "all": mean over every stem, "songs": n, "roots": [...]}``.
    """
    from automix.evaluation import stem_balance_lu

    levels: dict[str, list[float]] = {}
    songs = 0
    for root in roots:
        if not Path(root).is_dir():
            continue
        for song in scan_folder(root):
            _, stems, sr = load_stems(song, seconds, FIT_SAMPLE_RATE)
            x = torch.from_numpy(stems)
            rel = stem_balance_lu(x, x.sum(0), sr)
            loud = 10.0 * torch.log10(x.square().mean(dim=(1, 2)) + 1e-20)
            for role, value, db in zip(song.roles, rel.tolist(), loud.tolist()):
                if db > -70.0 and math.isfinite(value):
                    levels.setdefault(role_name(role), []).append(value)
            songs += 1
            if progress:
                progress(song.name)
    every = [v for vs in levels.values() for v in vs]
    return {"roles": {k: float(np.mean(v)) for k, v in sorted(levels.items())},
            "counts": {k: len(v) for k, v in sorted(levels.items())},
            "all": float(np.mean(every)) if every else -10.0, "songs": songs,
            "roots": [str(r) for r in roots], "seconds": seconds}


def load_role_levels(path: Path = ROLE_LEVELS, refit: bool = False, roots: Sequence[str] = TRAINING_DATA,
                     seconds: float | None = 60.0) -> dict:
    """The stored role levels, fitting (and storing, atomically) them first if asked or missing."""
    if refit or not path.exists():
        levels = fit_role_levels(roots, seconds, progress=lambda name: print(f"  role levels: {name}",
                                                                             file=sys.stderr))
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(levels, indent=1) + "\n")
        os.replace(tmp, path)
        return levels
    return json.loads(path.read_text())


def rule_baseline(stems: np.ndarray, roles: Sequence[int], sample_rate: int, role_levels: dict) -> np.ndarray:
    """The rule baseline's processed stems (S, 2, T) from raw-like ``stems`` (S, 2, T).

    Every stem is brought to ``role_levels["roles"][its role]`` LU relative to a common
    level (unknown roles: ``role_levels["all"]``), measured as in :func:`fit_role_levels`;
    kick, snare, drums, bass and vocals stay centred; the other stems are panned
    alternately -:data:`RULE_PAN` / +:data:`RULE_PAN` with the console's balance law
    (:func:`automix.dsp.pan.output_matrix`).
    """
    from automix.dsp.pan import output_matrix
    from automix.evaluation import kweighted_loudness_db

    x = torch.from_numpy(np.ascontiguousarray(stems, dtype=np.float32))
    loudness = kweighted_loudness_db(x, sample_rate)
    out = torch.zeros_like(x)
    side = -1.0
    for i, role in enumerate(roles):
        name = role_name(role)
        if not math.isfinite(float(loudness[i])) or float(loudness[i]) < -70.0:
            out[i] = x[i]
            continue
        gain_db = -23.0 + role_levels["roles"].get(name, role_levels["all"]) - float(loudness[i])
        pan = 0.0
        if name not in CENTRED_ROLES:
            pan, side = side * RULE_PAN, -side
        m = output_matrix(torch.tensor(pan), torch.tensor(gain_db), 2)
        out[i] = m @ x[i]
    return out.numpy()


# ----------------------------------------------------------------------------- systems
def model_mix(raw: np.ndarray, names: list[str], sample_rate: int, workdir: Path, model: str | None
              ) -> tuple[np.ndarray, np.ndarray]:
    """``automix mix`` (API) of the raw-like stems written under ``workdir`` -> (processed stems, mix)."""
    from automix.mixing import mix

    folder, out = workdir / "raw", workdir / "model_stems"
    folder.mkdir(parents=True)
    for name, audio in zip(names, raw):
        write_audio(folder / f"{Path(name).stem}.wav", audio, sample_rate, subtype="FLOAT")
    report = mix(folder, workdir / "model_mix.wav", stems_out=out, subtype="FLOAT", model=model)
    processed = np.stack([np.asarray(load_audio(out / f"{Path(n).stem}.wav", mono_to_stereo=True).samples,
                                     dtype=np.float32) for n in names])
    return processed, np.asarray(load_audio(report.mix_path).samples, dtype=np.float32)


def score_systems(systems: dict[str, tuple[np.ndarray, np.ndarray]], stems: np.ndarray, sample_rate: int
                  ) -> dict[str, dict[str, float]]:
    """:func:`automix.mix_metrics.score_mix` of every system's ``(stems, mix)`` against the
    original ``stems`` (S, 2, T) and their sum."""
    target = stems.sum(0)
    return {name: score_mix(est_stems, est_mix, stems, target, sample_rate)
            for name, (est_stems, est_mix) in systems.items()}


def evaluate_song(song: Song, model: str | None, seconds: float | None, workdir: Path, role_levels: dict,
                  settings: RawLike | None = None, with_model: bool = True) -> dict:
    """Scores of the model (unless ``with_model`` is False) and both baselines on one song."""
    names, stems, sr = load_stems(song, seconds)
    raw = make_raw_like(stems, sr, song.roles, settings).stems
    systems: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    t0 = time.perf_counter()
    if with_model:
        systems["model"] = model_mix(raw, names, sr, workdir / song.name.replace("/", "_"), model)
    mix_seconds = time.perf_counter() - t0
    systems["sum"] = (raw, raw.sum(0))
    rule = rule_baseline(raw, song.roles, sr, role_levels)
    systems["rule"] = (rule, rule.sum(0))
    result = {"song": song.name, "stems": len(names), "seconds": stems.shape[-1] / sr, "mix_wall_s": mix_seconds}
    result.update(score_systems(systems, stems, sr))
    return result


def summarize(results: list[dict], systems: Sequence[str] = SYSTEMS) -> dict:
    """Means per system and metric, and the songs on which the model's spectral distance is
    below the better baseline's."""
    present = [s for s in systems if all(s in r for r in results)]
    mean = {s: {k: float(np.nanmean([r[s][k] for r in results])) for k in METRICS} for s in present}
    out = {"mean": mean, "songs": len(results)}
    if "model" in present:
        wins = sum(r["model"]["spectral_distance_db"] < min(r["sum"]["spectral_distance_db"],
                                                            r["rule"]["spectral_distance_db"]) for r in results)
        below_both = {k: mean["model"][k] < min(mean["sum"][k], mean["rule"][k]) for k in METRICS}
        out.update({"spectral_wins": wins, "below_both_baselines": below_both,
                    "passed": all(below_both.values()) and 3 * wins >= 2 * len(results)})
    return out


SHORT = {"spectral_distance_db": "LSD dB", "image_distance_db": "image dB", "spread_distance_lu": "spread LU",
         "crest_distance_db": "crest dB", "balance_error_lu": "bal LU", "lr_balance_error_db": "L/R dB"}


def _row(label: str, system: str, scores: dict) -> str:
    return f"{label[:38]:38s} {system:6s} " + " ".join(f"{scores[k]:9.2f}" for k in METRICS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=list(DEFAULT_DATA), help="held-out dataset folders")
    parser.add_argument("--model", default=None, help="checkpoint (default models/mixer.pt)")
    parser.add_argument("--no-model", action="store_true", help="score the two baselines only")
    parser.add_argument("--seconds", type=float, default=60.0,
                        help="score the first N seconds of each song (0: the whole song)")
    parser.add_argument("--raw-like", default="{}", help="RawLike settings as JSON, e.g. '{\"tone_amount\": 0.7}'")
    parser.add_argument("--refit", action="store_true", help="refit the role levels on the training songs")
    parser.add_argument("--training-data", nargs="+", default=list(TRAINING_DATA),
                        help="songs the role levels are fitted on (with --refit)")
    parser.add_argument("--role-levels", default=str(ROLE_LEVELS), help="role-level JSON file")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        settings = RawLike(**json.loads(args.raw_like))
    except (TypeError, ValueError) as exc:
        print(f"mix_raw: bad --raw-like settings: {exc}", file=sys.stderr)
        return 2

    from mix_quality import held_out_songs

    songs: list[Song] = held_out_songs(args.data)
    if not songs:
        print("mix_raw: no held-out songs found", file=sys.stderr)
        return 2
    role_levels = load_role_levels(Path(args.role_levels), args.refit, args.training_data)
    print(f"role levels from {role_levels['songs']} training songs: "
          + ", ".join(f"{k} {v:+.1f}" for k, v in role_levels["roles"].items()))
    systems = [s for s in SYSTEMS if not (args.no_model and s == "model")]
    print(f"{'song':38s} {'system':6s} " + " ".join(f"{SHORT[k]:>9s}" for k in METRICS))
    results = []
    with tempfile.TemporaryDirectory(prefix="mix_raw_") as tmp:
        for song in songs:
            r = evaluate_song(song, args.model, args.seconds or None, Path(tmp), role_levels, settings,
                              with_model=not args.no_model)
            results.append(r)
            for i, system in enumerate(systems):
                print(_row(f"{song.name} ({r['stems']} stems)" if i == 0 else "", system, r[system]), flush=True)
    summary = summarize(results, systems)
    print()
    print(f"mean over {len(results)} songs:")
    for system in systems:
        print(_row("", system, summary["mean"][system]))
    if "spectral_wins" in summary:
        print(f"model below the better baseline's spectral distance on {summary['spectral_wins']}/{len(results)} "
              f"songs (target: at least two thirds)")
        worse = [SHORT[k] for k, ok in summary["below_both_baselines"].items() if not ok]
        print("model below both baselines on every mean" if not worse else
              f"model not below both baselines on: {', '.join(worse)}")
        print("TARGETS MET" if summary["passed"] else "targets not met")
    if args.json:
        out = Path(args.json)
        tmp_path = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        tmp_path.write_text(json.dumps({"songs": results, **summary, "raw_like": settings.to_dict(),
                                        "seconds": args.seconds, "model": args.model or "models/mixer.pt"},
                                       indent=2))
        os.replace(tmp_path, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
