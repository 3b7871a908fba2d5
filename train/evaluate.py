"""Validation during training: loss and mix metrics of the model and of both baselines.

Each validation excerpt is perturbed with the same seeded draw every epoch, so epochs are
comparable. Metrics (see :mod:`automix.evaluation`): multi-resolution log-spectral
distance to the target mix (dB) and per-stem balance error (LU), for the model, the plain
sum of the perturbed stems and the equal-loudness baseline. Under DDP every rank
validates its share and the sums are all-reduced.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
import torch.distributed as dist
from torch import nn

from automix.evaluation import balance_error_lu, equal_loudness_baseline, log_spectral_distance_db
from automix.perturb import Perturbation
from train.step import forward_batch, step_generator


@torch.no_grad()
def validate(model: nn.Module, batches: Iterable[dict[str, torch.Tensor]], *, loss_fn: nn.Module,
             render: Callable, perturbation: Perturbation | None, sample_rate: int, device: torch.device,
             target_is_sum: bool, seed: int = 0, rank: int = 0,
             amp_dtype: torch.dtype | None = None) -> dict[str, float]:
    """Mean loss terms and metrics over ``batches``.

    Returns
    -------
    dict
        ``loss``, ``loss.<term>``, ``lsd_db.<system>`` and ``balance_lu.<system>`` for
        the systems ``model``, ``sum`` and ``equal_loudness`` (means over excerpts).
    """
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    count = 0.0
    for index, batch in enumerate(batches):
        batch = {k: v.to(device) for k, v in batch.items()}
        generator = step_generator(seed + 7919, index, rank)
        pred, inputs = forward_batch(model, batch, sample_rate=sample_rate, render=render,
                                     perturbation=perturbation, generator=generator,
                                     target_is_sum=target_is_sum, amp_dtype=amp_dtype)
        loss, parts = loss_fn(pred)
        n = float(inputs.shape[0])
        values = {"loss": float(loss), **{f"loss.{k}": v for k, v in parts.items()}}
        reference_stems = batch.get("target_stems", batch["stems"])
        systems = {"model": pred.stems, "sum": inputs,
                   "equal_loudness": equal_loudness_baseline(inputs, sample_rate, pred.mask)}
        for name, stems in systems.items():
            mix = stems.sum(1)
            values[f"lsd_db.{name}"] = float(log_spectral_distance_db(mix, pred.target_mix, sample_rate).mean())
            values[f"balance_lu.{name}"] = float(balance_error_lu(
                stems, mix, reference_stems, reference_stems.sum(1), sample_rate, pred.mask).mean())
        for key, value in values.items():
            sums[key] = sums.get(key, 0.0) + value * n
        count += n
    keys = sorted(sums)
    totals = torch.tensor([sums[k] for k in keys] + [count], dtype=torch.float64)
    if dist.is_available() and dist.is_initialized():
        totals = totals.to(device)
        dist.all_reduce(totals)
        totals = totals.cpu()
    model.train(was_training)
    if float(totals[-1]) == 0:
        return {}
    return {k: float(v) / float(totals[-1]) for k, v in zip(keys, totals[:-1].tolist())}
