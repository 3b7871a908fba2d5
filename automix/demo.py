"""The shipped example session: mix and master the example multitrack into one folder.

``automix demo`` runs :func:`run_demo`; it is the README's first command, so it shows the
whole product on real (MIDI-rendered) stems: the mix model's settings, the rendered mix,
per-stem outputs, a REAPER session of them, a master at a streaming target, the mastering
report and a plot of the settings.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from automix.errors import AutomixError, OutputExistsError

#: Folder of shipped example multitracks (one sub-folder per song).
EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"


def example_song(name: str | None = None) -> Path:
    """Folder of a shipped example song (the first one, by name order, when ``name`` is None)."""
    songs = sorted(p for p in EXAMPLES_DIR.iterdir() if p.is_dir()) if EXAMPLES_DIR.is_dir() else []
    if not songs:
        raise AutomixError(f"no example songs found in {EXAMPLES_DIR}; is the package installed completely?")
    if name is None:
        return songs[0]
    for song in songs:
        if song.name == name:
            return song
    raise AutomixError(f"no example song {name!r}; available: {', '.join(s.name for s in songs)}")


@dataclass
class DemoResult:
    """Where the demo wrote its files and what it measured."""

    folder: Path
    mix_path: Path
    master_path: Path
    settings_paths: list[Path]
    stems_dir: Path
    report_dir: Path
    mix_report: object


def run_demo(output_dir: str | Path = "automix-demo", *, song: str | None = None, target: str = "spotify",
             model: str | Path | None = None, overwrite: bool = False, progress: bool = False) -> DemoResult:
    """Mix the example stems with the shipped model and master the mix to ``target``.

    Parameters
    ----------
    output_dir : path
        Folder for everything (created; existing files in it are kept unless ``overwrite``).
    song : str, optional
        Example song name (default: the first shipped one).
    target : str
        Mastering loudness preset or LUFS number (default ``"spotify"``, -14 LUFS).
    model : path, optional
        Mix-model checkpoint (default: the shipped ``models/mixer.pt``).
    overwrite : bool
        Replace files from an earlier demo run.

    Returns
    -------
    DemoResult
    """
    from automix.mixing import mix
    from automix.settings_io import save_settings

    folder = Path(output_dir)
    if folder.exists() and not folder.is_dir():
        raise OutputExistsError(f"{folder} exists and is not a folder; choose another output folder")
    folder.mkdir(parents=True, exist_ok=True)
    stems_in = example_song(song)
    mix_path = folder / "mix.wav"
    master_path = folder / "master.wav"
    stems_dir = folder / "stems"
    report_dir = folder / "report"
    yaml_path = folder / "settings.yaml"
    if yaml_path.exists() and not overwrite:
        raise OutputExistsError(f"{yaml_path} already exists; pass --overwrite to replace the earlier demo")
    report = mix(stems_in, mix_path, model=model, stems_out=stems_dir, settings_out=folder / "settings.json",
                 master={"output": master_path, "target": target, "report_dir": report_dir},
                 session_out=folder / "session.RPP", plot_out=report_dir / "settings.png",
                 overwrite=overwrite, progress=progress)
    save_settings(yaml_path, report.settings, overwrite=overwrite)
    return DemoResult(folder, mix_path, master_path, [folder / "settings.json", yaml_path], stems_dir,
                      report_dir, report)
