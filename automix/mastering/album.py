"""Album mode: several tracks mastered to one loudness and one tone.

Every track is matched to the same target profile -- the references' combination when
given, otherwise the album's own average tone and width (each track is pulled towards
what the album sounds like as a whole) -- and lands on the same integrated loudness, so
the tracks play back at one level (spread within 0.2 LU).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from automix.errors import SettingsError
from automix.mastering.master import (DEFAULT_TARGET, MasteringOptions, MasterResult, _as_paths, _load,
                                      _options_from_kwargs, _stereo, _write_master, check_signal, master_audio,
                                      SUBTYPES)
from automix.mastering.presets import target_lufs as preset_lufs
from automix.mastering.profile import analyze_profile, combine_profiles


@dataclass
class AlbumResult:
    """Results of :func:`master_album`, one per track, and the shared target."""

    tracks: list[MasterResult]
    target_lufs: float
    warnings: list[str] = field(default_factory=list)

    @property
    def loudness_spread_lu(self) -> float:
        """Largest minus smallest integrated loudness of the masters (LU)."""
        values = [t.integrated_lufs for t in self.tracks]
        return max(values) - min(values) if values else 0.0


def master_album_audio(tracks: Sequence[tuple[Any, int]], references: Sequence[tuple[Any, int]] = (),
                       options: MasteringOptions | None = None, names: Sequence[str] | None = None,
                       progress: bool = False) -> AlbumResult:
    """Master arrays ``[(samples, sample_rate), ...]`` to one loudness and tone (see the module doc)."""
    options = options or MasteringOptions()
    options.validate()
    names = list(names) if names is not None else [f"track {i + 1}" for i in range(len(tracks))]
    if len(tracks) < 1:
        raise SettingsError("album mode needs at least one track")
    warnings: list[str] = []
    profiles = []
    for i, (r, rate) in enumerate(references):
        warnings += check_signal(r, rate, f"reference {i + 1}")
        profiles.append(analyze_profile(_stereo(r), rate, name=f"reference {i + 1}"))
    if profiles:
        target_profile = combine_profiles(profiles, options.reference_weights)
    else:
        own = []
        for (x, rate), name in zip(tracks, names):
            check_signal(x, rate, name)
            own.append(analyze_profile(_stereo(x), rate, name=name))
        target_profile = combine_profiles(own)
    if options.target is not None:
        target = preset_lufs(options.target)
    elif profiles:
        target = float(target_profile.integrated_lufs)
    else:
        target = preset_lufs(DEFAULT_TARGET)
    opts = MasteringOptions(**{**options.__dict__, "target": target})
    results = []
    items = list(zip(tracks, names))
    if progress:
        from tqdm import tqdm
        items = tqdm(items, desc="album", unit="track")
    for (x, rate), name in items:
        results.append(master_audio(x, rate, (), opts, name=name, reference_profile=target_profile))
    return AlbumResult(tracks=results, target_lufs=target, warnings=warnings)


def master_album(mixes: Sequence[str | os.PathLike], output_dir: str | os.PathLike, *, reference: Any = None,
                 options: MasteringOptions | None = None, bit_depth: str = "24", dither: bool = True,
                 suffix: str = ".master", extension: str | None = None, report_dir: str | os.PathLike | None = None,
                 overwrite: bool = False, progress: bool = False, **kwargs: Any) -> AlbumResult:
    """Master files ``mixes`` as one album into ``output_dir`` (``<name><suffix><ext>``).

    Parameters as :func:`automix.mastering.master`; ``extension`` (".wav", ".flac") defaults
    to each input's own when writable, else ".wav".
    """
    from automix.audio import WRITE_FORMATS, check_output_path

    opts = _options_from_kwargs(options, kwargs)
    opts.validate()
    subtype = SUBTYPES.get(str(bit_depth))
    if subtype is None:
        raise SettingsError(f"bit depth {bit_depth!r} is not one of 16, 24, 32f")
    paths = [Path(m) for m in mixes]
    ref_paths = _as_paths(reference)
    out_dir = Path(output_dir)
    outputs = []
    for p in paths:
        ext = extension or (p.suffix.lower() if p.suffix.lower() in WRITE_FORMATS else ".wav")
        outputs.append(check_output_path(out_dir / f"{p.stem}{suffix}{ext}", overwrite=overwrite,
                                         inputs=[*paths, *ref_paths]))
    if len(set(outputs)) != len(outputs):
        raise SettingsError("two album tracks would be written to the same file name; rename the inputs")
    album = master_album_audio([_load(p) for p in paths], [_load(p) for p in ref_paths], opts,
                               names=[p.name for p in paths], progress=progress)
    for result, out, src in zip(album.tracks, outputs, paths):
        result.output_path = _write_master(result, out, subtype, dither, opts, overwrite, [*paths, *ref_paths])
        if report_dir is not None:
            from automix.mastering.report import write_report
            result.report_paths = write_report(result, report_dir, stem=out.stem, input_path=src,
                                               reference_paths=ref_paths, overwrite=overwrite)
    return album
