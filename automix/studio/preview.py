"""The studio's preview renderer: a region of the song through the console, one stem at a time.

An edit in the studio changes one stem's settings; re-rendering the whole mix for it would
waste the work already done for the other stems. So every stem's *pre-fader* signal (EQ ->
compressor -> saturation, through the console's fused strip kernel, the one
:class:`automix.dsp.console.BlockRenderer` runs, with the fader at 0 dB and the pan centred) is
cached per stem, keyed by the settings that shape it; the fader and pan are a per-channel gain
(:func:`automix.dsp.pan.output_matrix`) applied when the stems are summed. So

* a fader, pan, mute or solo change re-processes nothing (only the sum is redone);
* an EQ, compressor or saturation change re-processes that stem only;
* stems whose processors are all neutral are not processed at all (the console leaves them
  untouched, so the stem itself is used).

A stem's region is rendered in pieces (:data:`PIECES`), each with a pre-roll of the song before
it (:func:`preroll_seconds`: long enough for the filters and the compressor to settle from a
zero start), so the pieces run side by side in the kernel's four SIMD lanes and on every core,
and the region still matches a full render of the song (within -100 dB of its peak; the tests
check it).
"""
from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from numba import njit

from automix.dsp.params import STRIP

#: Pre-roll for the filters, s: the slowest EQ band (a Q 10 bell at 40 Hz) decays with a time
#: constant of 80 ms, so after 1.5 s about 1e-8 of what the zero start left remains.
FILTER_PREROLL_S = 1.5
#: Extra pre-roll per second of the compressor's slower time constant: its smoothed gain forgets
#: its start at least as fast as ``exp(-t / release)`` (1e-4 of it after 10 time constants).
COMPRESSOR_PREROLL_PER_S = 10.0
#: Pieces one stem's region is rendered in, side by side (fewer when the pre-roll is long).
PIECES = 4
#: Pre-fader renders kept per stem (the suggestion, the current edit and the one before it).
CACHE_PER_STEM = 3
#: Settings applied after the pre-fader signal: they never need a stem to be re-processed.
POST_FADER = ("gain_db", "pan")

_POST = [STRIP.index(n) for n in POST_FADER]
_PRE = [i for i in range(STRIP.size) if i not in _POST]


@dataclass(frozen=True)
class Region:
    """A stretch of the song in samples: ``[start, stop)``."""

    start: int
    stop: int

    @property
    def length(self) -> int:
        return self.stop - self.start


def region_around(centre_s: float, length_s: float, total: int, sample_rate: int) -> Region:
    """The ``length_s`` region centred on ``centre_s`` (s), moved to lie inside ``total`` samples."""
    length = min(total, max(1, int(round(length_s * sample_rate))))
    start = int(round(centre_s * sample_rate)) - length // 2
    start = min(max(0, start), total - length)
    return Region(start, start + length)


def processing_keys(values: torch.Tensor) -> list[tuple[float, ...]]:
    """What each stem's pre-fader signal depends on: its settings ``[S, P]`` except fader and pan
    (7 significant digits, so float round-off of the same setting hits the same render)."""
    rows = values.detach().to(torch.float64)[:, _PRE].tolist()
    return [tuple(float(f"{v:.7g}") for v in row) for row in rows]


_NEUTRAL_KEY = processing_keys(STRIP.neutral[None])[0]


def preroll_seconds(values: torch.Tensor) -> float:
    """Pre-roll (s) a stem with settings ``values`` ``[P]`` needs before a piece of its region."""
    ratio = float(values[STRIP.index("comp.ratio")])
    if ratio <= 1.0 + 1e-9:
        return FILTER_PREROLL_S
    slowest_ms = max(float(values[STRIP.index("comp.attack_ms")]), float(values[STRIP.index("comp.release_ms")]))
    return FILTER_PREROLL_S + COMPRESSOR_PREROLL_PER_S * slowest_ms / 1000.0


def channel_gains(values: torch.Tensor) -> np.ndarray:
    """Per-channel gains ``[S, 2]`` float32 of stereo stems from their fader and pan (``[S, P]``).

    The console's balance matrix (:func:`automix.dsp.pan.output_matrix`) for two channels
    is diagonal, so the fader and pan of a stereo stem are one gain per channel.
    """
    from automix.dsp.pan import output_matrix

    v = values.detach().to(torch.float64)
    m = output_matrix(v[:, STRIP.index("pan")], v[:, STRIP.index("gain_db")], 2)
    return np.ascontiguousarray(torch.stack([m[:, 0, 0], m[:, 1, 1]], dim=-1).numpy(), dtype=np.float32)


@njit(cache=True, nogil=True, fastmath=True)
def _accumulate(mix, x, gains):  # pragma: no cover - compiled
    """``mix[c] += gains[c] * x[c]`` for both channels, in one pass."""
    for c in range(mix.shape[0]):
        g = gains[c]
        row, src = mix[c], x[c]
        for n in range(mix.shape[1]):
            row[n] += g * src[n]


class PreviewRenderer:
    """Render one region of the stems, re-processing only the stems whose settings changed.

    Parameters
    ----------
    audio : Tensor ``[S, 2, T]`` float32
        The loaded stems (:attr:`automix.mixing.Stems.audio`; not copied).
    sample_rate : int
        Hz.
    region : Region
        Samples to render.
    """

    def __init__(self, audio: torch.Tensor, sample_rate: int, region: Region):
        if audio.dim() != 3 or audio.shape[1] != 2:
            raise ValueError(f"stems must be shaped [stems, 2, samples], got {tuple(audio.shape)}")
        self.audio = audio
        self.sample_rate = int(sample_rate)
        self.region = region
        self._cache: list[OrderedDict[tuple[float, ...], np.ndarray]] = [OrderedDict() for _ in range(audio.shape[0])]
        #: Stems re-processed since the renderer was made (for tests and the benchmark).
        self.renders = 0

    @property
    def num_stems(self) -> int:
        return int(self.audio.shape[0])

    def set_region(self, region: Region) -> None:
        """Render another region from now on (every cached render is dropped)."""
        if region != self.region:
            self.region = region
            for cache in self._cache:
                cache.clear()

    # ------------------------------------------------------------------ pre-fader renders
    def prefaders(self, indices: list[int], values: torch.Tensor) -> list[np.ndarray]:
        """Stems ``indices`` through EQ, compressor and saturation over the region, each ``[2, N]`` float32.

        ``values`` ``[len(indices), P]`` are their strip settings (validated by the caller); the
        fader and pan in them are ignored. Results are cached (do not write to them); the stems
        not in the cache are rendered together, in one call of the console's kernel.
        """
        keys = processing_keys(values)
        r = self.region
        out: list[np.ndarray | None] = []
        missing: list[int] = []
        for j, (i, key) in enumerate(zip(indices, keys)):
            cache = self._cache[i]
            if key == _NEUTRAL_KEY:
                out.append(self.audio[i, :, r.start:r.stop].numpy())
            elif key in cache:
                cache.move_to_end(key)
                out.append(cache[key])
            else:
                out.append(None)
                missing.append(j)
        if missing:
            rendered = self.render_stems([indices[j] for j in missing], values[missing])
            for j, audio in zip(missing, rendered):
                cache = self._cache[indices[j]]
                cache[keys[j]] = audio
                while len(cache) > CACHE_PER_STEM:
                    cache.popitem(last=False)
                out[j] = audio
        return out  # type: ignore[return-value]

    def prefader(self, index: int, values: torch.Tensor) -> np.ndarray:
        """One stem's pre-fader region (see :meth:`prefaders`); ``values`` ``[P]``."""
        return self.prefaders([index], values[None])[0]

    def render_stems(self, indices: list[int], values: torch.Tensor) -> list[np.ndarray]:
        """Render stems ``indices`` with settings ``values`` ``[K, P]`` (fader and pan ignored; not cached)."""
        from automix.dsp.console import kernel_arguments
        from automix.dsp.kernels import channel_strip, slp_vectorisation

        r, sr = self.region, self.sample_rate
        unity = values.detach().to(torch.float64).clone()
        unity[:, _POST] = STRIP.neutral.double()[_POST]
        preroll = max(int(round(preroll_seconds(v) * sr)) for v in unity)
        pieces = PIECES
        while pieces > 1 and preroll > r.length / (2 * pieces):  # long pre-rolls: fewer, longer pieces
            pieces //= 2
        bounds = [r.start + (r.length * k) // pieces for k in range(pieces + 1)]
        width = max(b - a for a, b in zip(bounds[:-1], bounds[1:])) + preroll
        # every piece ends at the right edge of its row; the zeros before its pre-roll (at the
        # song's start) leave the filters and the compressor in the state a full render starts in
        x = np.zeros((len(indices) * pieces, 2, width), dtype=np.float32)
        for n, i in enumerate(indices):
            for k in range(pieces):
                a, b = max(0, bounds[k] - preroll), bounds[k + 1]
                x[n * pieces + k, :, width - (b - a):] = self.audio[i, :, a:b].numpy()
        args = kernel_arguments(unity.repeat_interleave(pieces, dim=0), STRIP, sr, 2)
        state = (np.zeros((x.shape[0], 2, 6, 2)), np.zeros(x.shape[0]))
        y = np.empty_like(x)
        with slp_vectorisation():
            channel_strip(x, *args, *state, y)
        rendered = []
        for n in range(len(indices)):
            stem = np.empty((2, r.length), dtype=np.float32)
            for k in range(pieces):
                a, b = bounds[k], bounds[k + 1]
                stem[:, a - r.start:b - r.start] = y[n * pieces + k, :, width - (b - a):]
            rendered.append(stem)
        self.renders += len(indices)
        return rendered

    # ------------------------------------------------------------------ mixes
    def render(self, values: torch.Tensor, playing: list[bool] | None = None) -> np.ndarray:
        """The mix of the region, ``[2, N]`` float32, for strip settings ``values`` ``[S, P]``.

        ``playing`` (one bool per stem; default all) leaves the other stems out of the sum
        (mute and solo).
        """
        playing = [True] * self.num_stems if playing is None else list(playing)
        active = [i for i in range(self.num_stems) if playing[i]]
        gains = channel_gains(values)
        mix = np.zeros((2, self.region.length), dtype=np.float32)
        if active:
            for i, x in zip(active, self.prefaders(active, values[active])):
                _accumulate(mix, x, gains[i])
        return mix

    def stem(self, index: int, values: torch.Tensor) -> np.ndarray:
        """One processed stem over the region (fader and pan applied), ``[2, N]`` float32."""
        return self.prefader(index, values) * channel_gains(values[None])[0][:, None]


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """``audio`` ``[C, N]`` as a 32-bit float WAV file in memory (what the page decodes).

    A canonical RIFF/WAVE header (format 3, IEEE float) and the interleaved samples, written
    straight into the output buffer (one strided copy).
    """
    x = np.asarray(audio)
    channels, frames = x.shape
    data_bytes = channels * frames * 4
    header = struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + data_bytes, b"WAVE", b"fmt ", 16, 3, channels,
                         int(sample_rate), int(sample_rate) * channels * 4, channels * 4, 32, b"data", data_bytes)
    out = bytearray(len(header) + data_bytes)
    out[:len(header)] = header
    np.frombuffer(out, dtype="<f4", offset=len(header)).reshape(frames, channels)[:] = x.T
    return bytes(out)
