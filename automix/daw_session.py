"""DAW session export: a REAPER project (``.RPP``) with one track per stem.

``automix suggest --session song.RPP`` writes the stems as they are, each on its own track
with the suggested fader (dB) and pan already set, and the full settings table (EQ bands,
compressor, saturation in musician units) in the project notes, so a person opens the
session and refines the mix by hand. ``automix mix --stems-out DIR --session song.RPP``
instead places the *processed* stems at 0 dB, centre: the session then plays back exactly
the rendered mix, one fader per stem.

REAPER projects are plain text: nested ``<CHUNK ... >`` blocks of ``KEY value ...`` lines.
What is written here:

* ``VOLPAN vol pan -1 -1 1`` per track: ``vol`` is the linear fader gain
  (``10 ** (gain_db / 20)``), ``pan`` is -1 (left) .. 1 (right), the rest the project
  defaults (pan law, width);
* one item per track starting at 0 s, ``LENGTH`` the stem's own length (seconds), whose
  ``<SOURCE WAVE|FLAC|VORBIS|MP3`` refers to the stem by absolute path (nothing is copied);
* project ``<NOTES`` with the settings table, the pan law used by automix (constant power,
  0 dB at centre, +3 dB at the hard side) and what could not be carried by the session.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from automix.errors import OutputExistsError, SettingsError

#: REAPER source type per file extension (lower case, with the dot).
SOURCE_TYPES = {".wav": "WAVE", ".wave": "WAVE", ".aif": "WAVE", ".aiff": "WAVE", ".flac": "FLAC",
                ".ogg": "VORBIS", ".oga": "VORBIS", ".mp3": "MP3"}

#: Quietest fader written (dB); REAPER's volume is linear, so -inf is written as 0.
_SILENT_DB = -150.0


@dataclass
class SessionTrack:
    """One track of the session.

    Attributes
    ----------
    name : str
        Track name (the stem's file name without extension is a good choice).
    file : Path
        Audio file of the track's item (referred to by absolute path).
    length_s : float
        Item length, seconds.
    gain_db : float
        Fader, dB.
    pan : float
        -1 (left) .. 1 (right).
    """

    name: str
    file: Path
    length_s: float
    gain_db: float = 0.0
    pan: float = 0.0


def _quote(text: str) -> str:
    """A REAPER string token: double quotes unless the text contains them."""
    text = text.replace("\n", " ").replace("\r", " ")
    if '"' not in text:
        return f'"{text}"'
    if "'" not in text:
        return f"'{text}'"
    return "`" + text.replace("`", "'") + "`"


def _check_track(track: SessionTrack) -> None:
    if not (math.isfinite(track.gain_db) and math.isfinite(track.pan) and math.isfinite(track.length_s)):
        raise SettingsError(f"track {track.name!r}: fader, pan and length must be numbers")
    if not -1.0 <= track.pan <= 1.0:
        raise SettingsError(f"track {track.name!r}: pan {track.pan:g} is outside -1 (left) .. 1 (right)")
    if track.length_s <= 0:
        raise SettingsError(f"track {track.name!r}: length must be positive, not {track.length_s:g} s")
    if Path(track.file).suffix.lower() not in SOURCE_TYPES:
        raise SettingsError(f"track {track.name!r}: {Path(track.file).name} is not a format a REAPER session "
                            f"can hold ({', '.join(sorted(set(SOURCE_TYPES)))})")


def reaper_project_text(tracks: Sequence[SessionTrack], sample_rate: int, notes: str = "") -> str:
    """The ``.RPP`` text of a project holding ``tracks`` at ``sample_rate`` (Hz)."""
    if sample_rate <= 0:
        raise SettingsError(f"sample rate must be positive, not {sample_rate}")
    lines = ['<REAPER_PROJECT 0.1 "6.0/automix" 0',
             f"  SAMPLERATE {int(sample_rate)} 0 0",
             "  PANLAW 1",
             "  <NOTES 0 2"]
    lines += [f"    |{line}" for line in notes.splitlines()] or ["    |"]
    lines.append("  >")
    for track in tracks:
        _check_track(track)
        vol = 10.0 ** (track.gain_db / 20.0) if track.gain_db > _SILENT_DB else 0.0
        source = SOURCE_TYPES[Path(track.file).suffix.lower()]
        lines += [
            "  <TRACK",
            f"    NAME {_quote(track.name)}",
            f"    VOLPAN {vol:.10g} {track.pan:.6f} -1 -1 1",
            "    MUTESOLO 0 0 0",
            "    NCHAN 2",
            "    <ITEM",
            "      POSITION 0",
            f"      LENGTH {track.length_s:.6f}",
            f"      NAME {_quote(Path(track.file).name)}",
            f"      <SOURCE {source}",
            f"        FILE {_quote(str(Path(track.file).resolve()))}",
            "      >",
            "    >",
            "  >",
        ]
    lines.append(">")
    return "\n".join(lines) + "\n"


def write_reaper_session(path: str | os.PathLike, tracks: Sequence[SessionTrack], sample_rate: int, *,
                         notes: str = "", overwrite: bool = False,
                         inputs: Sequence[str | os.PathLike] = ()) -> Path:
    """Write a REAPER project atomically.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is False, or it is one of ``inputs``.
    SettingsError
        A track cannot be written (pan out of range, unsupported format...), or ``path``
        does not end in ``.rpp``.
    """
    path = Path(path)
    if path.suffix.lower() != ".rpp":
        raise SettingsError(f"{path.name}: a REAPER session file must end in .RPP")
    resolved = path.resolve()
    if any(resolved == Path(p).resolve() for p in inputs):
        raise OutputExistsError(f"{path} is an input; choose another output name")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} already exists; pass --overwrite to replace it")
    text = reaper_project_text(tracks, sample_rate, notes)
    from automix.outputs import write_text_atomic

    return write_text_atomic(path, text)


PAN_LAW_NOTE = ("automix pans mono stems with a constant-power law: 0 dB at centre, +3 dB on the hard side "
                "(stereo stems: balance, near side 0 dB). Set REAPER's pan law to match if pans matter.")


def session_notes(table: str, processed: bool) -> str:
    """Project notes: what the session holds, the settings table and the pan law."""
    head = ("automix session: processed stems (EQ, compression, saturation, fader and pan rendered in); "
            "every track at 0 dB, centre - the session plays the automix mix."
            if processed else
            "automix session: your stems with the suggested faders and pans. Dial in the EQ, compressor and "
            "saturation below on each track (REAPER's ReaEQ/ReaComp), or render them with 'automix render'.")
    return "\n".join([head, "", table, "", PAN_LAW_NOTE])
