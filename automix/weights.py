"""Reading shipped or trained weights safely (``torch.load(weights_only=True)``).

One place turns a missing or unreadable checkpoint into a :class:`ModelError` a person
understands; each model's loader then checks its own format on the returned dictionary.
"""
from __future__ import annotations

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
    except Exception as exc:  # corrupt file, pickle with code, truncated download...
        raise ModelError(f"cannot read {what} weights {path}: {exc.__class__.__name__}: {exc}") from None
    if not isinstance(payload, dict):
        raise ModelError(f"{path} is not an automix {what} checkpoint")
    return payload
