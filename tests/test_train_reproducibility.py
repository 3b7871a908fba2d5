"""Random generators in checkpoints, and example loading seeded by the example's place in the epoch."""
from __future__ import annotations

import io
import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from train.reproducibility import KeyedSampler, SeededItems, item_seed, rng_state, set_rng_state


def draws() -> tuple:
    return float(torch.rand(())), float(np.random.random()), random.random(), float(np.random.normal())


def test_rng_state_survives_a_weights_only_checkpoint_and_restores_every_generator():
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.normal()  # numpy caches the second gaussian of a pair: that is state too
    buffer = io.BytesIO()
    torch.save({"rng": rng_state()}, buffer)
    expected = draws()
    buffer.seek(0)
    set_rng_state(torch.load(buffer, weights_only=True)["rng"])
    assert draws() == expected


class Augmented(Dataset):
    """An 'augmentation' that draws from all three global generators."""

    def __len__(self):
        return 100

    def __getitem__(self, index):
        return torch.tensor([float(index), float(torch.rand(())), np.random.random(), random.random()])


class Positions:
    """The interface of automix.data.ExcerptSampler that KeyedSampler reads."""

    def __init__(self, n: int):
        self.n, self.epoch, self.skip = n, 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def __iter__(self):
        rng = np.random.default_rng(self.epoch)
        return iter(rng.permutation(self.n).tolist()[self.skip:])

    def __len__(self):
        return self.n


def load_epoch(epoch: int, skip: int, workers: int) -> torch.Tensor:
    sampler = Positions(12)
    sampler.set_epoch(epoch, skip)
    loader = DataLoader(SeededItems(Augmented()), sampler=KeyedSampler(sampler, seed=5, rank=0), batch_size=3,
                        num_workers=workers, generator=torch.Generator().manual_seed(0))
    return torch.cat(list(loader))


def test_an_example_draws_the_same_numbers_in_a_resumed_epoch_and_in_any_worker():
    whole = load_epoch(1, 0, workers=0)
    resumed = load_epoch(1, 6, workers=2)
    assert torch.equal(resumed, whole[6:])  # same examples, same random draws
    assert torch.equal(load_epoch(1, 0, workers=2), whole)
    other_epoch = load_epoch(2, 0, workers=0)
    assert not torch.equal(other_epoch[:, 1:], whole[:, 1:])
    assert len(set(whole[:, 1].tolist())) == len(whole)  # every example draws its own numbers


def test_loading_in_the_main_process_leaves_its_generators_alone():
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    load_epoch(0, 0, workers=0)
    assert torch.equal(torch.rand(3), expected)


def test_item_seeds_differ_by_rank_epoch_and_position():
    seeds = {item_seed(0, r, e, p) for r in range(2) for e in range(3) for p in range(50)}
    assert len(seeds) == 300 and all(0 <= s < 2 ** 63 for s in seeds)
