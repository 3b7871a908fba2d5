"""Decode every song once into memory-mapped arrays, so that epochs only slice.

A song's stems are resampled to the training rate, made stereo, zero-padded to the
same length and stored as one ``.npy`` array (S, 2, T) (float16 by default: half the
disk and page cache, 66 dB below full scale for the rounding); the reference mix, if
any, is stored next to it as (2, T). With raw-like settings (:mod:`automix.raw_like`) the
stored stems are the raw-like ones, ``mix.npy`` is the sum of the original stems (the
song's real mix: the training target) and ``target_stems.npy`` keeps the originals. Arrays are opened with ``np.load(mmap_mode="r")``
so an excerpt is a slice that reads only its pages, in the main process or in
DataLoader workers alike. A cache entry is keyed by the files' paths, sizes and
modification times and by the decoding settings, so editing a stem re-decodes only
that song, and plain and raw-like entries of one song live side by side. Entries are written atomically (temp file + ``os.replace``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from automix.data.layout import Song
from automix.errors import DatasetError
from automix.raw_like import RAW_LIKE_VERSION, RawLike

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
ACTIVITY_BLOCK_SECONDS = 0.25
"""Hop of the stored loudness-activity curve, s."""
SILENCE_DB = -70.0
"""Stems whose whole-song RMS is below this (dBFS) are dropped as silent."""


@dataclass
class CachedSong:
    """A decoded song in the cache.

    Attributes
    ----------
    name : str
    directory : Path
        Folder holding ``stems.npy`` (S, 2, T), ``mix.npy`` (2, T, optional),
        ``activity.npy`` (RMS dBFS of the stem sum per :data:`ACTIVITY_BLOCK_SECONDS`),
        ``target_stems.npy`` (S, 2, T, raw-like entries only) and ``meta.json``.
    stem_names : tuple of str
    roles : tuple of int
    num_samples : int
        Length T at ``sample_rate``.
    sample_rate : int
        Hz.
    has_mix : bool
    has_target_stems : bool
        Raw-like entry: ``stems`` are raw-like, ``target_stems`` the originals and ``mix``
        their sum.
    """

    name: str
    directory: Path
    stem_names: tuple[str, ...]
    roles: tuple[int, ...]
    num_samples: int
    sample_rate: int
    has_mix: bool
    has_target_stems: bool = False

    def __post_init__(self) -> None:
        self._stems: np.ndarray | None = None
        self._mix: np.ndarray | None = None
        self._target_stems: np.ndarray | None = None

    def __getstate__(self) -> dict:  # memmaps are reopened in each worker process
        state = dict(self.__dict__)
        state["_stems"] = state["_mix"] = state["_target_stems"] = None
        return state

    @property
    def num_stems(self) -> int:
        return len(self.stem_names)

    @property
    def stems(self) -> np.ndarray:
        """Memory-mapped stems (S, 2, T)."""
        if self._stems is None:
            self._stems = np.load(self.directory / "stems.npy", mmap_mode="r")
        return self._stems

    @property
    def mix(self) -> np.ndarray | None:
        """Memory-mapped reference mix (2, T), or None."""
        if not self.has_mix:
            return None
        if self._mix is None:
            self._mix = np.load(self.directory / "mix.npy", mmap_mode="r")
        return self._mix

    @property
    def target_stems(self) -> np.ndarray | None:
        """Memory-mapped original stems (S, 2, T) of a raw-like entry, or None."""
        if not self.has_target_stems:
            return None
        if self._target_stems is None:
            self._target_stems = np.load(self.directory / "target_stems.npy", mmap_mode="r")
        return self._target_stems

    def activity_db(self) -> np.ndarray:
        """RMS level (dBFS) of the sum of the stems per block of :data:`ACTIVITY_BLOCK_SECONDS`."""
        return np.load(self.directory / "activity.npy")


def _fingerprint(song: Song, settings: dict) -> str:
    h = hashlib.sha1(json.dumps(settings, sort_keys=True).encode())
    for path in (*song.stems, *( [song.mix] if song.mix else [])):
        st = Path(path).stat()
        h.update(f"{Path(path).resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


class AudioCache:
    """Cache of decoded songs under ``root``.

    Parameters
    ----------
    root : path
        Cache folder (created).
    sample_rate : int
        Rate everything is resampled to, Hz (training at 22050/24000 Hz halves the work).
    dtype : {"float16", "float32"}
        Storage type of the samples.
    max_stems : int
        Songs with more stems keep their ``max_stems - 1`` loudest and sum the rest
        into one ``"others"`` stem (so that the stems still sum to the mix).
    with_mix : bool
        Also decode each song's mix file (only needed when training against it).
    raw_like : RawLike or None
        Store raw-like stems (:func:`automix.raw_like.make_raw_like`, applied to the stems
        at ``sample_rate`` after the ``max_stems`` merge), their originals and the originals'
        sum as the mix (a song's own mix file is then not read).
    """

    def __init__(self, root: str | Path, sample_rate: int, dtype: str = "float16", max_stems: int = 16,
                 with_mix: bool = True, raw_like: RawLike | None = None):
        if dtype not in ("float16", "float32"):
            raise DatasetError(f"cache dtype must be float16 or float32, not {dtype!r}")
        if max_stems < 2:
            raise DatasetError("max_stems must be at least 2")
        self.root = Path(root)
        self.sample_rate = int(sample_rate)
        self.dtype = dtype
        self.max_stems = int(max_stems)
        self.with_mix = bool(with_mix)
        self.raw_like = raw_like

    def _settings(self) -> dict:
        settings = {"format": CACHE_FORMAT, "sample_rate": self.sample_rate, "dtype": self.dtype,
                    "max_stems": self.max_stems, "with_mix": self.with_mix}
        if self.raw_like is not None:  # plain entries keep the key they always had
            settings = {**settings, "with_mix": True, "raw_like": self.raw_like.to_dict(),
                        "raw_like_version": RAW_LIKE_VERSION}
        return settings

    def entry_dir(self, song: Song) -> Path:
        folder = Path(song.stems[0]).parent.name if song.stems else song.name  # same entry when pooled
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", folder)[:60]
        return self.root / f"{safe}-{_fingerprint(song, self._settings())}"

    def load(self, song: Song) -> CachedSong | None:
        """The cached entry of ``song``, decoding it first if needed; None if all stems are silent."""
        directory = self.entry_dir(song)
        meta_path = directory / "meta.json"
        if not meta_path.exists():
            self._decode(song, directory)
        meta = json.loads(meta_path.read_text())
        if not meta["stem_names"]:
            return None
        return CachedSong(song.name, directory, tuple(meta["stem_names"]), tuple(meta["roles"]),
                          int(meta["num_samples"]), int(meta["sample_rate"]), bool(meta["has_mix"]),
                          bool(meta.get("has_target_stems", False)))

    def prepare(self, songs: Sequence[Song], progress: bool = False) -> list[CachedSong]:
        """Cached entries of ``songs`` (silent songs left out), decoding what is missing."""
        items: Iterable[Song] = songs
        if progress:
            from tqdm import tqdm

            items = tqdm(songs, desc="decoding songs", unit="song")
        out = []
        for song in items:
            entry = self.load(song)
            if entry is None:
                log.warning("song %s: every stem is silent, left out", song.name)
            else:
                out.append(entry)
        if not out:
            raise DatasetError("every song of the dataset is silent")
        return out

    def _decode(self, song: Song, directory: Path) -> None:
        from automix.audio import load_audio

        stems, names, roles = [], [], []
        for path, role in zip(song.stems, song.roles):
            audio = load_audio(path, sample_rate=self.sample_rate)
            samples = audio.samples  # load_audio returns mono files as stereo
            if _rms_db(samples) < SILENCE_DB:
                continue
            stems.append(samples)
            names.append(Path(path).stem)
            roles.append(int(role))
        mix = None
        if song.mix is not None and self.with_mix and self.raw_like is None:
            mix = load_audio(song.mix, sample_rate=self.sample_rate).samples
        length = max([s.shape[-1] for s in stems] + ([mix.shape[-1]] if mix is not None else []), default=0)
        if len(stems) > self.max_stems:
            stems, names, roles = _merge_quietest(stems, names, roles, self.max_stems, length)
        directory.mkdir(parents=True, exist_ok=True)
        if stems:
            array = np.zeros((len(stems), 2, length), dtype=self.dtype)
            total = np.zeros((2, length), dtype=np.float32)
            for i, s in enumerate(stems):
                array[i, :, : s.shape[-1]] = s
                total[:, : s.shape[-1]] += s
            if self.raw_like is not None:
                raw = self.raw_like.apply(array.astype(np.float32), self.sample_rate, roles)
                _save_npy(directory / "target_stems.npy", array)
                array = raw.stems.astype(self.dtype)
                records = [r.to_dict() for r in raw.records]
                mix = total
            _save_npy(directory / "stems.npy", array)
            if mix is not None:
                padded = np.zeros((2, length), dtype=self.dtype)
                padded[:, : mix.shape[-1]] = mix
                _save_npy(directory / "mix.npy", padded)
            _save_npy(directory / "activity.npy", _block_rms_db(total, self.sample_rate))
        meta = {"song": song.name, "stem_names": names, "roles": roles, "num_samples": int(length),
                "sample_rate": self.sample_rate, "has_mix": mix is not None and bool(stems),
                "has_target_stems": self.raw_like is not None and bool(stems),
                "sources": [str(p) for p in song.stems] + ([str(song.mix)] if song.mix else [])}
        if self.raw_like is not None:
            meta["raw_like"] = {"settings": self.raw_like.to_dict(), "stems": records if stems else []}
        tmp = directory / f".meta.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(meta, indent=1))
        os.replace(tmp, directory / "meta.json")


def _rms_db(x: np.ndarray) -> float:
    return float(10.0 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-20))


def _block_rms_db(x: np.ndarray, sample_rate: int) -> np.ndarray:
    block = max(1, int(round(ACTIVITY_BLOCK_SECONDS * sample_rate)))
    n = x.shape[-1] // block
    if n == 0:
        return np.array([_rms_db(x)], dtype=np.float32)
    power = np.square(x[:, : n * block], dtype=np.float64).reshape(2, n, block).mean(axis=(0, 2))
    return (10.0 * np.log10(power + 1e-20)).astype(np.float32)


def _merge_quietest(stems, names, roles, max_stems, length):
    levels = [_rms_db(s) for s in stems]
    order = sorted(range(len(stems)), key=lambda i: -levels[i])
    keep = sorted(order[: max_stems - 1])
    merged = np.zeros((2, length), dtype=np.float32)
    for i in order[max_stems - 1:]:
        merged[:, : stems[i].shape[-1]] += stems[i]
    return ([stems[i] for i in keep] + [merged], [names[i] for i in keep] + ["others"],
            [roles[i] for i in keep] + [0])
