"""Fetch real mastered music (GPL game soundtracks from Debian) for mastering training and benchmarks.

Downloads the Debian packages ``hedgewars-data`` (26 tracks, GPL-2) and ``supertux-data``
(48 tracks, GPL-2+) with ``apt-get download``, unpacks them with ``dpkg-deb -x`` and keeps
only their music as ``DEST/hedgewars/*.ogg`` and ``DEST/supertux/*.ogg`` (44.1/48 kHz
stereo Ogg Vorbis). Nothing is committed to the repository; run it once per machine::

    python -m train.fetch_masters                      # -> /work/data/masters
    python -m train.fetch_masters --dest ~/masters --packages hedgewars-data

``apt-get update`` must have been run once (needs network access at fetch time only).
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: package -> (folder name under DEST, music folder inside the unpacked package)
PACKAGES: dict[str, tuple[str, str]] = {
    "hedgewars-data": ("hedgewars", "usr/share/games/hedgewars/Data/Music"),
    "supertux-data": ("supertux", "usr/share/games/supertux2/music"),
}
DEFAULT_DEST = Path("/work/data/masters")
MUSIC_EXTENSIONS = (".ogg", ".oga", ".flac", ".wav", ".opus")


def fetch_package(package: str, dest: Path, *, keep_deb: bool = False) -> list[Path]:
    """Download and unpack one Debian package; copy its music files into ``dest/<name>/``.

    Parameters
    ----------
    package : str
        A key of :data:`PACKAGES`.
    dest : Path
        Root folder of the collection.

    Returns
    -------
    list of Path
        The music files now under ``dest/<name>/``.
    """
    name, music_dir = PACKAGES[package]
    out_dir = dest / name
    existing = sorted(p for p in out_dir.glob("*") if p.suffix.lower() in MUSIC_EXTENSIONS) if out_dir.is_dir() else []
    if existing:
        print(f"{package}: {len(existing)} files already in {out_dir}, skipping")
        return existing
    with tempfile.TemporaryDirectory(prefix=f"fetch-{name}-", dir=dest) as tmp_name:
        tmp = Path(tmp_name)
        subprocess.run(["apt-get", "download", package], cwd=tmp, check=True)
        debs = sorted(tmp.glob(f"{package}_*.deb"))
        if not debs:
            raise RuntimeError(f"apt-get download {package} produced no .deb file")
        unpacked = tmp / "root"
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)], check=True)
        src = unpacked / music_dir
        if not src.is_dir():
            raise RuntimeError(f"{package}: expected music folder {music_dir} not found in the package")
        staging = dest / f".{name}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        files = sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in MUSIC_EXTENSIONS)
        for f in files:
            shutil.copy2(f, staging / f.name)
        shutil.rmtree(out_dir, ignore_errors=True)
        staging.replace(out_dir)
        if keep_deb:
            shutil.copy2(debs[0], dest / debs[0].name)
    got = sorted(p for p in out_dir.glob("*") if p.suffix.lower() in MUSIC_EXTENSIONS)
    print(f"{package}: {len(got)} music files -> {out_dir}")
    return got


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="collection folder (default %(default)s)")
    parser.add_argument("--packages", nargs="+", default=list(PACKAGES), choices=list(PACKAGES))
    parser.add_argument("--keep-deb", action="store_true", help="also keep the downloaded .deb files")
    args = parser.parse_args(argv)
    args.dest.mkdir(parents=True, exist_ok=True)
    total = 0
    for package in args.packages:
        try:
            total += len(fetch_package(package, args.dest, keep_deb=args.keep_deb))
        except (subprocess.CalledProcessError, RuntimeError) as exc:
            print(f"{package}: failed ({exc}); run 'apt-get update' first and check network access", file=sys.stderr)
            return 1
    print(f"{total} mastered tracks in {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
