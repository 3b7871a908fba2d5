"""The refinement studio: a local web page to hear, A/B/C at equal loudness, refine and export a mix.

``automix studio SONG_DIR`` loads the stems, runs the model once and serves one page for that
song (127.0.0.1 by default). Modules, one job each:

* :mod:`automix.studio.preview` -- renders the preview region, re-processing only the stems
  whose settings changed, and encodes it as WAV;
* :mod:`automix.studio.session` -- the song's state: suggestion, edit, versions, levels, export;
* :mod:`automix.studio.paths` -- validation of the names the page sends;
* :mod:`automix.studio.app` -- the FastAPI routes; :mod:`automix.studio.server` -- uvicorn;
* ``static/`` -- the page (plain HTML, JavaScript and CSS; Web Audio for playback).
"""
from __future__ import annotations

__all__ = ["StudioSession"]


def __getattr__(name: str):
    if name == "StudioSession":
        from automix.studio.session import StudioSession

        return StudioSession
    raise AttributeError(name)
