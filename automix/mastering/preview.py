"""Loudness-matched A/B preview: the loudest 30 s of the input and of the master at equal loudness.

Louder always sounds "better"; to judge what mastering did to tone and dynamics, the
excerpt of the master is turned down to the input's loudness over the same stretch
(or the input down to the master's, whichever is louder), so the two files differ only
in what the chain changed.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

PREVIEW_S = 30.0
"""Length of the preview excerpt (s)."""


def loudest_window(samples: np.ndarray, sample_rate: int, length_s: float = PREVIEW_S) -> tuple[int, int]:
    """``(start, stop)`` sample indices of the ``length_s`` stretch with the highest mean short-term loudness."""
    from automix.loudness import short_term_loudness

    n = samples.shape[-1]
    length = int(round(length_s * sample_rate))
    if n <= length:
        return 0, n
    times, lufs = short_term_loudness(samples, sample_rate)
    power = 10.0 ** (np.nan_to_num(lufs, nan=-200.0, neginf=-200.0) / 10.0)
    hop = float(times[1] - times[0]) if len(times) > 1 else 0.1
    width = max(1, int(round((length_s - 3.0) / hop)))  # readings whose 3 s window lies in the excerpt
    if len(power) <= width:
        return 0, length
    sums = np.convolve(power, np.ones(width), mode="valid")
    best_end_time = times[int(np.argmax(sums)) + width - 1]  # short-term reading time = end of its window
    stop = min(n, int(round(best_end_time * sample_rate)))
    start = max(0, stop - length)
    return start, start + length


def ab_excerpts(original: np.ndarray | None, master: np.ndarray, sample_rate: int,
                length_s: float = PREVIEW_S, read_original=None) -> tuple[np.ndarray, np.ndarray, float]:
    """Equal-loudness excerpts ``(input, master, gain_db)`` of the master's loudest stretch.

    ``gain_db`` is the level change applied to the louder of the two (negative). Without the
    ``original`` array, ``read_original(start, stop)`` supplies its excerpt (e.g. from its file).
    """
    from automix.loudness import integrated_loudness

    start, stop = loudest_window(master, sample_rate, length_s)
    a = read_original(start, stop) if original is None else np.asarray(original[:, start:stop], dtype=np.float32)
    b = np.asarray(master[:, start:stop], dtype=np.float32)
    la, lb = integrated_loudness(a, sample_rate), integrated_loudness(b, sample_rate)
    diff = float(lb - la) if np.isfinite(la) and np.isfinite(lb) else 0.0
    if diff > 0:
        b = b * np.float32(10 ** (-diff / 20))
    else:
        a = a * np.float32(10 ** (diff / 20))
    return a, b, -abs(diff)


def write_preview(result: Any, folder: str | os.PathLike, stem: str, overwrite: bool = False) -> list[Path]:
    """Write ``<stem>.preview-A-input.wav`` and ``<stem>.preview-B-master.wav`` (24-bit) into ``folder``."""
    from automix.audio import write_audio

    folder = Path(folder)
    read_original = None
    if result.input_samples is None:  # mastered in place (a long file): the input excerpt comes from its file
        from automix.mastering.master import read_into

        def read_original(start: int, stop: int) -> np.ndarray:
            return read_into(Path(result.input_path), np.empty((2, stop - start), np.float32), start=start)

    a, b, _ = ab_excerpts(result.input_samples, result.samples, result.sample_rate, read_original=read_original)
    return [write_audio(folder / f"{stem}.preview-A-input.wav", a, result.sample_rate, subtype="FLOAT",
                        overwrite=overwrite),
            write_audio(folder / f"{stem}.preview-B-master.wav", b, result.sample_rate, subtype="FLOAT",
                        overwrite=overwrite)]
