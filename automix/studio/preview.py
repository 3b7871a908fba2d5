"""The studio's preview renderer: a region of the song through the console, one stem at a time.

An edit in the studio changes one stem's settings; re-rendering the whole mix for it would
waste the work already done for the other stems. So every stem's *pre-fader* signal (EQ ->
compressor -> saturation, rendered by the console's :class:`automix.dsp.console.BlockRenderer`
with the fader at 0 dB and the pan centred) is cached per stem, keyed by the settings that
shape it; the fader and pan are a per-channel gain (:func:`automix.dsp.pan.output_matrix`) applied
when the stems are summed. So

* a fader, pan, mute or solo change re-processes nothing (only the sum is redone);
* an EQ, compressor or saturation change re-processes that stem only;
* stems whose processors are all neutral are not processed at all (the console leaves them
  untouched, so the stem itself is used).

The region is rendered with a pre-roll (:data:`PREROLL_S` of the song before it) so the
filters and the compressor have settled when the region starts, as they have in a full render.
"""
from __future__ import annotations

import struct
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from automix.dsp.params import STRIP

#: Audio rendered before the region and discarded, s: longer than the compressor's release
#: range (at most 1 s) and every filter's settling time, so the region matches a full render.
PREROLL_S = 2.0
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


def processing_key(values: torch.Tensor) -> tuple[float, ...]:
    """What a stem's pre-fader signal depends on: its settings ``[P]`` except fader and pan."""
    return tuple(float(v) for v in values.detach().to(torch.float64)[_PRE].tolist())


_NEUTRAL_KEY = processing_key(STRIP.neutral)


def channel_gains(values: torch.Tensor) -> np.ndarray:
    """Per-channel gains ``[S, 2]`` of stereo stems from their fader and pan (``[S, P]``).

    The console's balance matrix (:func:`automix.dsp.pan.output_matrix`) for two channels
    is diagonal, so the fader and pan of a stereo stem are one gain per channel.
    """
    from automix.dsp.pan import output_matrix

    v = values.detach().to(torch.float64)
    m = output_matrix(v[:, STRIP.index("pan")], v[:, STRIP.index("gain_db")], 2)
    return torch.stack([m[:, 0, 0], m[:, 1, 1]], dim=-1).numpy()


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
        #: Pre-fader renders done since the renderer was made (for tests and the benchmark).
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

    def prefader(self, index: int, values: torch.Tensor) -> np.ndarray:
        """Stem ``index`` through EQ, compressor and saturation over the region, ``[2, N]`` float32.

        ``values`` ``[P]`` are the stem's strip settings (validated by the caller); the fader
        and pan in them are ignored. The result is cached (do not write to it).
        """
        key = processing_key(values)
        r = self.region
        if key == _NEUTRAL_KEY:
            return self.audio[index, :, r.start:r.stop].numpy()
        cache = self._cache[index]
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        from automix.dsp.console import kernel_arguments
        from automix.dsp.kernels import channel_strip, slp_vectorisation

        pre = min(r.start, int(round(PREROLL_S * self.sample_rate)))
        unity = values.detach().to(torch.float64).clone()
        unity[_POST] = STRIP.neutral.double()[_POST]
        # the console's fused strip kernel (what BlockRenderer runs), one stem, from a fresh state
        args = kernel_arguments(unity[None], STRIP, self.sample_rate, 2)
        state = (np.zeros((1, 2, 6, 2)), np.zeros(1))
        x = np.ascontiguousarray(self.audio[index, :, r.start - pre:r.stop].numpy())[None]
        out = np.empty_like(x)
        with slp_vectorisation():
            channel_strip(x, *args, *state, out)
        rendered = out[0, :, pre:] if pre == 0 else np.ascontiguousarray(out[0, :, pre:])
        self.renders += 1
        cache[key] = rendered
        while len(cache) > CACHE_PER_STEM:
            cache.popitem(last=False)
        return rendered

    def render(self, values: torch.Tensor, playing: list[bool] | None = None) -> np.ndarray:
        """The mix of the region, ``[2, N]`` float32, for strip settings ``values`` ``[S, P]``.

        ``playing`` (one bool per stem; default all) leaves the other stems out of the sum
        (mute and solo).
        """
        playing = [True] * self.num_stems if playing is None else list(playing)
        gains = torch.from_numpy(channel_gains(values).astype(np.float32))
        mix = torch.zeros((2, self.region.length), dtype=torch.float32)
        for i in range(self.num_stems):
            if playing[i]:
                mix.addcmul_(torch.from_numpy(self.prefader(i, values[i])), gains[i, :, None])
        mix = mix.numpy()
        return mix

    def stem(self, index: int, values: torch.Tensor) -> np.ndarray:
        """One processed stem over the region (fader and pan applied), ``[2, N]`` float32."""
        gains = channel_gains(values[None])[0].astype(np.float32)
        return self.prefader(index, values) * gains[:, None]


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
