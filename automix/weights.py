"""Reading shipped or trained weights safely (``torch.load(weights_only=True)``).

One place turns a missing or unreadable checkpoint into a :class:`ModelError` a person
understands; each model's loader then checks its own format on the returned dictionary.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from automix.errors import ModelError


def read_weights(path: str | Path, what: str, hint: str = "") -> dict[str, Any]:
    """The checkpoint dictionary stored at ``path`` (tensors and plain Python only).

    Parameters
    ----------
    path : str or Path
        Checkpoint file.
    what : str
        What the weights are for, used in messages (``"mix-model"``, ``"mastering-model"``).
    hint : str
        What to do when the file is missing (appended to the message).

    Raises
    ------
    ModelError
        The file is missing, unreadable (corrupt, truncated, contains code) or not a dictionary.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"no {what} weights at {path}" + (f"; {hint}" if hint else ""))
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower() or "weights_only" in str(exc):
            raise ModelError(
                f"cannot read {what} weights {path}: refused, it holds Python objects besides weights, which "
                f"could run code when loaded (automix loads plain weights only; use a {what} checkpoint "
                "written by automix)") from None
        raise ModelError(f"cannot read {what} weights {path}: the file is corrupt or truncated "
                         f"({_first_line(exc)})") from None
    except Exception as exc:  # corrupt file, truncated download, not a torch file...
        raise ModelError(f"cannot read {what} weights {path}: the file is corrupt, truncated or not a PyTorch "
                         f"checkpoint ({_first_line(exc)})") from None
    if not isinstance(payload, dict):
        raise ModelError(f"{path} is not an automix {what} checkpoint")
    return payload


def _first_line(exc: Exception) -> str:
    """The first sentence of ``exc``'s message, on one line (torch's own messages run to many lines)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    first = text.split(". ")[0].rstrip(".")
    return first[:160]
