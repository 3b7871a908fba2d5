"""A training data set description: where the songs are and how to cut them (Hydra ``data:``)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from automix.data.cache import AudioCache, CachedSong
from automix.data.excerpts import ExcerptDataset, excerpt_samples
from automix.data.layout import Song, scan_folder, scan_musdb, split_songs
from automix.errors import DatasetError
from automix.perturb import Perturbation
from automix.raw_like import RawLike


def default_cache_dir() -> Path:
    """``$AUTOMIX_CACHE`` or ``$XDG_CACHE_HOME/automix/decoded`` (``~/.cache/...``)."""
    if os.environ.get("AUTOMIX_CACHE"):
        return Path(os.environ["AUTOMIX_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "automix" / "decoded"


@dataclass
class MultitrackData:
    """Multitrack songs on disk, split by song, decoded once, cut into random excerpts.

    Parameters
    ----------
    root : str or list of str
        Dataset folder, or several (their songs are pooled; song names then become
        ``<folder name>/<song>``).
    layout : {"folder", "musdb"}
        ``ROOT/<song>/<stem>.*`` (+ optional ``mix.*``) or MUSDB18-HQ (``train/``, ``test/``).
    sample_rate : int
        Training rate, Hz; audio is resampled once, when cached.
    excerpt_seconds : float
        Length of a training example, s.
    excerpts_per_epoch : int
        Training examples per epoch (all processes together).
    valid_fraction, test_fraction : float
        Share of songs held out (folder layout; MUSDB's test set is its ``test/`` folder).
    valid_excerpts_per_song : int
        Fixed validation excerpts per held-out song.
    exclude : list of str
        Song names never used (e.g. kept for a separate held-out evaluation).
    target : {"sum", "mix"}
        What the model must reproduce: the sum of the stems (self-supervised un-mixing;
        works without mix files) or each song's mix file (supervised).
    perturbation : Perturbation or None
        Random per-stem processing applied to the model's input (None: none); with
        ``raw_like`` it is the seeded random part on top of the raw-like stems.
    raw_like : RawLike, dict, True or None
        Raw-like input stems (:mod:`automix.raw_like`): every song is normalised once, when
        cached, and the target becomes its real mix, the sum of its original stems (the
        song's mix file is not used; ``target`` is then ignored). A dict holds
        :class:`~automix.raw_like.RawLike` fields (Hydra: ``data.raw_like={}`` for the
        defaults, ``+data.raw_like.tone_amount=0.7`` for one field); None: off.
    cache_dir : str or None
        Decoded-audio cache (default :func:`default_cache_dir`).
    cache_dtype : {"float16", "float32"}
    max_stems : int
        More stems than this: the quietest are summed into one.
    split_seed : int
        Seed of the song split.
    reference_probability : float
        Share of training steps on which the model also gets a reference mix (another
        excerpt of the same song's target), so that it learns to follow a reference.
    scramble : Perturbation or None
        With ``raw_like``: the old un-mixing task's perturbation, applied to the ORIGINAL
        stems on a share ``scramble_probability`` of the training steps (one model for
        stems that arrive normalised and stems that arrive roughly balanced).
    scramble_probability : float
        Share of training steps (drawn per batch) that train the un-mixing task.
    """

    root: str | Sequence[str]
    layout: str = "folder"
    sample_rate: int = 24000
    excerpt_seconds: float = 4.0
    excerpts_per_epoch: int = 1024
    valid_fraction: float = 0.1
    test_fraction: float = 0.0
    valid_excerpts_per_song: int = 4
    exclude: Sequence[str] = field(default_factory=list)
    target: str = "sum"
    perturbation: Perturbation | None = None
    cache_dir: str | None = None
    cache_dtype: str = "float16"
    max_stems: int = 16
    split_seed: int = 0
    reference_probability: float = 0.0
    raw_like: RawLike | None = None
    scramble: Perturbation | None = None
    scramble_probability: float = 0.0

    def __post_init__(self) -> None:
        spec = self.raw_like
        if spec is None or spec is False:
            self.raw_like = None
        elif spec is True:
            self.raw_like = RawLike()
        elif isinstance(spec, dict) or hasattr(spec, "keys"):
            fields = {k: v for k, v in dict(spec).items() if not str(k).startswith("_")}
            try:
                self.raw_like = RawLike(**fields)
            except TypeError as e:
                raise DatasetError(f"data.raw_like: {e}") from None
        elif not isinstance(spec, RawLike):
            raise DatasetError(f"data.raw_like must be null, true or a mapping of RawLike settings, not {spec!r}")

    @property
    def target_is_sum(self) -> bool:
        """The target is the sum of the model's own input stems (self-supervised un-mixing)."""
        return self.target == "sum" and self.raw_like is None

    @property
    def dataset_target(self) -> str:
        """What :class:`ExcerptDataset` reads as the target (raw-like: the cached real mix)."""
        return "mix" if self.raw_like is not None else self.target

    @property
    def excerpt_samples(self) -> int:
        return excerpt_samples(self.excerpt_seconds, self.sample_rate)

    def songs(self) -> dict[str, list[Song]]:
        """``{"train", "valid", "test"}`` song lists (deterministic)."""
        if self.layout not in ("folder", "musdb"):
            raise DatasetError(f"unknown dataset layout {self.layout!r} (use 'folder' or 'musdb')")
        roots = [self.root] if isinstance(self.root, (str, Path)) else list(self.root)
        if not roots:
            raise DatasetError("data.root names no folder")
        pooled = len(roots) > 1
        split: dict[str, list[Song]] = {"train": [], "valid": [], "test": []}
        for root in roots:
            if self.layout == "folder":
                found = {"all": scan_folder(root)}
            else:
                test_dir = Path(root) / "test"
                found = {"all": scan_musdb(root, "train"),
                         "test": scan_musdb(root, "test") if test_dir.is_dir() else []}
            if pooled:
                found = {k: [replace(s, name=f"{Path(root).name}/{s.name}") for s in v] for k, v in found.items()}
            excluded = set(self.exclude)
            songs = [s for s in found["all"] if s.name not in excluded and s.name.split("/")[-1] not in excluded]
            if not songs:
                raise DatasetError(f"every song of {root} is excluded")
            test_fraction = self.test_fraction if self.layout == "folder" else 0.0
            for name, part in split_songs(songs, self.valid_fraction, test_fraction, self.split_seed).items():
                split[name] += part
            split["test"] += found.get("test", [])
        return split

    def cache(self) -> AudioCache:
        return AudioCache(self.cache_dir or default_cache_dir(), self.sample_rate, self.cache_dtype,
                          self.max_stems, with_mix=self.target == "mix", raw_like=self.raw_like)

    def prepare(self, splits: Sequence[str] = ("train", "valid"), progress: bool = False
                ) -> dict[str, list[CachedSong]]:
        """Decode (once) and return the cached songs of ``splits``."""
        songs, cache = self.songs(), self.cache()
        out = {}
        for name in splits:
            if not songs[name]:
                out[name] = []
                continue
            out[name] = cache.prepare(songs[name], progress=progress)
        return out

    def dataset(self, songs: Sequence[CachedSong]) -> ExcerptDataset:
        return ExcerptDataset(songs, self.excerpt_samples, target=self.dataset_target,
                              with_reference=self.reference_probability > 0)
