"""Options shared by ``automix mix``, ``automix suggest`` and ``automix render`` (argparse only).

Nothing heavy is imported here: parsers must build fast.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

GROUP_HELP = {
    "vocals": "lead and backing vocals",
    "bass": "bass instruments",
    "drums": "kick, snare, cymbals, drum kits and percussion",
    "music": "everything else (guitars, keys, synths, strings...)",
    "fx": "effects and noises",
}


def add_stems(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stems", nargs="+", metavar="STEMS",
                        help="a folder of stems, or stem files (wav, flac, aiff, ogg, mp3; any rate and length)")
    parser.add_argument("--sample-rate", type=int, default=None, metavar="HZ",
                        help="work and write at this rate (default: the stems' most common rate)")


def add_model(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, metavar="PATH",
                        help="mix-model checkpoint (default: the shipped models/mixer.pt)")
    parser.add_argument("--amount", type=float, default=100.0, metavar="PERCENT",
                        help="how far from the untouched stems toward the model's settings, 0-100 (default 100)")
    for group, what in GROUP_HELP.items():
        parser.add_argument(f"--{group}", type=float, default=0.0, metavar="DB",
                            help=f"trim for {what}, dB added to their faders (default 0)")
    parser.add_argument("--reference", default=None, metavar="REF",
                        help="a mix whose balance and tone to follow, best one of this song (a rough mix, another "
                             "section): the faders are fitted to its spectrum (also the mastering reference with --master)")


def read_stems_while_importing(stems, sample_rate: int | None):
    """Read the stems (numpy: :func:`automix.stems_reader.read_stems`) while the mixer's modules
    load on another thread; returns ``(automix.mixing, Stems)``.

    A mix no longer imports torch (the model runs in numpy), so the import left to overlap is
    small; the stems' file reads and compiled decoders run without the GIL, so the two still
    overlap. Numba's own start-up (Python work) is done first.
    """
    import importlib
    import threading

    from automix.audio_kernels import warm_up
    from automix.stems_reader import read_stems

    from automix.precompile import enable_first_run

    enable_first_run()  # a first run mixes without compiling (see automix.precompile)
    warm_up()

    box: dict = {}

    def load() -> None:
        try:
            box["module"] = importlib.import_module("automix.mixing")
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = exc

    loader = threading.Thread(target=load, name="import automix.mixing", daemon=True)
    # the reader gives the GIL back between blocks and needs it again soon after; with
    # Python's default 5 ms switch interval it then waits behind the import's bytecode
    # (measured: 0.3-0.8 s of a 13-stem, 60-s session's read); 0.5 ms while both run
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, 0.0005))
    try:
        loader.start()
        read = read_stems(stems, sample_rate)
        loader.join()
    finally:
        sys.setswitchinterval(interval)
    if "error" in box:
        raise box["error"]
    mixing = box["module"]
    return mixing, mixing.stems_from_audio(read)


def group_trims(args: argparse.Namespace) -> dict[str, float]:
    return {g: float(getattr(args, g)) for g in GROUP_HELP}


def add_outputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", required=True, metavar="MIX",
                        help="mix file to write (.wav or .flac)")
    parser.add_argument("--stems-out", default=None, metavar="DIR",
                        help="also write each processed stem here (same names, 32-bit float WAV); they sum to the mix")
    parser.add_argument("--settings-out", default=None, metavar="FILE",
                        help="save the settings used (.json or .yaml) for 'automix render'")
    add_refine_outputs(parser)
    parser.add_argument("--bit-depth", choices=("16", "24", "float"), default="24",
                        help="sample format of the mix: 16 (dithered), 24 or float (default 24)")
    parser.add_argument("--master", action="store_true",
                        help="also master the mix (to --target, or to --reference when given)")
    parser.add_argument("--target", default=None, metavar="PLATFORM",
                        help="mastering target with --master, e.g. spotify, apple, youtube, cd (default spotify)")
    parser.add_argument("--master-out", default=None, metavar="FILE",
                        help="master file with --master (default: MIX name + '.master' + extension)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no table")


def add_refine_outputs(parser: argparse.ArgumentParser) -> None:
    """Outputs for refining a mix by hand: a DAW session and a plot of the settings."""
    parser.add_argument("--session", default=None, metavar="FILE.RPP",
                        help="also write a REAPER session: one track per stem with the faders and pans set "
                             "(with --stems-out: the processed stems at 0 dB), settings table in the notes")
    parser.add_argument("--plot", default=None, metavar="FILE.png",
                        help="also plot the settings: each stem's EQ curve, its fader and pan")


SUBTYPES = {"16": "PCM_16", "24": "PCM_24", "float": "FLOAT"}


def master_options(args: argparse.Namespace) -> dict | None:
    """Mastering request for :func:`automix.mixing.mix`, or None."""
    from automix.errors import SettingsError

    if not args.master:
        if args.target or args.master_out:
            raise SettingsError("--target and --master-out need --master")
        return None
    out = Path(args.master_out) if args.master_out else Path(args.output).with_name(
        Path(args.output).stem + ".master" + Path(args.output).suffix)
    options: dict = {"output": out}
    if args.reference and not args.target:
        options["reference"] = args.reference
    else:
        options["target"] = args.target or "spotify"
    return options


def print_report(report, quiet: bool) -> None:
    """Where things went, the measured level and every note (silent stems, skipped files...)."""
    from automix.settings_io import format_table

    if not quiet:
        print(format_table(report.settings))
        print()
    print(f"mix: {report.mix_path} ({report.loudness_lufs:.1f} LUFS, peak {report.peak_dbfs:+.1f} dBFS)")
    if report.stems_out:
        print(f"stems: {len(report.stems_out)} files in {report.stems_out[0].parent}")
    if report.settings_path:
        print(f"settings: {report.settings_path}")
    if report.master_path:
        print(f"master: {report.master_path}")
    if getattr(report, "session_path", None):
        print(f"session: {report.session_path}")
    if getattr(report, "plot_path", None):
        print(f"plot: {report.plot_path}")
    for note in report.notes:
        if note not in report.settings.notes:
            print(f"note: {note}", file=sys.stderr)
    for note in report.settings.notes:
        print(f"note: {note}", file=sys.stderr)
