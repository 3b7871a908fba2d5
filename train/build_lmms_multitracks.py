"""Build real multitracks from LMMS projects: every track rendered on its own.

LMMS (Debian ``lmms``) ships community demo songs in ``/usr/share/lmms/projects`` (house,
reggae, DnB, chiptune, 80s rock; GPL-2+, Artistic-2, BSD-2, CC-BY-SA). Each project is rendered
per track with ``lmms rendertracks`` (headless) and written to the generic layout::

    ROOT/<song>/<track>.flac   44.1 kHz stereo FLAC (24-bit by default)
    ROOT/<song>/mix.flac       sum of the tracks (a separate full render differs: synth
                               phases are random)
    ROOT/<song>/meta.json      source project, track names, gain

Held-out songs: ``demos/Thomasso-AxeFromThe80s.mmpz``, ``demos/Shovon-ProgressiveHousePluckDemo.mmpz``
and everything in ``demos/CapDan/`` are kept for evaluation. They are NEVER built by default;
``--heldout`` builds ONLY them (into a separate root). Songs already built are skipped.

Examples
--------
    python train/build_lmms_multitracks.py --out /work/data/lmms_mt --max-tracks 20 \\
        --max-wall-minutes 40
    python train/build_lmms_multitracks.py --heldout --out /work/data/heldout_lmms
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from train.multitrack_layout import (  # noqa: E402
    SongResult,
    align_stems,
    fade_out,
    is_song_done,
    safe_name,
    summarize,
    trim_trailing_silence,
    unique_names,
    write_song,
)

PROJECTS_DIR = "/usr/share/lmms/projects"
HELDOUT_PROJECTS = (
    "demos/Thomasso-AxeFromThe80s.mmpz",
    "demos/Shovon-ProgressiveHousePluckDemo.mmpz",
    "demos/CapDan/",
)
"""Held out for evaluation (paths relative to the projects folder; a trailing ``/`` is a folder)."""
AUDIO_TRACK_TYPES = ("0", "2")  # LMMS track types: 0 instrument, 2 sample track
SKIP_DIRS = ("templates",)  # empty starter projects, not songs
FADE_SECONDS = 1.0


def is_heldout(relpath: str) -> bool:
    """True if the project at ``relpath`` (relative to the projects folder) is held out."""
    rel = relpath.replace(os.sep, "/").lstrip("./")
    for item in HELDOUT_PROJECTS:
        if item.endswith("/") and rel.startswith(item):
            return True
        if rel == item:
            return True
    return False


def find_projects(projects_dir: str | Path) -> list[str]:
    """Relative paths of every ``.mmp``/``.mmpz`` project, sorted, without templates."""
    root = Path(projects_dir)
    out = []
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() in (".mmp", ".mmpz") and p.is_file():
            rel = p.relative_to(root).as_posix()
            if rel.split("/", 1)[0] not in SKIP_DIRS:
                out.append(rel)
    return out


def select_projects(projects: list[str], heldout: bool) -> list[str]:
    """Training selection (held-out removed) or, with ``heldout=True``, only the held-out ones."""
    return [p for p in projects if is_heldout(p) == heldout]


def project_xml(path: str | Path) -> str:
    """XML text of an LMMS project (``.mmpz`` = 4-byte big-endian length + zlib stream)."""
    data = Path(path).read_bytes()
    if str(path).lower().endswith(".mmpz"):
        data = zlib.decompress(data[4:])
    return data.decode("utf-8", "replace")


def count_tracks(path: str | Path) -> int:
    """Number of instrument and sample tracks in a project (a proxy for render cost)."""
    xml = project_xml(path)
    return sum(1 for t in re.findall(r"<track\b[^>]*\btype=\"(\d+)\"", xml) if t in AUDIO_TRACK_TYPES)


def song_name(relpath: str) -> str:
    """Dataset song name of a project: ``lmms_`` + its relative path, made safe."""
    return "lmms_" + safe_name(re.sub(r"\.mmpz?$", "", relpath, flags=re.I))


def stem_base_name(wav_name: str) -> str:
    """Stem name from an LMMS rendertracks file ``<index>_<track name>.wav``.

    The index and any audio extension left in the track name (sample tracks are often named
    after their file, e.g. ``bassdrum03.ogg``) are removed.
    """
    stem = Path(wav_name).stem
    stem = re.sub(r"^\d+_", "", stem)
    stem = re.sub(r"\.(ogg|wav|flac|mp3|ds|sf2|xpf)$", "", stem, flags=re.I)
    return safe_name(stem)


# Role hints for tracks whose name says nothing ("Default preset"): the instrument plugin, or
# for the sample player the folder of the LMMS factory sample it plays.
PLUGIN_HINTS = {
    "lb302": "bass", "kicker": "kick", "organic": "organ", "sfxr": "fx", "vibedstrings": "strings",
    "malletsstk": "mallets", "audiofileprocessor": "sample", "sample": "sample",
}
SAMPLE_FOLDER_HINTS = {
    "drums": "drums", "drumsynth": "drums", "beats": "drums", "basses": "bass", "bassloops": "bass",
    "stringsnpads": "pad", "effects": "fx", "misc_fx": "fx", "latin": "percussion",
}


def track_hints(xml: str) -> list[tuple[str, str, bool]]:
    """(track name, role hint, muted) of every instrument/sample track, in document order.

    The hint is a word the role classifier understands: from the sample folder for the sample
    player (``drums/snare01.ogg`` -> ``drums``, ``drumsynth/misc_fx/x.ds`` -> ``fx``), else from
    the synth plugin (``lb302`` -> ``bass``, ``sfxr`` -> ``fx``, any other synth -> ``synth``).
    """
    import xml.etree.ElementTree as ET

    out = []
    for track in ET.fromstring(xml).iter("track"):
        kind = track.get("type")
        if kind not in AUDIO_TRACK_TYPES:
            continue
        inst = track.find("instrumenttrack/instrument")
        plugin = inst.get("name", "") if inst is not None else "sample"
        hint = PLUGIN_HINTS.get(plugin, "synth")
        if inst is not None and plugin == "audiofileprocessor":
            src = next((c.get("src") for c in inst if c.get("src")), "") or ""
            folders = src.replace("\\", "/").split("/")[:-1]
            hint = next((SAMPLE_FOLDER_HINTS[f] for f in reversed(folders) if f in SAMPLE_FOLDER_HINTS), "sample")
        out.append((track.get("name", ""), hint, track.get("muted") == "1"))
    return out


def stem_names(files: list[str], hints: list[tuple[str, str, bool]]) -> list[str]:
    """Stem names for rendered files: the track name, prefixed by a role hint when the
    track name alone tells the role classifier nothing (``synth_default_preset``).

    Files are matched to tracks by name; several tracks with one name are matched in order.
    """
    try:
        from automix.model.roles import role_from_name
    except ImportError:  # the builder still works without the package: plain track names
        role_from_name = None
    by_name: dict[str, list[str]] = {}
    for name, hint, muted in hints:
        by_name.setdefault(name, []).append(hint)
    used: dict[str, int] = {}
    out = []
    for f in files:
        track = re.sub(r"^\d+_", "", Path(f).stem)
        base = stem_base_name(f)
        if role_from_name is None or role_from_name(base + ".wav") != 0:
            out.append(base)
            continue
        options = by_name.get(track, [])
        k = used.get(track, 0)
        used[track] = k + 1
        hint = options[k] if k < len(options) else (options[0] if len(set(options)) == 1 else "")
        out.append(f"{hint}_{base}" if hint and hint != "sample" else base)
    return unique_names(out)


def render_tracks(project: Path, out_dir: Path, timeout_s: float, oversampling: int) -> None:
    """Run ``lmms rendertracks`` headless into ``out_dir`` (float WAV per track)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = ["lmms", "--allowroot", "rendertracks", str(project), "-f", "wav", "-a",
           "-x", str(oversampling), "-o", str(out_dir) + "/"]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=timeout_s, cwd=out_dir)
    if proc.returncode != 0:
        tail = proc.stdout.decode("utf-8", "replace")[-500:]
        raise RuntimeError(f"lmms exited {proc.returncode}: {tail}")


def read_rendered(out_dir: Path, hints: list[tuple[str, str, bool]] | None = None
                  ) -> tuple[dict[str, np.ndarray], list[str], int]:
    """Rendered WAVs -> (stem name -> (2, T) float32, original file names, sample rate)."""
    import soundfile as sf

    files = sorted(out_dir.glob("*.wav"), key=lambda p: (int(re.match(r"(\d*)", p.name).group(1) or 0), p.name))
    if not files:
        raise RuntimeError("lmms rendered no tracks")
    names = stem_names([p.name for p in files], hints or [])
    stems, rate = {}, None
    for name, p in zip(names, files):
        data, sr = sf.read(p, dtype="float32", always_2d=True)
        if rate is not None and sr != rate:
            raise RuntimeError(f"tracks with different sample rates ({rate} and {sr} Hz)")
        rate = sr
        if data.shape[1] == 1:
            data = np.repeat(data, 2, axis=1)
        stems[name] = np.ascontiguousarray(data[:, :2].T)
    return stems, [p.name for p in files], int(rate)


def build_project(rel: str, projects_dir: Path, root: Path, *, max_seconds: float | None,
                  timeout_s: float, oversampling: int, subtype: str) -> SongResult:
    """Render one project per track and write it as a song folder (skips finished songs)."""
    song = song_name(rel)
    if is_song_done(root, song):
        return SongResult(song, "skipped-existing")
    work = root / f".render_{song}"
    if work.exists():
        shutil.rmtree(work)
    try:
        t0 = time.time()
        render_tracks(projects_dir / rel, work, timeout_s, oversampling)
        stems, files, rate = read_rendered(work, track_hints(project_xml(projects_dir / rel)))
        max_samples = int(round(max_seconds * rate)) if max_seconds else None
        full = max(s.shape[-1] for s in stems.values())
        stems = trim_trailing_silence(align_stems(stems, max_samples), rate)
        if max_samples is not None and full > max_samples:
            fade_out(stems, rate, FADE_SECONDS)
        meta = {
            "source_kind": "lmms",
            "source": f"lmms/projects/{rel}",
            "track_files": files,
            "render_seconds": round(time.time() - t0, 1),
            "oversampling": oversampling,
            "max_seconds": max_seconds,
            "full_seconds": round(full / rate, 3),
        }
        return write_song(root, song, stems, rate, meta, subtype=subtype)
    except subprocess.TimeoutExpired:
        return SongResult(song, "failed", message=f"render took longer than {timeout_s:.0f} s")
    except Exception as exc:  # one bad project must not stop a long build
        return SongResult(song, "failed", message=f"{type(exc).__name__}: {exc}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__[__doc__.index("Examples"):],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--projects-dir", default=PROJECTS_DIR, help="LMMS projects folder")
    parser.add_argument("--out", required=True, help="dataset root to write ROOT/<song>/...")
    parser.add_argument("--heldout", action="store_true",
                        help="build ONLY the held-out evaluation projects")
    parser.add_argument("--max-tracks", type=int, default=None,
                        help="skip projects with more instrument/sample tracks (CPU cost)")
    parser.add_argument("--max-seconds", type=float, default=180.0, help="cut songs after this (s)")
    parser.add_argument("--max-wall-minutes", type=float, default=None,
                        help="start no new project after this many minutes")
    parser.add_argument("--timeout-minutes", type=float, default=20.0, help="per project")
    parser.add_argument("--oversampling", type=int, default=1, choices=[1, 2, 4, 8],
                        help="LMMS oversampling (1 is fastest; LMMS default is 2)")
    parser.add_argument("--bits", type=int, default=24, choices=[16, 24])
    parser.add_argument("--list", action="store_true", help="list selected projects and exit")
    args = parser.parse_args(argv)

    if shutil.which("lmms") is None and not args.list:
        raise SystemExit("lmms not found: apt-get install --no-install-recommends -y lmms")
    projects_dir = Path(args.projects_dir)
    selected = select_projects(find_projects(projects_dir), args.heldout)
    tracks = {rel: count_tracks(projects_dir / rel) for rel in selected}
    if args.max_tracks is not None:
        skipped = [r for r in selected if tracks[r] > args.max_tracks]
        selected = [r for r in selected if tracks[r] <= args.max_tracks]
        if skipped:
            print(f"skipping {len(skipped)} projects with > {args.max_tracks} tracks: {skipped}")
    selected.sort(key=lambda r: (tracks[r], r))  # cheapest first
    if args.list:
        for rel in selected:
            print(f"{tracks[rel]:3d} tracks  {rel}  -> {song_name(rel)}")
        return 0
    print(f"{len(selected)} projects -> {args.out}", flush=True)

    from tqdm import tqdm

    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    results = []
    t0 = time.time()
    for rel in tqdm(selected, unit="song", mininterval=5):
        if args.max_wall_minutes is not None and time.time() - t0 > 60 * args.max_wall_minutes:
            results.append(SongResult(song_name(rel), "skipped-wall-time"))
            continue
        r = build_project(rel, projects_dir, root, max_seconds=args.max_seconds,
                          timeout_s=60 * args.timeout_minutes, oversampling=args.oversampling,
                          subtype=f"PCM_{args.bits}")
        results.append(r)
        tqdm.write(f"{r.status:22s} {r.song} {r.seconds:6.1f}s [{','.join(r.stems)}] {r.message}".rstrip())
    print(f"{summarize(results)} in {time.time() - t0:.0f} s", flush=True)
    return 1 if any(r.status == "failed" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
