"""What makes a training run repeatable bit for bit, and resumable exactly.

* :func:`rng_state` / :func:`set_rng_state` -- every global random generator of a process
  (torch CPU and CUDA, numpy, Python) as plain tensors and tuples, so a checkpoint read
  with ``torch.load(weights_only=True)`` restores them.
* :class:`KeyedSampler` and :class:`SeededItems` -- each training example is loaded with
  torch's, numpy's and Python's generators seeded from (seed, rank, epoch, position in the
  epoch), whichever DataLoader worker loads it and whether or not the run was resumed in
  the middle of the epoch. Random data augmentation in a dataset therefore draws the same
  numbers for the same example in an uninterrupted and in a resumed run. The main
  process's own generators are restored after every item (``num_workers=0``).
* :func:`deterministic_algorithms` -- ``torch.use_deterministic_algorithms`` for the
  duration of a run (restored afterwards).

The console's compiled kernels are deterministic by construction (every row and its sums
run serially, see :mod:`automix.dsp.train_kernels`); torch's CPU reductions are for a fixed
thread count, which :func:`automix.dsp.kernels.pin_threads` fixes for the run.
"""
from __future__ import annotations

import hashlib
import random
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


# ----------------------------------------------------------------------------- generators
def rng_state() -> dict[str, Any]:
    """Every global generator's state in checkpoint-safe types (tensors, ints, tuples)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), int(n["pos"]), int(n["has_gauss"]),
                         float(n["cached_gaussian"])))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextmanager
def seeded_generators(seed: int) -> Iterator[None]:
    """Seed torch's, numpy's and Python's global generators with ``seed``; restore them on exit."""
    saved = rng_state()
    torch.manual_seed(seed)
    np.random.seed(seed % (1 << 32))
    random.seed(seed)
    try:
        yield
    finally:
        set_rng_state(saved)


def item_seed(seed: int, rank: int, epoch: int, position: int) -> int:
    """A 63-bit seed for the example at ``position`` of ``epoch`` on ``rank`` (stable across runs)."""
    digest = hashlib.blake2b(f"{seed}:{rank}:{epoch}:{position}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


# ----------------------------------------------------------------------------- data
class KeyedSampler(Sampler):
    """Yields ``(item_seed, index)`` for every index of ``sampler`` (an ExcerptSampler).

    The position counts from the start of the epoch, skipped examples included, so the
    example a resumed epoch starts with gets the seed it had in the uninterrupted run.
    """

    def __init__(self, sampler, seed: int, rank: int):
        self.sampler, self.seed, self.rank = sampler, int(seed), int(rank)

    def __iter__(self):
        epoch, skip = int(getattr(self.sampler, "epoch", 0)), int(getattr(self.sampler, "skip", 0))
        for position, index in enumerate(self.sampler, start=skip):
            yield item_seed(self.seed, self.rank, epoch, position), index

    def __len__(self) -> int:
        return len(self.sampler)


class SeededItems(Dataset):
    """``dataset[index]`` loaded under :func:`seeded_generators` of the key from :class:`KeyedSampler`."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, keyed):
        seed, index = keyed
        with seeded_generators(seed):
            return self.dataset[index]


# ----------------------------------------------------------------------------- algorithms
@contextmanager
def deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """``torch.use_deterministic_algorithms(enabled)`` (warnings only) inside; the old setting after.

    On CUDA this also turns cuDNN's autotuner off; cuBLAS then needs
    ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` in the environment for reproducible matrix products.
    """
    old = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
           torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    if enabled:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(old[0], warn_only=old[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = old[2], old[3]
