"""Mastering report: JSON (before/after metrics, the settings used, warnings) and a PNG plot.

The plot shows the level-normalised 1/6-octave spectra of the input, the master and the
reference, the EQ that was applied, and the short-term loudness of input and master.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from automix.errors import OutputExistsError


def atomic_write_bytes(path: Path, data: bytes, overwrite: bool) -> Path:
    """Write ``data`` to ``path`` via a temporary file + :func:`os.replace` (refuses to replace unless ``overwrite``)."""
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: already exists (use --overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def report_dict(result: Any, input_path: Path | None = None, reference_paths: Sequence[Path] = ()) -> dict:
    """JSON-ready description of a :class:`~automix.mastering.master.MasterResult`."""
    from automix.loudness import analyze
    from automix.mastering.master import describe_settings

    before = analyze(result.input_samples, result.sample_rate) if result.input_samples is not None else None
    after = analyze(result.samples, result.sample_rate)
    s = result.settings
    return {
        "input": str(input_path) if input_path else None,
        "output": str(result.output_path) if result.output_path else None,
        "references": [str(p) for p in reference_paths],
        "sample_rate": result.sample_rate,
        "target_lufs": round(result.target_lufs, 3),
        "reached_target": bool(result.landing.reached),
        "before": before.to_dict() if before is not None else None,
        "after": after.to_dict(),
        "limiter": {"max_gain_reduction_db": round(result.landing.max_gain_reduction_db, 3),
                    "drive_db": round(result.landing.drive_db, 3),
                    "iterations": result.landing.iterations},
        "settings": s.values_dict(),
        "settings_readable": describe_settings(s),
        "fine_correction": None if s.fine_db is None else {
            "freqs_hz": [round(float(f), 2) for f in s.fine_freqs_hz],
            "gain_db": [round(float(g), 3) for g in s.fine_db]},
        "reference_profile": result.reference.to_dict() if result.reference is not None else None,
        "warnings": list(result.warnings),
    }


def plot_report(result: Any, path: Path, overwrite: bool = False) -> Path:
    """Write the PNG: spectra (input, master, reference, applied EQ) and short-term loudness."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from automix.loudness import short_term_loudness
    from automix.mastering.profile import normalised

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 8))
    inp, out, ref = result.input_profile, result.output_profile, result.reference
    for prof, label, style in ((inp, "input", "C0"), (out, "master", "C3"), (ref, "reference", "k--")):
        if prof is None:
            continue
        ax1.semilogx(prof.freqs_hz, normalised(prof.total_db, prof.freqs_hz), style, label=label)
    s = result.settings
    if s.fine_db is not None:
        ax1.semilogx(s.fine_freqs_hz, s.fine_db, "C2:", label="fine correction (dB)")
    ax1.set_xlim(20, 20000)
    ax1.set_ylim(-40, 20)
    ax1.set_xlabel("frequency (Hz)")
    ax1.set_ylabel("level, normalised (dB)")
    ax1.set_title("Long-term spectrum (1/6 octave)")
    ax1.grid(True, which="both", alpha=0.3)
    ax1.legend(loc="lower left")
    for samples, label, style in ((result.input_samples, "input", "C0"), (result.samples, "master", "C3")):
        if samples is None:
            continue
        times, lufs = short_term_loudness(samples, result.sample_rate)
        ax2.plot(times, lufs, style, label=label)
    ax2.axhline(result.target_lufs, color="k", linestyle="--", label=f"target {result.target_lufs:.1f} LUFS")
    ax2.set_xlabel("time (s)")
    ax2.set_ylabel("short-term loudness (LUFS)")
    ax2.grid(True, alpha=0.3)
    ax2.legend(loc="lower right")
    fig.tight_layout()
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue(), overwrite)


def write_report(result: Any, folder: str | os.PathLike, stem: str, input_path: Path | None = None,
                 reference_paths: Sequence[Path] = (), overwrite: bool = False) -> list[Path]:
    """Write ``<folder>/<stem>.report.json`` and ``<folder>/<stem>.report.png``; returns both paths."""
    folder = Path(folder)
    data = report_dict(result, input_path, reference_paths)
    json_path = atomic_write_bytes(folder / f"{stem}.report.json",
                              (json.dumps(data, indent=2, allow_nan=False) + "\n").encode(), overwrite)
    png_path = plot_report(result, folder / f"{stem}.report.png", overwrite)
    return [json_path, png_path]
