"""Training checkpoints: the mix-model checkpoint plus the state needed to resume.

A training checkpoint IS a mix-model checkpoint (:mod:`automix.model.checkpoint`: weights,
architecture, parameter-table version, ``info`` with the resolved training config and
sample rate), so ``automix mix --model runs/X/checkpoints/last.pt`` uses it directly, with
one more key::

    "training": {"step": int, "epoch": int, "batch_in_epoch": int, "best_valid": float,
                 "optimizer": optimizer.state_dict(), "scheduler": ..., "scaler": ...,
                 "world_size": int, "rng": [train.reproducibility.rng_state() of every rank]}

Everything is tensors and plain Python, so ``torch.load(weights_only=True)`` reads it.
Writes are atomic: a killed run leaves the previous checkpoint intact.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from automix.model.checkpoint import read_checkpoint, save_checkpoint


def save_training_checkpoint(path: str | Path, model: torch.nn.Module, info: dict[str, Any],
                             training: dict[str, Any]) -> Path:
    """Write the model checkpoint with the resume state ``training`` to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_checkpoint(tmp, model, info)
        payload = torch.load(tmp, map_location="cpu", weights_only=True)
        payload["training"] = training
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def load_training_checkpoint(path: str | Path) -> dict[str, Any]:
    """The validated checkpoint dictionary at ``path`` (``"training"`` present when resumable)."""
    return read_checkpoint(path)
