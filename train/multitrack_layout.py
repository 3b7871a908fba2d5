"""Writing multitracks in the generic dataset layout ``ROOT/<song>/<stem>.flac + mix.flac``.

Shared by the data builders (``build_midi_multitracks.py``, ``build_lmms_multitracks.py``).
A song folder is written into a hidden temporary folder first and renamed into place only
when complete, so an interrupted build never leaves a half-written song that a resumed build
would mistake for a finished one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import soundfile as sf

MIX_NAME = "mix"
META_NAME = "meta.json"
SILENCE_DBFS = -60.0
"""A stem whose sample peak stays below this level (dBFS) counts as silent and is dropped."""
HEADROOM_DBFS = -1.0
"""Stems and mix are scaled by ONE common factor so the mix sample peak sits at or below this."""


def peak_dbfs(samples: np.ndarray) -> float:
    """Sample peak of ``samples`` (any shape) in dBFS; ``-inf`` for digital silence."""
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    return 20.0 * np.log10(peak) if peak > 0.0 else float("-inf")


def safe_name(text: str) -> str:
    """File-system and dataset friendly lower-case name: letters, digits and ``_`` only."""
    name = re.sub(r"[^0-9a-zA-Z]+", "_", text).strip("_").lower()
    return name or "untitled"


def unique_names(names: Iterable[str]) -> list[str]:
    """Make names unique: a name used once stays as is, repeated names get ``_1``, ``_2`` ...

    The order of ``names`` is kept, e.g. ``[guitar, bass, guitar] -> [guitar_1, bass, guitar_2]``.
    ``mix`` is reserved for the mixture and is renamed ``mix_stem``.
    """
    names = [("mix_stem" if n == MIX_NAME else n) for n in names]
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    seen: dict[str, int] = {}
    out = []
    for n in names:
        if counts[n] == 1:
            out.append(n)
        else:
            seen[n] = seen.get(n, 0) + 1
            out.append(f"{n}_{seen[n]}")
    return out


def read_name_list(values: Iterable[str] | None) -> set[str]:
    """Song names from ``values``: each is a name, a comma-separated list, or a text file.

    A text file holds one name per line; ``#`` starts a comment.
    """
    names: set[str] = set()
    for value in values or ():
        path = Path(value)
        if path.is_file():
            for line in path.read_text().splitlines():
                line = line.split("#", 1)[0].strip()
                if line:
                    names.add(line)
        else:
            names.update(v.strip() for v in value.split(",") if v.strip())
    return names


def is_song_done(root: Path, song: str) -> bool:
    """True when ``root/song`` was completely written by an earlier run (has its mix)."""
    folder = root / song
    return any(folder.glob(f"{MIX_NAME}.*")) and (folder / META_NAME).is_file()


@dataclass
class SongResult:
    """What a builder wrote (or skipped) for one song."""

    song: str
    status: str  # "built", "skipped-existing", "skipped-<reason>", "failed"
    stems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    message: str = ""


def align_stems(stems: Mapping[str, np.ndarray], max_samples: int | None = None) -> dict[str, np.ndarray]:
    """Zero-pad stems (channels, samples) at the end to a common length, optionally cut it.

    Mono stems stay mono; the caller decides on the channel layout.
    """
    if not stems:
        return {}
    length = max(s.shape[-1] for s in stems.values())
    if max_samples is not None:
        length = min(length, max_samples)
    out = {}
    for name, s in stems.items():
        s = s[..., :length]
        if s.shape[-1] < length:
            s = np.pad(s, [(0, 0)] * (s.ndim - 1) + [(0, length - s.shape[-1])])
        out[name] = s
    return out


def trim_trailing_silence(stems: dict[str, np.ndarray], sample_rate: int, floor_db: float = -60.0,
                          keep_s: float = 0.25) -> dict[str, np.ndarray]:
    """Cut every stem where the sum of the stems has decayed below ``floor_db`` (relative to its
    peak) for good, keeping ``keep_s`` seconds more; all stems keep the same length.

    Synth renderers run on after the last note until voices and reverb have died away, which
    leaves long near-silent tails.
    """
    if not stems:
        return stems
    total = np.sum([np.abs(s).reshape(-1, s.shape[-1]).max(axis=0) for s in stems.values()], axis=0)
    peak = float(total.max()) if total.size else 0.0
    if peak <= 0.0:
        return stems
    loud = np.nonzero(total > peak * 10.0 ** (floor_db / 20.0))[0]
    end = min(total.size, int(loud[-1]) + 1 + int(round(keep_s * sample_rate)))
    return {n: s[..., :end] for n, s in stems.items()}


def fade_out(stems: dict[str, np.ndarray], sample_rate: int, fade_s: float) -> None:
    """Apply the same linear fade over the last ``fade_s`` seconds to every stem (in place)."""
    n = int(round(fade_s * sample_rate))
    for s in stems.values():
        m = min(n, s.shape[-1])
        if m > 0:
            s[..., -m:] *= np.linspace(1.0, 0.0, m, dtype=s.dtype)


def write_song(
    root: Path,
    song: str,
    stems: Mapping[str, np.ndarray],
    sample_rate: int,
    meta: dict,
    *,
    subtype: str = "PCM_24",
    silence_dbfs: float = SILENCE_DBFS,
    min_stems: int = 2,
) -> SongResult:
    """Write one song folder: non-silent stems, ``mix.flac`` = their sum, and ``meta.json``.

    Parameters
    ----------
    root : dataset root; the song goes to ``root/song/``.
    stems : name -> float array (channels, samples), equal lengths (see :func:`align_stems`).
    sample_rate : Hz.
    meta : JSON-serialisable facts about the source (written to ``meta.json`` with the stem list,
        the common gain applied in dB and the dropped silent stems).
    subtype : soundfile subtype of the FLAC files (``PCM_16`` or ``PCM_24``).
    silence_dbfs : stems whose sample peak is below this (dBFS) are dropped.
    min_stems : a song with fewer non-silent stems is not written (status ``skipped-too-few-stems``).

    The stems and the mix are scaled by one common gain so that the mix peaks at
    ``HEADROOM_DBFS``; the balance between stems is untouched and the written mix equals the sum
    of the written stems up to quantisation. The folder appears atomically (rename of a
    temporary folder).
    """
    kept = {n: np.asarray(s, dtype=np.float64) for n, s in stems.items() if peak_dbfs(s) >= silence_dbfs}
    dropped = sorted(set(stems) - set(kept))
    if len(kept) < min_stems:
        return SongResult(song, "skipped-too-few-stems", sorted(kept), 0.0,
                          f"only {len(kept)} non-silent stem(s), dropped {dropped}")
    mix = np.sum(list(kept.values()), axis=0)
    mix_peak = peak_dbfs(mix)
    gain_db = HEADROOM_DBFS - mix_peak
    gain = 10.0 ** (gain_db / 20.0)
    # Stems alone may peak above the mix (phase cancellation); keep every file below full scale.
    stem_peak = max(peak_dbfs(s) for s in kept.values()) + gain_db
    if stem_peak > HEADROOM_DBFS:
        gain_db -= stem_peak - HEADROOM_DBFS
        gain = 10.0 ** (gain_db / 20.0)

    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp_{song}_{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        total = None
        for name, s in kept.items():
            data = (s * gain).T.astype(np.float32)
            sf.write(tmp / f"{name}.flac", data, sample_rate, subtype=subtype, format="FLAC")
            # Sum what was actually stored so that mix == sum(stems) up to the mix's own rounding.
            stored, _ = sf.read(tmp / f"{name}.flac", dtype="float64", always_2d=True)
            total = stored if total is None else total + stored
        sf.write(tmp / f"{MIX_NAME}.flac", np.clip(total, -1.0, 1.0).astype(np.float32), sample_rate,
                 subtype=subtype, format="FLAC")
        seconds = total.shape[0] / sample_rate
        info = dict(meta)
        info.update(
            song=song,
            sample_rate=sample_rate,
            seconds=round(seconds, 3),
            stems=sorted(kept),
            dropped_silent_stems=dropped,
            common_gain_db=round(gain_db, 3),
            mix="sum of the stems",
        )
        (tmp / META_NAME).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        final = root / song
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return SongResult(song, "built", sorted(kept), seconds)


def summarize(results: list[SongResult]) -> str:
    """One line per status with counts, plus totals of stems and hours of audio built."""
    by_status: dict[str, int] = {}
    for r in results:
        by_status[r.status] = by_status.get(r.status, 0) + 1
    built = [r for r in results if r.status == "built"]
    hours = sum(r.seconds for r in built) / 3600.0
    stems = sum(len(r.stems) for r in built)
    parts = ", ".join(f"{k}: {v}" for k, v in sorted(by_status.items()))
    return f"{parts} | built {len(built)} songs, {stems} stems, {hours:.2f} h of mix audio"
