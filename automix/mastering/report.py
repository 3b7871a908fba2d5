"""Mastering report: JSON (before/after metrics, the settings used, warnings) and a PNG plot.

The plot shows the level-normalised 1/6-octave spectra of the input, the master and the
reference, the EQ that was applied, and the short-term loudness of input and master.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from automix.errors import OutputExistsError


def atomic_write_bytes(path: Path, data: bytes, overwrite: bool) -> Path:
    """Write ``data`` to ``path`` via a temporary file + :func:`os.replace` (refuses to replace unless ``overwrite``)."""
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: already exists (use --overwrite to replace it)")
    from automix.outputs import write_bytes_atomic

    return write_bytes_atomic(path, data)


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
        "loudness_stage": loudness_stage_dict(result.landing),
        "settings": s.values_dict(),
        "settings_readable": describe_settings(s),
        "fine_correction": None if s.fine_db is None else {
            "freqs_hz": [round(float(f), 2) for f in s.fine_freqs_hz],
            "gain_db": [round(float(g), 3) for g in s.fine_db]},
        "reference_profile": result.reference.to_dict() if result.reference is not None else None,
        "warnings": list(result.warnings),
    }


def loudness_stage_dict(landing: Any) -> dict:
    """Clipper, limiter and distortion figures of the loudness landing (dB; residuals per
    :mod:`automix.mastering.distortion`, None where not measured)."""
    def residual(r: Any) -> dict | None:
        return None if r is None else {"overall_db": round(r.overall_db, 2), "loudest_10pct_db": round(r.loud_db, 2)}

    return {"clipper_threshold_db_above_ceiling": landing.clip_db,
            "clip_reduction_db": round(landing.clip_reduction_db, 3),
            "limiter_gain_reduction_db": round(landing.max_gain_reduction_db, 3),
            "distortion": residual(landing.distortion),
            "asked_lufs": None if landing.asked_lufs is None else round(landing.asked_lufs, 2),
            "distortion_at_asked_lufs": residual(landing.asked_distortion),
            "full_renders": landing.renders,
            "excerpt_share": None if landing.excerpt_share is None else round(landing.excerpt_share, 3)}


def plot_report(result: Any, path: Path, overwrite: bool = False) -> Path:
    """Write the PNG (:func:`automix.plots.plot_spectra_and_loudness`): level-normalised 1/6-octave
    spectra of input, master and reference with the fine correction curve; short-term loudness
    of input and master with the target."""
    from automix.loudness import short_term_loudness
    from automix.mastering.profile import normalised
    from automix.plots import Series, plot_spectra_and_loudness

    spectra = []
    for prof, label, style in ((result.input_profile, "input", "C0"), (result.output_profile, "master", "C3"),
                               (result.reference, "reference", "k--")):
        if prof is not None:
            spectra.append(Series(label, prof.freqs_hz, normalised(prof.total_db, prof.freqs_hz), style))
    s = result.settings
    if s.fine_db is not None:
        spectra.append(Series("fine correction (dB)", s.fine_freqs_hz, s.fine_db, "C2:"))
    loudness = []
    for samples, label, style in ((result.input_samples, "input", "C0"), (result.samples, "master", "C3")):
        if samples is not None:
            times, lufs = short_term_loudness(samples, result.sample_rate)
            loudness.append(Series(label, times, lufs, style))
    return plot_spectra_and_loudness(
        path, spectra, loudness, title=f"automix master: target {result.target_lufs:.1f} LUFS",
        loudness_lines=[("target", result.target_lufs)],
        spectrum_title="Long-term spectrum (1/6 octave, level-normalised)",
        spectrum_ylabel="Level, normalised (dB)", spectrum_ylim=(-40.0, 20.0), overwrite=overwrite)


def write_report(result: Any, folder: str | os.PathLike, stem: str, input_path: Path | None = None,
                 reference_paths: Sequence[Path] = (), overwrite: bool = False) -> list[Path]:
    """Write ``<folder>/<stem>.report.json`` and ``<folder>/<stem>.report.png``; returns both paths."""
    folder = Path(folder)
    data = report_dict(result, input_path, reference_paths)
    json_path = atomic_write_bytes(folder / f"{stem}.report.json",
                              (json.dumps(data, indent=2, allow_nan=False) + "\n").encode(), overwrite)
    png_path = plot_report(result, folder / f"{stem}.report.png", overwrite)
    return [json_path, png_path]
