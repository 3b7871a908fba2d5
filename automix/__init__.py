"""automix: machine-learning assisted auto-mixer and mastering assistant.

Signal flow (one way): audio I/O (:mod:`automix.audio`) -> analysis
(:mod:`automix.loudness`, :mod:`automix.model.features`) -> model
(:mod:`automix.model`) -> console DSP (:mod:`automix.dsp`) -> mastering
(:mod:`automix.mastering`) -> export (:mod:`automix.audio`).

The Python API mirrors the command line::

    import automix
    automix.mix("song/", "mix.wav", stems_out="stems/", settings_out="settings.json")
    automix.master("mix.wav", "master.wav", target="spotify")
    automix.analyze(samples, 44100)

Heavy modules (torch, numba kernels) load only when one of these is first used.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public functions, loaded lazily: name -> module that defines it.
_API = {
    "mix": "automix.mixing",
    "suggest": "automix.mixing",
    "render": "automix.mixing",
    "load_stems": "automix.mixing",
    "master": "automix.mastering",
    "master_album": "automix.mastering.album",
    "analyze": "automix.loudness",
    "load_audio": "automix.audio",
    "write_audio": "automix.audio",
    "run_demo": "automix.demo",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'automix' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
