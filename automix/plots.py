"""Plots (PNG, no display): analysis spectra over loudness, and suggested mix settings.

General on purpose: any number of labelled spectra and loudness curves (e.g. one per
analysed file, or "mix", "master" and "reference" for a mastering report) plus
labelled horizontal reference lines (a loudness target, -1 dBTP...). matplotlib runs
with the non-interactive Agg backend, so it works on servers without a display.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from automix.audio import check_output_path


@dataclass
class Series:
    """One labelled curve.

    Attributes
    ----------
    label : str
        Legend text.
    x : np.ndarray
        Frequencies (Hz) for a spectrum, times (s) for a loudness curve.
    y : np.ndarray
        Level (dB) for a spectrum, loudness (LUFS) for a curve; non-finite values are gaps.
    style : str or None
        matplotlib format string (``"C3"``, ``"k--"``, ...); ``None``: next colour
        (spectra then get dot markers at their band centres).
    """

    label: str
    x: np.ndarray
    y: np.ndarray
    style: str | None = None


def _finite(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=float)
    return np.where(np.isfinite(y), y, np.nan)


def plot_spectra_and_loudness(
    path: str | os.PathLike,
    spectra: Sequence[Series],
    loudness: Sequence[Series],
    *,
    title: str = "",
    loudness_lines: Sequence[tuple[str, float]] = (),
    spectrum_title: str = "Long-term average spectrum (1/3 octave)",
    spectrum_ylabel: str = "Level (dB re full scale)",
    spectrum_ylim: tuple[float, float] | None = None,
    overwrite: bool = False,
    inputs: Sequence[str | os.PathLike] = (),
) -> Path:
    """Write a two-panel PNG: spectra (log frequency) over loudness curves (time).

    Parameters
    ----------
    path : str or PathLike
        Output ``.png``; written atomically, refused if it exists (unless ``overwrite``)
        or is one of ``inputs``.
    spectra : sequence of Series
        1/3-octave (or any) spectra: ``x`` in Hz, ``y`` in dB.
    loudness : sequence of Series
        Loudness curves: ``x`` in seconds, ``y`` in LUFS.
    title : str
        Figure title.
    spectrum_title, spectrum_ylabel : str
        Spectrum panel title and y label (e.g. for normalised or finer-band spectra).
    spectrum_ylim : (low_db, high_db), optional
        Spectrum panel range; automatic by default.
    loudness_lines : sequence of (label, LUFS)
        Horizontal dashed reference lines on the loudness panel (e.g. integrated
        loudness, a target); line ``i`` takes the colour of curve ``i``.
    overwrite, inputs
        See :func:`automix.audio.check_output_path`.

    Returns
    -------
    Path
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    path = check_output_path(path, overwrite=overwrite, inputs=inputs)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), constrained_layout=True)
    try:
        for s in spectra:
            if s.style is None:
                top.semilogx(s.x, _finite(s.y), marker="o", markersize=3, label=s.label)
            else:
                top.semilogx(s.x, _finite(s.y), s.style, label=s.label)
        top.set_xlabel("Frequency (Hz)")
        top.set_ylabel(spectrum_ylabel)
        top.set_title(spectrum_title)
        if spectrum_ylim is not None:
            top.set_ylim(*spectrum_ylim)
        _frequency_axis(top)

        for s in loudness:
            if s.style is None:
                bottom.plot(s.x, _finite(s.y), label=s.label)
            else:
                bottom.plot(s.x, _finite(s.y), s.style, label=s.label)
        for i, (label, value) in enumerate(loudness_lines):
            if np.isfinite(value):
                bottom.axhline(value, linestyle="--", linewidth=1, color=f"C{i % 10}",
                               label=f"{label} ({value:.1f} LUFS)")
        bottom.set_xlabel("Time (s)")
        bottom.set_ylabel("Short-term loudness (LUFS)")
        bottom.set_title("Loudness over time (3 s window)")
        bottom.grid(True, alpha=0.3)
        for ax in (top, bottom):
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8, loc="best")
        if title:
            fig.suptitle(title)
        _save_png(fig, path)
    finally:
        plt.close(fig)
    return path


def _frequency_axis(ax) -> None:
    """Log frequency axis with octave ticks (31.5 Hz-16 kHz), 16 Hz-22 kHz."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    ticks = [31.5, 63, 125, 250, 500, 1000, 2000, 4000, 8000, 16000]
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticklabels([f"{t / 1000:g}k" if t >= 1000 else f"{t:g}" for t in ticks])
    ax.set_xlim(16, 22000)
    ax.grid(True, which="major", alpha=0.3)


def _save_png(fig, path: Path) -> None:
    """Save ``fig`` as PNG atomically (temp file in the same folder, then rename)."""
    from automix.outputs import atomic_output

    with atomic_output(path, suffix=".tmp.png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")


def plot_mix_settings(
    path: str | os.PathLike,
    names: Sequence[str],
    freqs_hz: np.ndarray,
    eq_db: np.ndarray,
    gain_db: Sequence[float],
    pan: Sequence[float],
    *,
    title: str = "",
    overwrite: bool = False,
    inputs: Sequence[str | os.PathLike] = (),
) -> Path:
    """Write a two-panel PNG of suggested mix settings: EQ curves above, faders and pans below.

    Parameters
    ----------
    path : str or PathLike
        Output ``.png`` (atomic; refused if it exists unless ``overwrite``, or is an input).
    names : sequence of str
        One label per stem.
    freqs_hz : np.ndarray (F,)
        Frequencies of the EQ curves, Hz.
    eq_db : np.ndarray (S, F)
        Each stem's EQ magnitude response, dB.
    gain_db : sequence of float (S,)
        Fader levels, dB.
    pan : sequence of float (S,)
        Pan/balance, -1 (left) .. 1 (right).
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    path = check_output_path(path, overwrite=overwrite, inputs=inputs)
    n = len(names)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 4 + 0.25 * max(n, 8)), constrained_layout=True,
                                      gridspec_kw={"height_ratios": [1.2, max(1.0, 0.12 * n)]})
    try:
        for i, name in enumerate(names):
            top.plot(freqs_hz, _finite(eq_db[i]), color=f"C{i % 10}", label=name,
                     linestyle="-" if i < 10 else "--")
        top.axhline(0.0, color="k", linewidth=0.8)
        _frequency_axis(top)
        top.set_xlabel("Frequency (Hz)")
        top.set_ylabel("EQ gain (dB)")
        top.set_title("Channel EQ per stem (high-pass, shelves, peaks)")
        if n:
            top.legend(fontsize=7, loc="best", ncol=2 if n > 8 else 1)

        rows = np.arange(n)
        gains = np.asarray(gain_db, dtype=float)
        bottom.barh(rows, gains, color=[f"C{i % 10}" for i in range(n)])
        bottom.axvline(0.0, color="k", linewidth=0.8)
        bottom.set_yticks(rows)
        bottom.set_yticklabels(list(names), fontsize=8)
        bottom.invert_yaxis()
        for i, (g, p) in enumerate(zip(gains, pan)):
            side = "C" if abs(p) < 0.005 else f"{'L' if p < 0 else 'R'}{abs(p) * 100:.0f}"
            bottom.annotate(f"{g:+.1f} dB  pan {side}", (g, i), xytext=(4 if g >= 0 else -4, 0),
                            textcoords="offset points", va="center", ha="left" if g >= 0 else "right",
                            fontsize=8)
        span = max(6.0, float(np.abs(gains).max()) + 6.0) if n else 6.0
        bottom.set_xlim(-span, span)
        bottom.set_xlabel("Fader (dB)")
        bottom.set_title("Faders and pans")
        bottom.grid(True, axis="x", alpha=0.3)
        if title:
            fig.suptitle(title)
        _save_png(fig, path)
    finally:
        plt.close(fig)
    return path
