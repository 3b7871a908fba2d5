"""Reading shipped or trained weights safely (``torch.load(weights_only=True)``, or without torch).

One place turns a missing or unreadable checkpoint into a :class:`ModelError` a person
understands; each model's loader then checks its own format on the returned dictionary.

:func:`read_weight_arrays` reads the same files without importing torch (mastering's start-up):
a checkpoint written by ``torch.save`` is a zip archive holding a pickle (``data.pkl``) whose
tensors point at raw little-endian storages (``data/<key>``). A restricted unpickler admits only
plain containers and tensor rebuilds -- any other global is refused, as torch's weights-only
loader refuses it -- and each tensor comes back as a numpy array (a copy of its strided view).
"""
from __future__ import annotations

import collections
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from automix.errors import ModelError

_STORAGE_DTYPES = {"FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2", "LongStorage": "i8",
                   "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1", "ByteStorage": "u1",
                   "BoolStorage": "?"}
"""Storage types of ``torch.save`` archives and their numpy dtypes (byte order from the archive)."""


class _StorageType:
    def __init__(self, name: str):
        self.name = name


def _rebuild_tensor(storage: np.ndarray, offset: int, size, stride, requires_grad=False, hooks=None,
                    metadata=None) -> np.ndarray:
    if len(size) == 0:
        return storage[offset].copy()
    item = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size), strides=tuple(s * item for s in stride))
    return np.array(view)


def _rebuild_parameter(data, requires_grad=False, hooks=None):
    return data


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler of ``torch.save``'s ``data.pkl`` that rebuilds tensors as numpy arrays and refuses code."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, byteorder: str):
        super().__init__(file)
        self.archive, self.prefix, self.byteorder = archive, prefix, byteorder
        self.storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("torch._utils", "_rebuild_parameter"):
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"weights only: global {module}.{name} is not allowed")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError(f"weights only: unsupported storage {pid!r}")
        _, storage_type, key, _location, numel = pid
        if key not in self.storages:
            dtype = np.dtype(_STORAGE_DTYPES[storage_type.name]).newbyteorder("<" if self.byteorder == "little" else ">")
            raw = self.archive.read(f"{self.prefix}/data/{key}")
            self.storages[key] = np.frombuffer(raw, dtype=dtype, count=int(numel)).astype(dtype.newbyteorder("="))
        return self.storages[key]


def read_weight_arrays(path: str | Path, what: str, hint: str = "") -> dict[str, Any]:
    """:func:`read_weights` without torch: the checkpoint dictionary with every tensor as a numpy array.

    Raises :class:`ModelError` with the same messages as :func:`read_weights` (missing, corrupt or
    truncated, holding Python objects besides weights, not a dictionary). A checkpoint in torch's
    legacy (non-zip) format is handed to :func:`read_weights` (torch is imported then).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"no {what} weights at {path}" + (f"; {hint}" if hint else ""))
    if not zipfile.is_zipfile(path):
        payload = read_weights(path, what, hint)
        return _to_arrays(payload)
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            if len(pickles) != 1:
                raise ValueError("no data.pkl in the archive")
            prefix = pickles[0][: -len("/data.pkl")] if "/" in pickles[0] else ""
            names = set(archive.namelist())
            order = f"{prefix}/byteorder"
            byteorder = archive.read(order).decode().strip() if order in names else "little"
            with archive.open(pickles[0]) as handle:
                payload = _ArrayUnpickler(handle, archive, prefix, byteorder).load()
    except Exception as exc:  # refused objects, corrupt archive, truncated download...
        raise _unreadable(path, what, exc) from None
    if not isinstance(payload, dict):
        raise ModelError(f"{path} is not an automix {what} checkpoint")
    return payload


def _unreadable(path: Path, what: str, exc: Exception) -> ModelError:
    """The one-line error for a checkpoint that could not be read (either reader)."""
    if isinstance(exc, pickle.UnpicklingError):
        if "weights only" in str(exc).lower() or "weights_only" in str(exc):
            return ModelError(
                f"cannot read {what} weights {path}: refused, it holds Python objects besides weights, which "
                f"could run code when loaded (automix loads plain weights only; use a {what} checkpoint "
                "written by automix)")
        return ModelError(f"cannot read {what} weights {path}: the file is corrupt or truncated "
                          f"({_first_line(exc)})")
    return ModelError(f"cannot read {what} weights {path}: the file is corrupt, truncated or not a PyTorch "
                      f"checkpoint ({_first_line(exc)})")


def _to_arrays(value: Any) -> Any:
    """Tensors (at any depth of dicts, lists and tuples) as numpy arrays."""
    if isinstance(value, dict):
        return type(value)((k, _to_arrays(v)) for k, v in value.items()) if isinstance(value, collections.OrderedDict) \
            else {k: _to_arrays(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_arrays(v) for v in value)
    if hasattr(value, "detach") and hasattr(value, "numpy"):
        return value.detach().cpu().numpy()
    return value


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
    except Exception as exc:  # refused objects, corrupt file, truncated download, not a torch file...
        raise _unreadable(path, what, exc) from None
    if not isinstance(payload, dict):
        raise ModelError(f"{path} is not an automix {what} checkpoint")
    return payload


def _first_line(exc: Exception) -> str:
    """The first sentence of ``exc``'s message, on one line (torch's own messages run to many lines)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    first = text.split(". ")[0].rstrip(".")
    return first[:160]
