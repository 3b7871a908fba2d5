"""Saving and loading mix-model weights (``models/mixer*.pt``).

A checkpoint is a plain dictionary (loadable with ``torch.load(weights_only=True)``)::

    {"format": "automix-mixer", "format_version": 1,
     "param_table_version": PARAM_TABLE_VERSION, "strip_names": [...],
     "roles": [...], "model_config": {...}, "state_dict": {...}, "info": {...}}

An ensemble (:class:`~automix.model.mixnet.MixEnsemble`) also stores ``"members": [state_dict,
...]``; its ``"state_dict"`` is the first member's, so code that reads one model (resuming
training) gets a complete model from it. An ensemble whose members give some parameters
only (:func:`~automix.model.mixnet.strip_on_fit`) stores ``"member_outputs": [[name, ...] or
None, ...]``, one list per member, and where a member adds to what the others set
(``strip_on_fit(add=...)``) ``"member_residual": [[name, ...], ...]``.

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
        if model.member_outputs is not None:
            payload["member_outputs"] = [None if names is None else list(names) for names in model.member_outputs]
        if model.member_residual is not None:
            payload["member_residual"] = [list(names or []) for names in model.member_residual]
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
        model = MixEnsemble(members, payload.get("member_outputs"), payload.get("member_residual")) if "members" in payload else members[0]
    except (TypeError, KeyError, RuntimeError, ValueError) as exc:
        raise ModelError(f"{path} does not match this automix's mix-model architecture: {exc}") from None
    model.eval()
    return model, dict(payload.get("info", {}))


def load_weights(model, payload: dict[str, Any]) -> None:
    """Load a checkpoint ``payload``'s weights into ``model`` (a :class:`MixModel` or :class:`MixEnsemble`).

    An ensemble takes one state per member from ``"members"`` (same count); a single model
    takes ``"state_dict"`` (an ensemble checkpoint's first member).
    """
    model = getattr(model, "module", model)
    if isinstance(model, MixEnsemble):
        states = payload.get("members")
        if not isinstance(states, list) or len(states) != len(model.members):
            have = len(states) if isinstance(states, list) else 1
            raise ModelError(f"the checkpoint holds {have} model(s) but this ensemble has {len(model.members)} "
                             "members; resume from a checkpoint of the same kind of model")
        for member, state in zip(model.members, states):
            member.load_state_dict(state)
    else:
        model.load_state_dict(payload["state_dict"])
