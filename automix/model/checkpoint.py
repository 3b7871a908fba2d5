"""Saving and loading mix-model weights (``models/mixer*.pt``).

A checkpoint is a plain dictionary (loadable with ``torch.load(weights_only=True)``)::

    {"format": "automix-mixer", "format_version": 1,
     "param_table_version": PARAM_TABLE_VERSION, "strip_names": [...],
     "roles": [...], "model_config": {...}, "state_dict": {...}, "info": {...}}

An ensemble (:class:`~automix.model.mixnet.MixEnsemble`) also stores ``"members": [state_dict,
...]``; its ``"state_dict"`` is the first member's, so code that reads one model (resuming
training) gets a complete model from it.

``info`` is free-form (training data, steps, sample rate, Hydra config, results) and must
hold only plain types (dict, list, str, int, float, bool, None).
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from automix.dsp.params import PARAM_TABLE_VERSION, STRIP
from automix.errors import ModelError
from automix.weights import read_weights
from automix.model.mixnet import MixEnsemble, MixModel, MixModelConfig
from automix.model.roles import ROLES

# format constants and the checks of a checkpoint are torch-free (automix.model.inference reads
# the same files into numpy for `automix mix`)
from automix.model.inference import CHECKPOINT_HINT, DEFAULT_MODEL_PATH, FORMAT, FORMAT_VERSION  # noqa: E402,F401
from automix.model.inference import check_checkpoint  # noqa: E402


def save_checkpoint(path: str | Path, model: MixModel | MixEnsemble, info: dict[str, Any] | None = None) -> Path:
    """Write ``model`` to ``path`` atomically (temporary file + rename).

    Parameters
    ----------
    path : str or Path
        Destination ``.pt`` file (overwritten if it exists: checkpoints are outputs of training).
    model : MixModel or MixEnsemble
    info : dict, optional
        Plain-typed metadata stored next to the weights.
    """
    path = Path(path)
    members = list(model.members) if isinstance(model, MixEnsemble) else [model]
    weights = [{k: v.detach().cpu().clone() for k, v in m.state_dict().items()} for m in members]
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "param_table_version": PARAM_TABLE_VERSION,
        "strip_names": list(STRIP.names),
        "roles": list(ROLES),
        "model_config": asdict(model.config),
        "state_dict": weights[0],
        "info": dict(info or {}),
    }
    if isinstance(model, MixEnsemble):
        payload["members"] = weights
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dictionary at ``path``, validated; raises ModelError with the reason."""
    path = Path(path)
    return check_checkpoint(path, read_weights(path, "mix-model", CHECKPOINT_HINT))


def load_model(path: str | Path | None = None) -> tuple[MixModel | MixEnsemble, dict[str, Any]]:
    """Load a :class:`MixModel` or :class:`MixEnsemble` (in eval mode) and its ``info`` from a checkpoint.

    Parameters
    ----------
    path : str or Path, optional
        Checkpoint; default :data:`DEFAULT_MODEL_PATH`.

    Raises
    ------
    ModelError
        Missing, corrupt or incompatible checkpoint (the message says which).
    """
    path = Path(path) if path is not None else DEFAULT_MODEL_PATH
    payload = read_checkpoint(path)
    try:
        states = payload["members"] if "members" in payload else [payload["state_dict"]]
        if not isinstance(states, list) or not states:
            raise ValueError("its list of ensemble members is empty")
        members = []
        for state in states:
            member = MixModel(MixModelConfig(**payload["model_config"]))
            member.load_state_dict(state)
            members.append(member)
        model = MixEnsemble(members) if "members" in payload else members[0]
    except (TypeError, KeyError, RuntimeError, ValueError) as exc:
        raise ModelError(f"{path} does not match this automix's mix-model architecture: {exc}") from None
    model.eval()
    return model, dict(payload.get("info", {}))
