"""Random excerpts of cached songs: a seeded sampler, a dataset that slices, a padding collate.

The sampler draws ``(song index, start sample)`` pairs: songs in proportion to their
length, starts among the blocks where the song is playing. The draw depends only on
(seed, epoch), every DDP rank takes its own share, and ``set_epoch(epoch, skip=n)``
resumes an epoch after its first ``n`` examples. The dataset slices the memory-mapped
arrays (no decoding) and the collate pads the stem axis to the batch's largest song.
"""
from __future__ import annotations

import math
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from automix.data.cache import ACTIVITY_BLOCK_SECONDS, CachedSong
from automix.errors import DatasetError


class ExcerptSampler(Sampler):
    """Seeded random excerpt positions, sharded across DDP ranks.

    Parameters
    ----------
    songs : sequence of CachedSong
    excerpt_samples : int
        Excerpt length, samples.
    excerpts_per_epoch : int
        Total over all ranks (each rank yields ``excerpts_per_epoch // world_size``).
    seed : int
    rank, world_size : int
        This process's DDP rank and the number of processes.
    active_db : float
        Excerpts start in blocks whose stem-sum RMS is above this (dBFS).
    """

    def __init__(self, songs: Sequence[CachedSong], excerpt_samples: int, excerpts_per_epoch: int,
                 seed: int = 0, rank: int = 0, world_size: int = 1, active_db: float = -50.0):
        if excerpts_per_epoch < world_size:
            raise DatasetError("excerpts_per_epoch must be at least the number of processes")
        self.excerpt_samples = int(excerpt_samples)
        self.total = int(excerpts_per_epoch)
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)
        self.epoch, self.skip = 0, 0
        block = int(round(ACTIVITY_BLOCK_SECONDS * songs[0].sample_rate)) if songs else 1
        self.block = block
        self.starts: list[np.ndarray] = []  # candidate start blocks per song
        for song in songs:
            last_start = max(0, song.num_samples - self.excerpt_samples)
            activity = song.activity_db()
            candidates = np.flatnonzero(activity > active_db)
            candidates = candidates[candidates * block <= last_start]
            if candidates.size == 0:
                candidates = np.array([0])
            self.starts.append(candidates)
        lengths = np.array([max(1, s.num_samples) for s in songs], dtype=np.float64)
        self.song_weights = lengths / lengths.sum()
        self.last_start = [max(0, s.num_samples - self.excerpt_samples) for s in songs]

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Draw epoch ``epoch``'s positions and leave out this rank's first ``skip`` of them."""
        self.epoch, self.skip = int(epoch), int(skip)

    def positions(self, epoch: int) -> list[tuple[int, int]]:
        """All ranks' ``(song, start)`` pairs of ``epoch`` (deterministic)."""
        rng = np.random.default_rng([self.seed, epoch])
        songs = rng.choice(len(self.starts), size=self.total, p=self.song_weights)
        picks = rng.random(self.total)
        offsets = rng.integers(0, self.block, size=self.total)
        out = []
        for song, pick, offset in zip(songs.tolist(), picks, offsets.tolist()):
            candidates = self.starts[song]
            start = int(candidates[int(pick * candidates.size)]) * self.block + offset
            out.append((song, min(start, self.last_start[song])))
        return out

    def __iter__(self) -> Iterator[tuple[int, int]]:
        mine = self.positions(self.epoch)[self.rank::self.world_size][: len(self)]
        return iter(mine[self.skip:])

    def __len__(self) -> int:
        return self.total // self.world_size


class FixedExcerpts(Sampler):
    """Evenly spaced excerpts of every song (validation: the same positions every epoch).

    Parameters
    ----------
    songs : sequence of CachedSong
    excerpt_samples : int
    per_song : int
        Excerpts per song, spread over the song.
    rank, world_size : int
        DDP sharding.
    """

    def __init__(self, songs: Sequence[CachedSong], excerpt_samples: int, per_song: int = 4,
                 rank: int = 0, world_size: int = 1):
        out = []
        for i, song in enumerate(songs):
            last = max(0, song.num_samples - excerpt_samples)
            for k in range(per_song):
                out.append((i, int(round(last * (k + 0.5) / per_song))))
        if out and len(out) % world_size:  # every rank validates the same number of excerpts
            out += out[: world_size - len(out) % world_size]
        self.items = out[rank::world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


class ExcerptDataset(Dataset):
    """Stems, roles and target mix of one excerpt, indexed by ``(song, start)``.

    Parameters
    ----------
    songs : sequence of CachedSong
    excerpt_samples : int
    target : {"sum", "mix"}
        ``"sum"``: the target is the sum of the stems (the balance the stems already
        have; self-supervised). ``"mix"``: the song's reference mix file (supervised;
        every song needs one).
    silence_db : float
        Stems whose excerpt RMS is below this (dBFS) are masked out as silent (at least
        the loudest stem is kept).
    with_reference : bool
        Also return ``reference`` (2, T): the target of another excerpt of the same song
        (half a song later, wrapping), for training the model's reference conditioning.

    Items are dicts: ``stems`` (S, 2, T) float32, ``roles`` (S,) long, ``mask`` (S,)
    bool, ``target_mix`` (2, T) float32 (and ``reference`` (2, T); and, from raw-like
    songs, ``target_stems`` (S, 2, T): the original stems whose sum is ``target_mix``).
    """

    def __init__(self, songs: Sequence[CachedSong], excerpt_samples: int, target: str = "sum",
                 silence_db: float = -60.0, with_reference: bool = False):
        if target not in ("sum", "mix"):
            raise DatasetError(f"target must be 'sum' or 'mix', not {target!r}")
        if target == "mix":
            missing = [s.name for s in songs if not s.has_mix]
            if missing:
                raise DatasetError(f"target 'mix' needs a mix file in every song; missing in: {', '.join(missing[:5])}")
        self.songs = list(songs)
        self.excerpt_samples = int(excerpt_samples)
        self.target = target
        self.silence_power = 10.0 ** (silence_db / 10.0)
        self.with_reference = bool(with_reference)

    def __len__(self) -> int:  # indexing is by (song, start); the samplers define an epoch
        return len(self.songs)

    def _slice(self, array: np.ndarray, start: int) -> np.ndarray:
        piece = np.asarray(array[..., start:start + self.excerpt_samples], dtype=np.float32)
        short = self.excerpt_samples - piece.shape[-1]
        if short > 0:
            piece = np.concatenate([piece, np.zeros(piece.shape[:-1] + (short,), np.float32)], axis=-1)
        return piece

    def __getitem__(self, index: tuple[int, int]) -> dict[str, torch.Tensor]:
        song_index, start = index
        song = self.songs[song_index]
        stems = self._slice(song.stems, start)
        power = np.square(stems).mean(axis=(1, 2))
        mask = power > self.silence_power
        mask[int(np.argmax(power))] = True
        item = {"stems": torch.from_numpy(stems), "roles": torch.tensor(song.roles, dtype=torch.long),
                "mask": torch.from_numpy(mask), "target_mix": torch.from_numpy(self._target(song, start, stems))}
        if song.has_target_stems:
            item["target_stems"] = torch.from_numpy(self._slice(song.target_stems, start))
        if self.with_reference:
            other = (start + song.num_samples // 2) % max(1, song.num_samples - self.excerpt_samples)
            item["reference"] = torch.from_numpy(self._target(song, other))
        return item

    def _target(self, song: CachedSong, start: int, stems: np.ndarray | None = None) -> np.ndarray:
        if self.target == "mix":
            return self._slice(song.mix, start)
        return (self._slice(song.stems, start) if stems is None else stems).sum(axis=0)


def collate_excerpts(items: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack items, zero-padding the stem axis to the largest song of the batch (mask False).

    ``target_stems`` is kept only when every item has it (raw-like songs)."""
    s_max = max(item["stems"].shape[0] for item in items)
    b, (c, t) = len(items), items[0]["stems"].shape[1:]
    stems = torch.zeros(b, s_max, c, t)
    roles = torch.zeros(b, s_max, dtype=torch.long)
    mask = torch.zeros(b, s_max, dtype=torch.bool)
    for i, item in enumerate(items):
        s = item["stems"].shape[0]
        stems[i, :s] = item["stems"]
        roles[i, :s] = item["roles"]
        mask[i, :s] = item["mask"]
    batch = {"stems": stems, "roles": roles, "mask": mask,
             "target_mix": torch.stack([item["target_mix"] for item in items])}
    if "reference" in items[0]:
        batch["reference"] = torch.stack([item["reference"] for item in items])
    if all("target_stems" in item for item in items):
        target_stems = torch.zeros(b, s_max, c, t)
        for i, item in enumerate(items):
            target_stems[i, : item["target_stems"].shape[0]] = item["target_stems"]
        batch["target_stems"] = target_stems
    return batch


def excerpt_samples(seconds: float, sample_rate: int) -> int:
    """Excerpt length in samples for ``seconds`` at ``sample_rate``."""
    return int(math.ceil(seconds * sample_rate))
