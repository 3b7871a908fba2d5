"""One forward pass of the training task: perturb the stems, predict settings, render, compare."""
from __future__ import annotations

from contextlib import nullcontext
from typing import Callable

import torch
from torch import nn

from automix.losses import MixPrediction, width_from_effects
from automix.perturb import Perturbation


def step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """The perturbation generator of one step on one rank (reproducible after a resume)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 1009 + rank)


def forward_batch(model: nn.Module, batch: dict[str, torch.Tensor], *, sample_rate: int, render: Callable,
                  perturbation: Perturbation | None, generator: torch.Generator, target_is_sum: bool,
                  amp_dtype: torch.dtype | None = None, reference_probability: float = 0.0,
                  scramble: Perturbation | None = None, scramble_probability: float = 0.0
                  ) -> tuple[MixPrediction, torch.Tensor]:
    """Run the un-mixing task on a collated batch (already on the model's device).

    The stems are perturbed (no gradient), the model predicts strip settings from the
    perturbed stems (under autocast when ``amp_dtype`` is given), and the console renders
    them in float32. With probability ``reference_probability`` (drawn from ``generator``)
    the batch's ``reference`` mixes are given to the model too.

    Raw-like batches (with ``target_stems``, the original stems as they sit in the real mix)
    can also train the old un-mixing task: with probability ``scramble_probability`` (drawn
    from ``generator``, one draw per batch) the model's input is the original stems knocked
    about by ``scramble`` instead of the raw-like stems perturbed by ``perturbation``. One
    model then serves stems that arrive normalised (nothing to trust in their levels and
    placement) and stems that arrive roughly balanced (their levels carry the mix).

    Returns
    -------
    prediction : MixPrediction
        ``target_stems`` are the batch's ``target_stems`` when it has them (raw-like data:
        the original stems as they sit in the real mix), else the original stems when the
        target is their sum, else None.
    perturbed : Tensor (B, S, 2, T)
        The model's input.
    """
    stems, mask, roles = batch["stems"], batch["mask"], batch["roles"]
    if scramble is not None and scramble_probability > 0 and "target_stems" in batch:
        if float(torch.rand((), generator=generator)) < scramble_probability:
            stems, perturbation = batch["target_stems"], scramble
    if perturbation is not None:
        # no gradient flows through the perturbation: on the CPU the console's compiled strip
        # (exact IIR EQ) renders it in a fraction of the training mode's time
        inputs, _ = perturbation.apply(stems, sample_rate, generator, stem_mask=mask,
                                       render=None if stems.device.type == "cpu" else render, mode="exact")
    else:
        inputs = stems
    reference = None
    if reference_probability > 0 and "reference" in batch:
        if float(torch.rand((), generator=generator)) < reference_probability:
            reference = batch["reference"]
    device_type = stems.device.type
    autocast = (torch.autocast(device_type=device_type, dtype=amp_dtype) if amp_dtype is not None
                else nullcontext())
    with autocast:
        strip = model(inputs, sample_rate, roles, mask) if reference is None else \
            model(inputs, sample_rate, roles, mask, reference=reference)
    strip = strip.float()
    result = render(inputs, strip, sample_rate, stem_mask=mask)
    target_stems = batch.get("target_stems", stems if target_is_sum else None)
    prediction = MixPrediction(mix=result.mix, stems=result.stems, target_mix=batch["target_mix"],
                               target_stems=target_stems, mask=mask, strip=strip, sample_rate=sample_rate,
                               width_from_effects=None if target_stems is None else
                               width_from_effects(inputs, target_stems, mask))
    return prediction, inputs
