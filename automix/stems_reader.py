"""Read a set of stems into one ``(stems, 2, samples)`` array (numpy only, no torch).

The first stage of :func:`automix.mixing.load_stems`, kept free of torch so that
``automix mix`` can read the stems while torch is still loading on another thread
(file reads and the compiled decoders run without the GIL).

Stems at the working rate are decoded straight into one ``float32`` array: no second copy
of the audio (``np.zeros`` hands out untouched pages, so padding costs nothing).
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from automix.errors import AudioError

#: Most stems one mix may have.
MAX_STEMS = 64
#: File extensions treated as stems when a folder is given.
AUDIO_EXTENSIONS = (".wav", ".flac", ".aif", ".aiff", ".ogg", ".oga", ".opus", ".mp3")
#: A stem whose peak is below this level counts as silent (left untouched and reported).
SILENCE_PEAK_DBFS = -90.0
#: Files whose names say they are already a mix are not stems.
_MIX_NAMES = {"mix", "mixture", "master", "full_mix"}


@dataclass
class StemAudio:
    """Stems as read from their files.

    Attributes
    ----------
    files : list of str
        File names (unique), in load order.
    paths : list of Path
    audio : np.ndarray ``[S, 2, T]`` float32
        Stereo audio at ``sample_rate``, aligned at the start and zero-padded to the longest.
    sample_rate : int
        Hz.
    silent : list of bool
        Stems whose peak is below :data:`SILENCE_PEAK_DBFS`.
    lengths : list of int
        Each stem's own length in samples (before padding).
    notes : list of str
        What was adjusted or skipped, for the report.
    skipped : list of (str, str)
        Files that could not be read: (path, reason).
    peaks_dbfs : list of float
        Each stem's sample peak (dBFS), as loaded (measured while decoding where possible).
    """

    files: list[str]
    paths: list[Path]
    audio: np.ndarray
    sample_rate: int
    silent: list[bool]
    lengths: list[int]
    notes: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    peaks_dbfs: list[float] = field(default_factory=list)


def find_stem_files(inputs: str | Path | Sequence[str | Path]) -> list[Path]:
    """Stem files from a folder (audio files inside it, sorted) and/or a list of files.

    Raises
    ------
    AudioError
        Nothing to mix (empty folder, missing path), or more than :data:`MAX_STEMS`.
    """
    items = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    if not items:
        raise AudioError("no stems given: pass a folder of stems or the stem files")
    files: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir()
                           if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS and not p.name.startswith("."))
            found = [p for p in found if p.stem.lower() not in _MIX_NAMES]
            if not found:
                raise AudioError(
                    f"no audio files in folder {path} (looked for {', '.join(AUDIO_EXTENSIONS)})")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise AudioError(f"stem {path} does not exist")
    unique = list(dict.fromkeys(p.resolve() for p in files))
    if len(unique) > MAX_STEMS:
        where = f"{items[0]}: " if len(items) == 1 else ""
        raise AudioError(
            f"{where}{len(unique)} stems given, but automix mixes at most {MAX_STEMS}; "
            "bounce related stems to groups (e.g. all drum mics to one drum stem) first")
    return [Path(p) for p in unique]


def unique_names(paths: Sequence[Path]) -> list[str]:
    """A unique name per stem: its file name, prefixed by its folder where two files share one."""
    names: list[str] = []
    counts = Counter(p.name for p in paths)
    for p in paths:
        name = p.name if counts[p.name] == 1 else f"{p.parent.name}_{p.name}"
        while name in names:
            name = "_" + name
        names.append(name)
    return names


def common_rate(rates: Sequence[int]) -> int:
    """Most common rate (Hz); ties go to the highest."""
    counts = Counter(rates)
    return max(counts, key=lambda r: (counts[r], r))


def probe(path: Path) -> tuple[int, int] | None:
    """(sample rate in Hz, frames) from a file's header, or None when it cannot be read
    (:func:`automix.audio.load_audio` then says why)."""
    import soundfile as sf

    from automix.audio import quiet_decoder

    try:
        with quiet_decoder(path):
            info = sf.info(str(path))
    except Exception:  # noqa: BLE001 - any unreadable header: load_audio reports it properly
        return None
    return int(info.samplerate), max(int(info.frames), 0)


def _peak_dbfs(samples: np.ndarray) -> float:
    """Sample peak of ``samples`` in dBFS, from two reductions (no ``abs`` copy)."""
    if samples.size == 0:
        return -240.0
    peak = max(float(samples.max()), -float(samples.min()))
    return 20.0 * math.log10(max(peak, 1e-12))


def read_stems(inputs: str | Path | Sequence[str | Path], sample_rate: int | None = None,
               progress: Callable[[str], None] | None = None) -> StemAudio:
    """Read stems of any supported format, sample rate, channel count and length.

    Parameters
    ----------
    inputs : folder, file, or list of files
    sample_rate : int, optional
        Rate to work at (Hz); default the most common rate among the stems.
    progress : callable, optional
        Called with a short message per file.

    Returns
    -------
    StemAudio
        Files that cannot be read are skipped and listed in ``skipped`` and ``notes``
        (the others are kept); silent stems are marked in ``silent``; a stem's DC offset
        above -60 dBFS is removed (:func:`automix.dsp.dc.remove_dc`) and reported.

    Raises
    ------
    AudioError
        No stems, more than :data:`MAX_STEMS`, or no readable stem at all.
    """
    from automix.audio import load_audio, resample
    from automix.dsp.dc import DC_CUTOFF_HZ, dc_offset, remove_dc
    from automix.loudness import WARN_DC_OFFSET

    paths = find_stem_files(inputs)
    names = unique_names(paths)
    headers = [probe(p) for p in paths]
    known = [h for h in headers if h is not None]
    rate = int(sample_rate) if sample_rate else (common_rate([r for r, _ in known]) if known else 0)
    width = max([n for r, n in known if r == rate], default=0)
    if known and rate > 0:  # a session too large for this machine is refused before it is read
        from automix.memory import check_mix_fits

        folders = {p.parent for p in paths}
        where = str(folders.pop()) if len(folders) == 1 else f"{len(paths)} stems"
        check_mix_fits(paths, max(int(math.ceil(n * rate / r)) for r, n in known), rate, where)
    gathered = np.zeros((len(paths), 2, width), dtype=np.float32)
    rows: list[np.ndarray] = []  # each kept stem's (2, n) samples: a view of ``gathered`` or its own array
    kept: list[tuple[str, Path]] = []
    skipped: list[tuple[str, str]] = []
    notes: list[str] = []
    peaks: list[float | None] = []
    for name, path, header in zip(names, paths, headers):
        if progress:
            progress(f"reading {name}")
        row = gathered[len(rows)]
        try:
            audio = load_audio(path, sample_rate=None, mono_to_stereo=True, downmix=True,
                               into=row if header is not None and header[0] == rate else None)
        except AudioError as exc:
            row[:] = 0.0  # a file that failed half-way may have written into the row
            reason = str(exc).removeprefix(f"{path}: ")
            skipped.append((str(path), reason))
            notes.append(f"skipped {name}: {reason}")
            continue
        if audio.file_channels > 2:
            notes.append(f"{name} has {audio.file_channels} channels: folded down to stereo"
                         + (" (5.1: centre and surrounds at -3 dB, LFE dropped)" if audio.file_channels == 6 else ""))
        samples, sr, peak = audio.samples, int(audio.sample_rate), audio.peak
        if sr != rate:
            samples = np.asarray(resample(samples, sr, rate), dtype=np.float32)
            notes.append(f"{name} resampled from {sr} Hz to {rate} Hz")
            peak = None
        offset = dc_offset(samples)
        if offset > WARN_DC_OFFSET:  # -60 dBFS, where analyze warns
            samples = remove_dc(samples, rate, out=samples if np.shares_memory(samples, row) else None)
            notes.append(f"{name} had a DC offset of {100 * offset:.2f}% of full scale: removed "
                         f"({DC_CUTOFF_HZ:g} Hz high-pass)")
            peak = None
        if not np.shares_memory(samples, gathered) and samples.shape[-1] <= width:
            row[:, : samples.shape[-1]] = samples
            samples = row[:, : samples.shape[-1]]
        rows.append(samples)
        peaks.append(peak)
        kept.append((name, path))
    if not kept:
        if len(skipped) == 1:
            raise AudioError(f"{skipped[0][0]}: {skipped[0][1]}")
        detail = "; ".join(f"{Path(p).name}: {r}" for p, r in skipped)
        raise AudioError(f"none of the {len(paths)} stems could be read ({detail})")
    lengths = [r.shape[-1] for r in rows]
    total = max(lengths)
    median = float(np.median(lengths))
    for (name, _), n in zip(kept, lengths):
        if n > 2 * median and n - median > rate:
            notes.append(f"{name} is much longer than the other stems ({n / rate:.1f} s vs about "
                         f"{median / rate:.1f} s): the mix is {total / rate:.1f} s long, the others are padded with silence")
    peak_db = [20 * math.log10(max(p, 1e-12)) if p is not None else _peak_dbfs(r) for p, r in zip(peaks, rows)]
    if total == width and all(np.shares_memory(r, gathered) for r in rows):
        audio = gathered[: len(rows)]  # rows of skipped files were never used
    else:  # a resampled stem is the longest, or a file held more than its header said
        audio = np.zeros((len(rows), 2, total), dtype=np.float32)
        for i, r in enumerate(rows):
            audio[i, :, : r.shape[-1]] = r
    silent = [bool(p < SILENCE_PEAK_DBFS) for p in peak_db]
    files = [n for n, _ in kept]
    if all(silent):
        which = f"{kept[0][1]}: is" if len(kept) == 1 else f"all {len(kept)} stems ({', '.join(files)}) are"
        raise AudioError(f"{which} silent (no signal above {SILENCE_PEAK_DBFS:g} dBFS): nothing to mix")
    for name, s in zip(files, silent):
        if s:
            notes.append(f"{name} is silent: left untouched")
    return StemAudio(files, [p for _, p in kept], audio, rate, silent, lengths, notes, skipped, peak_db)
