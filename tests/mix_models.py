"""Small mix-model checkpoints for tests (no shipped weights needed)."""
from __future__ import annotations

from pathlib import Path

import torch

from automix.model.checkpoint import save_checkpoint
from automix.model.mixnet import MixModel, MixModelConfig


def opinionated_model_checkpoint(folder: Path, seed: int) -> Path:
    """A tiny random :class:`MixModel` whose output head is scaled up, so its settings sit far from
    neutral (faders, pans and EQ really vary), saved as a checkpoint in ``folder``."""
    torch.manual_seed(seed)
    model = MixModel(MixModelConfig(d_model=32, n_heads=2, n_layers=1))
    with torch.no_grad():
        model.head[-1].weight.normal_(0, 0.5)
    return save_checkpoint(Path(folder) / "m.pt", model, {"sample_rate": 16000})
