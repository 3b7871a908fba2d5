"""Finding multitrack songs on disk, and splitting them into train/valid/test by song.

Two layouts are understood:

* **folder** -- ``ROOT/<song>/<stem>.wav|flac|ogg|...``; an optional ``ROOT/<song>/mix.*``
  (or ``mixture.*``) is the song's reference mix. Stem names give each stem its role
  ("kick.wav", "Lead Vox.flac", see :func:`automix.model.roles.role_from_name`).
* **musdb** -- MUSDB18-HQ: ``ROOT/{train,test}/<song>/{drums,bass,other,vocals,mixture}.wav``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from automix.errors import DatasetError

AUDIO_SUFFIXES: tuple[str, ...] = (".wav", ".flac", ".ogg", ".aif", ".aiff", ".mp3", ".opus")
MIX_NAMES: tuple[str, ...] = ("mix", "mixture")
MUSDB_STEMS: tuple[str, ...] = ("drums", "bass", "other", "vocals")


@dataclass(frozen=True)
class Song:
    """One multitrack: its stems and, if there is one, its reference mix.

    Attributes
    ----------
    name : str
        Song folder name (unique within a dataset).
    stems : tuple of Path
        Stem files, sorted by name.
    mix : Path or None
        Reference mix file.
    """

    name: str
    stems: tuple[Path, ...]
    mix: Path | None = None
    roles: tuple[int, ...] = field(default=())

    @property
    def stem_names(self) -> tuple[str, ...]:
        return tuple(p.stem for p in self.stems)


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
                  and not p.name.startswith("."))


def _song(name: str, stems: Sequence[Path], mix: Path | None) -> Song:
    from automix.model.roles import role_from_name

    return Song(name, tuple(stems), mix, tuple(role_from_name(p.name) for p in stems))


def scan_folder(root: str | Path, exclude: Sequence[str] = ()) -> list[Song]:
    """Songs of a generic multitrack folder ``ROOT/<song>/<stem>.*`` (sorted by name).

    Parameters
    ----------
    root : path
        Dataset folder.
    exclude : sequence of str
        Song folder names to leave out (e.g. songs kept for held-out evaluation).

    Raises
    ------
    DatasetError
        When ``root`` is missing or holds no song with at least one stem.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist")
    skip = set(exclude)
    songs = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if folder.name in skip:
            continue
        files = _audio_files(folder)
        mixes = [p for p in files if p.stem.lower() in MIX_NAMES]
        stems = [p for p in files if p.stem.lower() not in MIX_NAMES]
        if len(mixes) > 1:
            raise DatasetError(f"song {folder} has several mix files ({', '.join(p.name for p in mixes)}); keep one")
        if stems:
            songs.append(_song(folder.name, stems, mixes[0] if mixes else None))
    if not songs:
        raise DatasetError(
            f"no songs found in {root}: expected one folder per song holding its stems as audio files "
            f"({', '.join(AUDIO_SUFFIXES)}), e.g. {root}/my_song/drums.wav")
    return songs


def scan_musdb(root: str | Path, subset: str = "train") -> list[Song]:
    """Songs of a MUSDB18-HQ folder (``subset`` is ``"train"`` or ``"test"``)."""
    folder = Path(root) / subset
    if not folder.is_dir():
        raise DatasetError(f"{folder} does not exist: a MUSDB18-HQ folder holds train/ and test/")
    songs = []
    for song_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        stems = []
        for name in MUSDB_STEMS:
            found = [p for p in _audio_files(song_dir) if p.stem == name]
            if not found:
                raise DatasetError(f"MUSDB song {song_dir} has no {name}.wav")
            stems.append(found[0])
        mix = [p for p in _audio_files(song_dir) if p.stem == "mixture"]
        songs.append(_song(song_dir.name, stems, mix[0] if mix else None))
    if not songs:
        raise DatasetError(f"no songs in {folder}")
    return songs


def _rank(name: str, seed: int) -> str:
    return hashlib.sha1(f"{seed}:{name}".encode()).hexdigest()


def split_songs(songs: Sequence[Song], valid_fraction: float = 0.1, test_fraction: float = 0.0,
                seed: int = 0) -> dict[str, list[Song]]:
    """Deterministic split by song: ``{"train": [...], "valid": [...], "test": [...]}``.

    Songs are ordered by a hash of (seed, name), so the split depends only on the names
    (not on the order of discovery or the machine). Valid and test get at least one song
    each when their fraction is positive and at least one song is left for training.
    """
    ordered = sorted(songs, key=lambda s: _rank(s.name, seed))
    n = len(ordered)

    def count(fraction: float) -> int:
        return 0 if fraction <= 0 else max(1, round(fraction * n))

    n_valid, n_test = count(valid_fraction), count(test_fraction)
    if n_valid + n_test >= n:
        raise DatasetError(
            f"{n} song(s) are too few to hold out {n_valid} for validation and {n_test} for testing; "
            "add songs or lower the fractions")
    by_name = lambda items: sorted(items, key=lambda s: s.name)  # noqa: E731
    return {"valid": by_name(ordered[:n_valid]),
            "test": by_name(ordered[n_valid:n_valid + n_test]),
            "train": by_name(ordered[n_valid + n_test:])}
