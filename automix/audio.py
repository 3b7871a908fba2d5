"""Reading, resampling and writing audio files safely.

Everything in automix works on ``float32`` arrays shaped ``(channels, samples)`` with
full scale at +-1.0. This module is the only place that touches audio files:

* :func:`load_audio` reads WAV, FLAC, AIFF, OGG/Vorbis and MP3 (through libsndfile),
  makes mono files centred stereo on request, refuses or folds down files with more
  than two channels, resamples to a working rate, and raises :class:`AudioError`
  naming the file for anything unusable (missing, empty, corrupt, NaN/Inf...).
* :func:`check_not_silent` rejects digital silence (a separate check: silence is a
  valid stem in a multitrack, but not a valid file to analyse or master).
* :func:`write_audio` writes WAV/FLAC/AIFF at 16 bit (TPDF-dithered), 24 bit or
  32-bit float, atomically (temporary file + :func:`os.replace`), refusing to
  overwrite an input or an existing file unless asked.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from automix.errors import AudioError, OutputExistsError

log = logging.getLogger(__name__)

#: File extensions read through libsndfile (lower case, with the dot).
READABLE_EXTENSIONS: tuple[str, ...] = (
    ".wav", ".wave", ".flac", ".aif", ".aiff", ".aifc", ".ogg", ".oga", ".mp3", ".w64", ".rf64", ".caf",
)

#: Writable containers by extension -> libsndfile format name.
WRITE_FORMATS: dict[str, str] = {".wav": "WAV", ".flac": "FLAC", ".aif": "AIFF", ".aiff": "AIFF"}

#: Sample encodings each writable container accepts.
WRITE_SUBTYPES: dict[str, tuple[str, ...]] = {
    "WAV": ("PCM_16", "PCM_24", "FLOAT"),
    "FLAC": ("PCM_16", "PCM_24"),
    "AIFF": ("PCM_16", "PCM_24", "FLOAT"),
}

#: Bits of the integer encodings (used for quantisation and dither).
PCM_BITS: dict[str, int] = {"PCM_16": 16, "PCM_24": 24}

#: Peak level (dBFS) at or below which a file counts as silent.
SILENCE_DBFS: float = -120.0


@dataclass
class Audio:
    """Audio samples read from a file.

    Attributes
    ----------
    samples : np.ndarray
        ``float32`` array of shape ``(channels, samples)``, full scale +-1.0.
    sample_rate : int
        Samples per second (Hz).
    path : Path or None
        The file the samples came from.
    peak : float or None
        Largest absolute sample value of the file as read (``None`` when unknown).
    file_channels : int
        Channels of the file itself (before a fold-down or mono-to-stereo; 0 when unknown).
    """

    samples: np.ndarray
    sample_rate: int
    path: Path | None = None
    peak: float | None = None
    file_channels: int = 0

    @property
    def channels(self) -> int:
        """Number of channels."""
        return int(self.samples.shape[0])

    @property
    def frames(self) -> int:
        """Number of samples per channel."""
        return int(self.samples.shape[-1])

    @property
    def duration_s(self) -> float:
        """Length in seconds."""
        return self.frames / float(self.sample_rate)


def _name(path: Any) -> str:
    return str(path)


def _check_input_file(path: Path) -> None:
    if not path.exists():
        raise AudioError(f"{_name(path)}: file not found")
    if path.is_dir():
        raise AudioError(f"{_name(path)}: is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{_name(path)}: the file is empty (0 bytes)")
    ext = path.suffix.lower()
    if ext not in READABLE_EXTENSIONS:
        raise AudioError(
            f"{_name(path)}: unsupported audio format '{ext or '(no extension)'}' "
            "(automix reads WAV, FLAC, AIFF, OGG and MP3)"
        )


def _check_finite(samples: np.ndarray, what: str) -> None:
    """Raise AudioError if ``samples`` hold NaN or infinite values (cheap when they do not)."""
    # A single (pairwise, float32) sum is finite for every clean signal of sane level;
    # only if it is not do we pay for the element-wise test (a sum of huge finite
    # values may overflow too, so the element-wise test decides).
    with np.errstate(all="ignore"):
        total = samples.sum()
    if np.isfinite(total):
        return
    bad = int(np.count_nonzero(~np.isfinite(samples)))
    if bad:
        raise AudioError(f"{what}: contains {bad} NaN or infinite sample values (damaged file or broken export)")


_READ_BLOCK = 1 << 20  # frames per read: few GIL hand-overs per file (decoding overlaps torch loading)
#: Containers whose frame count and seeking libsndfile gets exactly right (PCM and FLAC):
#: long ones are decoded in parallel parts.
_SPLITTABLE_FORMATS: frozenset[str] = frozenset({"WAV", "WAVEX", "FLAC", "AIFF", "W64", "RF64", "CAF"})
#: Shortest file (frames) worth decoding in parallel parts.
_SPLIT_MIN_FRAMES = 1 << 20


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity where the OS reports it)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return max(1, len(affinity(0)) if affinity is not None else (os.cpu_count() or 1))


def _read_planar(path: Path, into: np.ndarray | None = None) -> tuple[np.ndarray, int, float]:
    """Decode ``path`` to ``float32`` ``(channels, samples)``, plus its peak (NaN if not finite).

    With ``into`` (float32 ``(>= channels, N)``) a file of at most ``N`` frames is decoded
    straight into ``into[:channels, :frames]`` and that view is returned (no copy).

    Frames are read block by block into a small interleaved buffer, and one compiled
    pass per block (:mod:`automix.audio_kernels`) writes them into the planar array and
    tracks the extremes while the block is in cache. Integer files are read as their
    codes and scaled here (``INTEGER_READS``): the same ``float32`` values libsndfile's
    float conversion gives, at a fraction of its cost. Plain 16/24-bit PCM WAV data is
    read straight from the file (:func:`_pcm_wav_layout`; libsndfile reads the rest).
    Long PCM/FLAC files are decoded in parts on separate threads (file reads and
    libsndfile run without the GIL), each part through its own handle.
    """
    import soundfile as sf

    from automix.audio_kernels import INTEGER_READS

    with sf.SoundFile(str(path)) as f:
        rate, channels, frames = int(f.samplerate), int(f.channels), max(int(f.frames), 0)
        dtype, scale = INTEGER_READS.get(f.subtype, ("float32", 1.0))
        raw = _pcm_wav_layout(path, f)
        exact = f.format in _SPLITTABLE_FORMATS  # the header's length is to be trusted
        promised = max(frames, _promised_frames(path, f) or 0)
        parts = min(usable_cpus(), frames // _SPLIT_MIN_FRAMES) if f.format in _SPLITTABLE_FORMATS else 1
        fits = into is not None and into.dtype == np.float32 and into.shape[0] >= channels \
            and into.shape[1] >= frames
        out = into[:channels, :frames] if fits else np.empty((channels, frames), dtype=np.float32)
        if parts <= 1 and raw is None:
            out, pos, extremes = _read_part(_SoundfileBlocks(f, dtype), out, 0, None)
    if parts <= 1 and raw is not None:
        with open(path, "rb") as handle:
            out, pos, extremes = _read_part(_RawPCMBlocks(handle, raw, 0), out, 0, frames)
    elif parts > 1:
        from concurrent.futures import ThreadPoolExecutor

        bounds = [frames * k // parts for k in range(parts + 1)]

        def part(k: int) -> tuple[int, np.ndarray, bool]:
            if raw is not None:
                with open(path, "rb") as handle:
                    _, done, extremes = _read_part(_RawPCMBlocks(handle, raw, bounds[k]), out, bounds[k], bounds[k + 1])
                    return done, extremes, False
            with sf.SoundFile(str(path)) as g:
                g.seek(bounds[k])
                _, done, extremes = _read_part(_SoundfileBlocks(g, dtype), out, bounds[k], bounds[k + 1])
                return done, extremes, k + 1 == parts and g.read(1, dtype=dtype).shape[0] > 0

        with ThreadPoolExecutor(max_workers=parts) as pool:
            results = list(pool.map(part, range(parts)))
        pos = frames
        extremes = np.stack([e for _, e, _ in results])
        extremes = np.stack([extremes[:, :, 0].max(axis=0), extremes[:, :, 1].min(axis=0)], axis=1)
        if any(done != bounds[k + 1] or longer for k, (done, _, longer) in enumerate(results)):
            pos = -1  # not as long as its header says: read it in one go below
    if pos != frames and (raw is not None or pos < 0):  # the file is not what its header says
        with sf.SoundFile(str(path)) as f:
            out, pos, extremes = _read_part(_SoundfileBlocks(f, dtype), np.empty((channels, frames), np.float32),
                                            0, None)
    if exact and 0 < pos < promised:
        raise AudioError(f"{_name(path)}: is truncated: its header promises {_seconds(promised, rate)} of audio but "
                         f"the file holds only {_seconds(pos, rate)} (an interrupted copy, download or export?); "
                         "copy or export it again")
    if pos == 0:
        peak = 0.0
    elif dtype != "float32":
        code = max(int(extremes[:, 0].max()), -int(extremes[:, 1].min()))
        peak = float(np.float32(code) * np.float32(scale))  # as the samples hold it
    else:
        hi, lo = float(extremes[:, 0].max()), float(extremes[:, 1].min())
        peak = max(hi, -lo) if (hi == hi and lo == lo) else math.nan
    if pos == out.shape[1]:
        return out, rate, peak
    return (out[:, :pos] if fits and np.shares_memory(out, into) else np.ascontiguousarray(out[:, :pos])), rate, peak


def _seconds(frames: int, rate: int) -> str:
    return f"{frames / rate:.2f} s" if rate > 0 else f"{frames} frames"


def _promised_frames(path: Path, f: Any) -> int | None:
    """Frames the header of a WAV or AIFF file says it holds, or None (another format, no such
    chunk, or a streaming placeholder size). libsndfile quietly clamps the length of a file cut
    short to what is there; this is what its header promised."""
    if f.format == "AIFF":
        return _aiff_promised_frames(path)
    if f.format not in ("WAV", "WAVEX"):
        return None
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:] != b"WAVE":
                return None
            align = 0
            while True:
                chunk = handle.read(8)
                if len(chunk) < 8:
                    return None
                size = int.from_bytes(chunk[4:], "little")
                if chunk[:4] == b"fmt ":
                    fmt = handle.read(size)
                    handle.seek(size & 1, 1)
                    align = int.from_bytes(fmt[12:14], "little") if len(fmt) >= 14 else 0
                elif chunk[:4] == b"data":
                    if align <= 0 or size in (0, 0xFFFFFFFF):
                        return None
                    return size // align
                else:
                    handle.seek(size + (size & 1), 1)
    except OSError:
        return None


def _aiff_promised_frames(path: Path) -> int | None:
    """``numSampleFrames`` of an AIFF/AIFC file's ``COMM`` chunk (big-endian), or None."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
            if len(head) < 12 or head[:4] != b"FORM" or head[8:] not in (b"AIFF", b"AIFC"):
                return None
            while True:
                chunk = handle.read(8)
                if len(chunk) < 8:
                    return None
                size = int.from_bytes(chunk[4:], "big")
                if chunk[:4] == b"COMM":
                    comm = handle.read(min(size, 18))
                    return int.from_bytes(comm[2:6], "big") if len(comm) >= 6 else None
                handle.seek(size + (size & 1), 1)
    except OSError:
        return None


@dataclass(frozen=True)
class _PCMLayout:
    """Where and how the samples of a plain PCM WAV file lie."""

    offset: int  # byte position of the first frame
    channels: int
    sample_bytes: int  # 2 or 3, little-endian


#: KSDATAFORMAT_SUBTYPE_PCM after its two-byte format tag (WAVE_FORMAT_EXTENSIBLE files).
_PCM_GUID_TAIL = bytes.fromhex("000000001000800000aa00389b71")


def _pcm_wav_layout(path: Path, f: Any) -> _PCMLayout | None:
    """The layout of ``path`` if it is a plain little-endian 16/24-bit PCM WAV file whose
    header agrees with libsndfile's reading of it (``f``), else None."""
    if sys.byteorder != "little" or f.format not in ("WAV", "WAVEX") or f.subtype not in ("PCM_16", "PCM_24"):
        return None
    fmt, offset, size = None, -1, 0
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:] != b"WAVE":
                return None
            while offset < 0:
                chunk = handle.read(8)
                if len(chunk) < 8:
                    return None
                size = int.from_bytes(chunk[4:], "little")
                if chunk[:4] == b"fmt ":
                    fmt = handle.read(size)
                    handle.seek(size & 1, 1)
                elif chunk[:4] == b"data":
                    offset = handle.tell()
                else:
                    handle.seek(size + (size & 1), 1)
    except OSError:
        return None
    if fmt is None or len(fmt) < 16:
        return None
    tag, channels, align, bits = (int.from_bytes(fmt[i: i + 2], "little") for i in (0, 2, 12, 14))
    if tag == 0xFFFE:  # WAVE_FORMAT_EXTENSIBLE: PCM sub-format, all bits valid
        if len(fmt) < 40 or int.from_bytes(fmt[18:20], "little") != bits or fmt[24:26] != b"\x01\x00" \
                or fmt[26:40] != _PCM_GUID_TAIL:
            return None
    elif tag != 1:
        return None
    sample_bytes = {"PCM_16": 2, "PCM_24": 3}[f.subtype]
    if bits != 8 * sample_bytes or channels != f.channels or align != channels * sample_bytes:
        return None
    if size // align < f.frames or path.stat().st_size < offset + f.frames * align:
        return None
    return _PCMLayout(offset, channels, sample_bytes)


class _SoundfileBlocks:
    """Blocks of frames from a libsndfile handle, as integer codes or floats (``dtype``)."""

    def __init__(self, f: Any, dtype: str):
        self.f, self.dtype = f, dtype
        self.buf = np.empty((_READ_BLOCK, f.channels), dtype=dtype)

    def read(self, frames: int) -> tuple[np.ndarray, int]:
        """(flat interleaved block, frames in it): up to ``frames`` frames."""
        n = self.f.read(min(_READ_BLOCK, frames), dtype=self.dtype, always_2d=True, out=self.buf).shape[0]
        return self.buf.reshape(-1), n


class _RawPCMBlocks:
    """Blocks of frames read straight from a PCM WAV file (``layout``) from frame ``start`` on."""

    def __init__(self, handle: Any, layout: _PCMLayout, start: int):
        self.handle, self.layout = handle, layout
        self.dtype = "int16" if layout.sample_bytes == 2 else "int32"
        self.align = layout.channels * layout.sample_bytes
        self.buf = np.empty(_READ_BLOCK * self.align, dtype=np.uint8)
        handle.seek(layout.offset + start * self.align)

    def read(self, frames: int) -> tuple[np.ndarray, int]:
        """(flat block: int16 codes, or the bytes of 24-bit codes; frames in it): up to ``frames``."""
        got = self.handle.readinto(memoryview(self.buf)[: min(_READ_BLOCK, frames) * self.align]) or 0
        return (self.buf.view(np.int16) if self.layout.sample_bytes == 2 else self.buf), got // self.align


def _read_part(blocks: Any, out: np.ndarray, start: int, stop: int | None) -> tuple[np.ndarray, int, np.ndarray]:
    """Decode ``blocks`` into ``out[:, start:stop]`` (to the end of the file when ``stop`` is
    None, growing ``out`` if the header under-reported the length).

    Returns ``(out, frames decoded up to, (channels, 2) running (max, min))`` -- integer
    codes (16-bit, or 24/32-bit left-justified in 32) for integer data, floats otherwise
    (NaN if the part holds NaN).
    """
    from automix.audio_kernels import float_block_to_planar, int_block_to_planar, pcm24_block_to_planar

    channels = out.shape[0]
    integer = blocks.dtype != "float32"
    scale = {"int16": 2.0**-15, "int32": 2.0**-31}.get(blocks.dtype, 1.0)
    extremes = np.empty((channels, 2), dtype=np.int64 if integer else np.float64)
    extremes[:] = (np.iinfo(blocks.dtype).min, np.iinfo(blocks.dtype).max) if integer else (-math.inf, math.inf)
    pos = start
    compiled = None
    while stop is None or pos < stop:
        flat, n = blocks.read(_READ_BLOCK if stop is None else stop - pos)
        if n == 0:
            break
        if pos + n > out.shape[1]:  # the header under-reported the length
            out = np.concatenate([out, np.empty((channels, pos + n - out.shape[1] + out.shape[1] // 8 + 1),
                                                dtype=np.float32)], axis=1)
        kernel = pcm24_block_to_planar if flat.dtype == np.uint8 else int_block_to_planar if integer \
            else float_block_to_planar
        args = (flat, channels, n, out, pos, extremes) + ((scale,) if integer else ())
        if compiled is None:
            from automix.precompile import ready

            compiled = ready(kernel, *args)  # False: a first run (automix.precompile), nothing compiled yet
        if compiled:
            kernel(*args)
        else:
            _block_to_planar_numpy(*args)
        pos += n
    return out, pos, extremes


def _block_to_planar_numpy(flat: np.ndarray, channels: int, frames: int, out: np.ndarray, pos: int,
                           extremes: np.ndarray, scale: float | None = None) -> None:
    """What the block decoders of :mod:`automix.audio_kernels` do (same samples, same extremes),
    in numpy: a first run's path while they are not compiled yet (:mod:`automix.precompile`)."""
    from automix.audio_kernels import _EXPONENT_MASK, _FLOOR_EXPONENT_BITS

    if flat.dtype == np.uint8:  # 24-bit little-endian bytes -> codes left-justified in 32 bits
        b = flat[: 3 * frames * channels].reshape(-1, 3)
        codes = ((b[:, 0].astype(np.uint32) << 8) | (b[:, 1].astype(np.uint32) << 16)
                 | (b[:, 2].astype(np.uint32) << 24)).view(np.int32)
        frames_view = codes.reshape(frames, channels)
    else:
        frames_view = flat[: frames * channels].reshape(frames, channels)
    block = []
    for c in range(channels):
        column = frames_view[:, c]
        row = out[c, pos: pos + frames]
        if scale is not None:  # integer codes: float32(code) * scale, the running extremes in codes
            np.multiply(column, np.float32(scale), out=row, dtype=np.float32, casting="unsafe")
            if frames:
                extremes[c, 0] = max(int(extremes[c, 0]), int(column.max()))
                extremes[c, 1] = min(int(extremes[c, 1]), int(column.min()))
            continue
        row[...] = column  # floats: below FLOAT_FLOOR (decided on the bits) read as 0
        row[(column.view(np.int32) & _EXPONENT_MASK) < _FLOOR_EXPONENT_BITS] = 0.0
        if frames:
            block.append((float(row.max()), float(row.min())))
    if scale is not None or not frames:
        return
    nan = [hi != hi or lo != lo for hi, lo in block]
    if channels == 2 and any(nan):  # the stereo kernel: a NaN in the block makes all four NaN
        nan = [True, True]
    for c, ((hi, lo), bad) in enumerate(zip(block, nan)):
        if bad:
            extremes[c] = np.nan
        else:  # an earlier NaN stays (comparisons with NaN are false)
            extremes[c, 0] = hi if hi > extremes[c, 0] else extremes[c, 0]
            extremes[c, 1] = lo if lo < extremes[c, 1] else extremes[c, 1]


def downmix_to_stereo(samples: np.ndarray) -> np.ndarray:
    """Fold a multichannel ``(channels, samples)`` array down to stereo.

    Six channels are taken as 5.1 in WAV order (L, R, C, LFE, Ls, Rs) and folded
    with the ITU-R BS.775 coefficients (centre and surrounds at -3 dB, LFE dropped).
    Any other count sends even-numbered channels (0, 2, ...) left and odd-numbered
    ones right, averaged. Mono and stereo are returned unchanged.

    Parameters
    ----------
    samples : np.ndarray
        ``(channels, samples)``.

    Returns
    -------
    np.ndarray
        ``(2, samples)`` (or the input when it has at most two channels).
    """
    channels = samples.shape[0]
    if channels <= 2:
        return samples
    if channels == 6:
        g = np.float32(10 ** (-3 / 20))
        left = samples[0] + g * samples[2] + g * samples[4]
        right = samples[1] + g * samples[2] + g * samples[5]
        return np.stack([left, right]).astype(np.float32)
    return np.stack([samples[0::2].mean(axis=0), samples[1::2].mean(axis=0)]).astype(np.float32)


def load_audio(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    mono_to_stereo: bool = True,
    downmix: bool = False,
    into: np.ndarray | None = None,
) -> Audio:
    """Read an audio file into ``float32`` ``(channels, samples)``.

    Parameters
    ----------
    path : str or PathLike
        WAV, FLAC, AIFF, OGG/Vorbis or MP3 file.
    sample_rate : int or None
        Working rate in Hz to resample to; ``None`` keeps the file's rate.
    mono_to_stereo : bool
        Turn a mono file into centred stereo (the same signal on both channels).
    downmix : bool
        Fold files with more than two channels to stereo (:func:`downmix_to_stereo`);
        without it such files raise :class:`AudioError`.
    into : np.ndarray, optional
        A ``float32`` ``(2, N)`` array (e.g. one stem's row of a ``(stems, 2, N)`` array)
        to decode straight into, without a copy: used when no ``sample_rate`` is asked for and
        the file has one or two channels and at most ``N`` frames (a mono file fills both rows
        with ``mono_to_stereo``).
        ``Audio.samples`` is then a view of it (check with ``np.shares_memory``); otherwise
        ``into`` is left alone and the samples are a new array.

    Returns
    -------
    Audio

    Raises
    ------
    AudioError
        The file is missing, empty, of an unsupported format, unreadable (corrupt),
        has no samples, contains NaN/Inf, or has more than two channels without
        ``downmix``. The message names the file.
    """
    import soundfile as sf

    path = Path(path)
    _check_input_file(path)
    try:
        with quiet_decoder(path):
            samples, rate, peak = _read_planar(path, into if sample_rate is None else None)
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError) as exc:
        detail = str(exc).split(":")[-1].strip().rstrip(".") or type(exc).__name__
        if "does not exist" in detail:  # libsndfile's words when no decoder accepts an (existing) file
            detail = "no decoder recognises its contents"
        raise AudioError(f"{_name(path)}: cannot be read - corrupt or not an audio file ({detail})") from None
    if samples.shape[1] == 0:
        raise AudioError(f"{_name(path)}: contains no audio (zero length)")
    if not np.isfinite(peak):
        _check_finite(samples, _name(path))
    file_channels = int(samples.shape[0])
    if samples.shape[0] > 2:
        if not downmix:
            raise AudioError(
                f"{_name(path)}: has {samples.shape[0]} channels; automix works on mono or stereo "
                "(use the downmix option, --downmix, to fold it to stereo)"
            )
        samples = downmix_to_stereo(samples)
        peak = None  # the fold-down has its own peak
    if samples.shape[0] == 1 and mono_to_stereo:
        if into is not None and np.shares_memory(samples, into):
            into[1, : samples.shape[1]] = samples[0]
            samples = into[:, : samples.shape[1]]
        else:
            samples = np.repeat(samples, 2, axis=0)
    if sample_rate is not None and int(sample_rate) != int(rate):
        samples = resample(samples, int(rate), int(sample_rate))
        rate = int(sample_rate)
        peak = None  # resampling moves the peak
    return Audio(samples=samples, sample_rate=int(rate), path=path, peak=peak, file_channels=file_channels)


@contextlib.contextmanager
def quiet_decoder(path: str | os.PathLike) -> Iterator[None]:
    """Keep a decoder's own chatter off the terminal while ``path`` is opened or read.

    libsndfile's MP3 decoder (mpg123) prints "Note: Illegal Audio-MPEG-Header..." lines straight
    to the process's standard error when a file is damaged; automix reports the damage itself,
    on one line. Only MP3 files are affected (other decoders are silent): their reads run with
    file descriptor 2 pointed at the null device.
    """
    if Path(path).suffix.lower() != ".mp3":
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, 2)
        finally:
            os.close(null)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def check_not_silent(audio: Audio | np.ndarray, path: str | os.PathLike | None = None,
                     threshold_dbfs: float = SILENCE_DBFS) -> None:
    """Raise :class:`AudioError` when every sample is at or below ``threshold_dbfs``.

    Parameters
    ----------
    audio : Audio or np.ndarray
        The audio, or its ``(channels, samples)`` array.
    path : str or PathLike, optional
        Name used in the message (defaults to ``audio.path``).
    threshold_dbfs : float
        Peak level in dBFS that counts as silence (default -120 dBFS).
    """
    samples = audio.samples if isinstance(audio, Audio) else np.asarray(audio)
    if path is None and isinstance(audio, Audio):
        path = audio.path
    if isinstance(audio, Audio) and audio.peak is not None:
        peak = audio.peak
    else:
        peak = float(max(samples.max(initial=0.0), -samples.min(initial=0.0))) if samples.size else 0.0
    if peak <= 10 ** (threshold_dbfs / 20):
        raise AudioError(f"{_name(path) if path is not None else 'audio'}: is silent (no signal above {threshold_dbfs:g} dBFS)")


def resample(samples: Any, orig_sr: int, new_sr: int) -> Any:
    """Change the sample rate of ``samples`` along the last axis.

    numpy input goes through soxr (very high quality, linear phase); torch tensors
    through :func:`torchaudio.functional.resample` (stays on the tensor's device,
    differentiable).

    Parameters
    ----------
    samples : np.ndarray or torch.Tensor
        ``(..., samples)``.
    orig_sr, new_sr : int
        Sample rates in Hz.

    Returns
    -------
    Same type as ``samples``, ``(..., round(samples * new_sr / orig_sr))``.
    """
    orig_sr, new_sr = int(orig_sr), int(new_sr)
    if orig_sr <= 0 or new_sr <= 0:
        raise AudioError(f"cannot resample from {orig_sr} Hz to {new_sr} Hz")
    if orig_sr == new_sr:
        return samples
    if not isinstance(samples, np.ndarray):
        import torchaudio.functional as AF

        return AF.resample(samples, orig_sr, new_sr)
    import soxr

    x = np.asarray(samples)
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1]).astype(np.float32, copy=False)
    out = soxr.resample(np.ascontiguousarray(flat.T), orig_sr, new_sr, quality="VHQ")
    out = np.ascontiguousarray(np.asarray(out, dtype=np.float32).T)
    return out.reshape(*lead, out.shape[-1])


def tpdf_dither(shape: tuple[int, ...], bits: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Triangular-PDF dither noise, peak +-1 LSB of a ``bits``-bit quantiser.

    The sum of two independent uniform variables of one LSB width each: zero mean,
    variance ``LSB**2 / 6``, and it makes the quantisation error independent of the
    signal (no distortion, just a steady noise floor).

    Parameters
    ----------
    shape : tuple of int
        Output shape.
    bits : int
        Word length of the target format (16 -> LSB = 2**-15 of full scale).
    rng : np.random.Generator, optional
        Random source (seed it for reproducible files).

    Returns
    -------
    np.ndarray
        ``float64`` noise in full-scale units.
    """
    rng = np.random.default_rng() if rng is None else rng
    lsb = 2.0 ** (1 - bits)
    return (rng.random(shape) - rng.random(shape)) * lsb


def quantize(samples: np.ndarray, bits: int, dither: bool, rng: np.random.Generator | None = None) -> tuple[np.ndarray, int]:
    """Round ``float`` full-scale samples to ``bits``-bit integers.

    Parameters
    ----------
    samples : np.ndarray
        ``(..., samples)`` full scale +-1.0.
    bits : int
        16 or 24.
    dither : bool
        Add TPDF dither (:func:`tpdf_dither`) before rounding.
    rng : np.random.Generator, optional
        Random source of the dither.

    Returns
    -------
    codes : np.ndarray
        ``int32`` integer codes, left-justified in 32 bits (what libsndfile expects
        for any integer encoding), i.e. ``code_bits << (32 - bits)``.
    clipped : int
        How many samples were beyond full scale and were clipped.
    """
    scale = 2.0 ** (bits - 1)
    x = samples.astype(np.float64) * scale
    if dither:
        x += tpdf_dither(x.shape, bits, rng) * scale
    x = np.rint(x)
    over = (x > scale - 1) | (x < -scale)
    clipped = int(np.count_nonzero(over))
    if clipped:
        np.clip(x, -scale, scale - 1, out=x)
    return x.astype(np.int32) << (32 - bits), clipped


def interleaved_codes(samples: np.ndarray, bits: int, dither: bool,
                      rng: np.random.Generator | None = None) -> tuple[np.ndarray, int]:
    """:func:`quantize` ``(channels, T)`` samples into frame-major ``(T, channels)`` int32 codes for libsndfile.

    Without dither the rounding, clipping and interleaving run as one compiled pass
    (:func:`automix.audio_kernels.quantize_interleaved`, the same codes); with dither through
    :func:`quantize`. Returns ``(codes, clipped)``.
    """
    if dither:
        codes, clipped = quantize(samples, bits, dither=True, rng=rng)
        return np.ascontiguousarray(codes.T), clipped
    from automix.audio_kernels import quantize_interleaved
    from automix.precompile import ready

    x = samples if samples.dtype in (np.float32, np.float64) else samples.astype(np.float64)
    codes = np.empty((x.shape[-1], x.shape[0]), dtype=np.int32)
    frames = x.shape[-1]
    if not ready(quantize_interleaved, x, int(bits), codes, 0, frames):  # a first run: numpy, same codes
        codes, clipped = quantize(x, bits, dither=False)
        return np.ascontiguousarray(codes.T), clipped
    parts = min(usable_cpus(), frames // _SPLIT_MIN_FRAMES)
    if parts <= 1:
        return codes, int(quantize_interleaved(x, int(bits), codes, 0, frames))
    from concurrent.futures import ThreadPoolExecutor  # the kernel runs without the GIL

    bounds = [frames * k // parts for k in range(parts + 1)]
    with ThreadPoolExecutor(max_workers=parts) as pool:
        clipped = pool.map(lambda k: quantize_interleaved(x, int(bits), codes, bounds[k], bounds[k + 1]), range(parts))
        return codes, int(sum(clipped))


def _as_numpy(samples: Any) -> np.ndarray:
    if not isinstance(samples, np.ndarray):
        if hasattr(samples, "detach"):
            samples = samples.detach().cpu().numpy()
        else:
            samples = np.asarray(samples)
    if samples.ndim == 1:
        samples = samples[None, :]
    if samples.ndim != 2:
        raise AudioError(f"audio to write must be (channels, samples); got shape {tuple(samples.shape)}")
    return samples


def _same_file(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def check_output_path(path: str | os.PathLike, *, overwrite: bool = False,
                      inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Validate an output path before any work is done.

    Raises :class:`OutputExistsError` if ``path`` is one of ``inputs`` (never allowed)
    or already exists and ``overwrite`` is False, and :class:`OutputError` when its folder
    cannot hold it (a file is in the way, or it is read-only; see
    :func:`automix.outputs.check_output_folder`).

    Returns
    -------
    Path
    """
    from automix.outputs import check_output_folder

    path = Path(path)
    for item in inputs:
        if _same_file(path, Path(item)):
            raise OutputExistsError(f"{_name(path)}: refusing to overwrite an input file; choose another output name")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{_name(path)}: already exists (use --overwrite to replace it)")
    if path.is_dir():
        raise OutputExistsError(f"{_name(path)}: is a folder; give a file name for the output")
    return check_output_folder(path)


def write_audio(
    path: str | os.PathLike,
    samples: Any,
    sample_rate: int,
    *,
    subtype: str = "PCM_24",
    dither: bool = True,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike] = (),
    rng: np.random.Generator | None = None,
) -> Path:
    """Write ``samples`` to ``path`` atomically.

    The container comes from the extension (``.wav``, ``.flac``, ``.aif``/``.aiff``).
    The file is first written to a temporary file in the same folder and then moved
    over ``path`` in one step, so a failed or interrupted write never leaves a
    half-written file behind or damages an existing one.

    Parameters
    ----------
    path : str or PathLike
        Output file.
    samples : np.ndarray or torch.Tensor
        ``(channels, samples)`` (or ``(samples,)`` for mono), full scale +-1.0.
    sample_rate : int
        Hz.
    subtype : {"PCM_16", "PCM_24", "FLOAT"}
        Sample encoding (FLAC: 16 or 24 bit only).
    dither : bool
        Add TPDF dither when writing 16-bit (ignored for 24-bit and float).
    overwrite : bool
        Replace an existing file (never an input).
    inputs : iterable of paths
        Files this output was made from; writing over one of them is refused.
    rng : np.random.Generator, optional
        Random source of the dither.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    OutputExistsError
        ``path`` is an input, or exists and ``overwrite`` is False.
    AudioError
        Unknown extension/encoding, NaN/Inf samples, or the write failed.
    """
    import soundfile as sf

    path = check_output_path(path, overwrite=overwrite, inputs=inputs)
    ext = path.suffix.lower()
    if ext not in WRITE_FORMATS:
        raise AudioError(
            f"{_name(path)}: cannot write '{ext or '(no extension)'}' files; use "
            + ", ".join(sorted(WRITE_FORMATS))
        )
    fmt = WRITE_FORMATS[ext]
    subtype = subtype.upper()
    if subtype not in WRITE_SUBTYPES[fmt]:
        raise AudioError(
            f"{_name(path)}: {fmt} cannot be written as {subtype}; choose one of {', '.join(WRITE_SUBTYPES[fmt])}"
        )
    x = _as_numpy(samples)
    if x.shape[-1] == 0:
        raise AudioError(f"{_name(path)}: nothing to write (zero-length audio)")
    _check_finite(x, f"{_name(path)} (audio to write)")
    if subtype in PCM_BITS:
        data, clipped = interleaved_codes(x, PCM_BITS[subtype], dither=dither and PCM_BITS[subtype] <= 16, rng=rng)
        if clipped:
            log.warning("%s: %d samples beyond full scale were clipped", path, clipped)
    else:
        data = np.ascontiguousarray(x.astype(np.float32, copy=False).T)

    with atomic_audio_file(path) as tmp:
        sf.write(str(tmp), data, int(sample_rate), subtype=subtype, format=fmt)
    return path


@contextlib.contextmanager
def atomic_audio_file(path: Path) -> Iterator[Path]:
    """Yield a temporary file name in ``path``'s folder to write to; when the block ends it is
    synced and moved onto ``path`` in one step, on any failure removed
    (:func:`automix.outputs.atomic_output`; libsndfile errors become :class:`AudioError`, OS
    errors such as a full disk :class:`~automix.errors.OutputError`). Used by
    :func:`write_audio` and block-wise writers."""
    import soundfile as sf

    from automix.outputs import atomic_output, os_error_message

    with atomic_output(path, suffix=f".tmp{path.suffix.lower()}") as tmp:
        try:
            yield tmp
        except (sf.LibsndfileError, RuntimeError, ValueError, AssertionError) as exc:  # short write: assert
            raise AudioError(f"{_name(path)}: could not be written: {_libsndfile_reason(exc, tmp)}") from None
        except OSError as exc:
            raise AudioError(f"{_name(path)}: could not be written: {os_error_message(exc)}") from None


def _libsndfile_reason(exc: Exception, tmp: Path) -> str:
    """Why libsndfile could not write ``tmp``. It reports a full disk as a bare "System error." (or
    soundfile as a short write), so the free space of the folder decides that case."""
    try:
        stats = os.statvfs(tmp.parent)
        if stats.f_bavail * stats.f_frsize < (1 << 20):
            return "the disk is full"
    except OSError:
        pass
    text = " ".join(str(exc).split())
    return text.split(":")[-1].strip().rstrip(".") or type(exc).__name__
