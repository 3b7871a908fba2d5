"""``automix suggest``: the model's settings per stem as a table, JSON and YAML (no audio written)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from automix.cli.mix_options import add_model, add_refine_outputs, add_stems, group_trims

EPILOG = """\
examples:
  automix suggest song/
      print the table and write settings.json and settings.yaml
  automix suggest song/ -o my_song.json --amount 70 --drums -1.5
  automix suggest song/ --session song.RPP --plot settings.png
      open your stems in REAPER with the suggested faders and pans (the EQ, compressor
      and saturation settings are in the project notes) and see the EQ curves
  automix render song/ --settings my_song.yaml -o mix.wav
      after editing the file: render exactly those settings

Table columns: gain (fader, dB), pan (L/C/R, %), hpf (high-pass cutoff), low/high shelf and
peak bands as gain@frequency (dB@Hz, Q = sharpness), compressor (ratio @ threshold,
attack/release ms, make-up dB), saturation (drive dB, wet %). '-' means off.
"""


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "suggest", help="suggest mix settings to refine (table, JSON, YAML, DAW session, plot)",
        description="Let the mix model choose settings for every stem without rendering: prints a "
                    "table in musician units and writes the settings as JSON and YAML for editing.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_stems(parser)
    add_model(parser)
    parser.add_argument("-o", "--output", default="settings.json", metavar="FILE",
                        help="settings file (.json or .yaml); its twin in the other format is written "
                             "next to it (default settings.json + settings.yaml)")
    parser.add_argument("--no-twin", action="store_true", help="write only the file named by -o")
    add_refine_outputs(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace existing settings files")
    return parser


def run(args: argparse.Namespace) -> int:
    from automix.errors import OutputExistsError
    from automix.mixing import plot_settings, suggest, write_session
    from automix.outputs import check_output_folder
    from automix.precompile import compile_in_background, enable_first_run
    from automix.settings_io import format_table, save_settings

    enable_first_run()  # a first run reads the stems without compiling (see automix.precompile)
    out = Path(args.output)
    paths = [out]
    if not args.no_twin:
        twin = ".yaml" if out.suffix.lower() == ".json" else ".json"
        paths.append(out.with_suffix(twin))
    extra = [Path(p) for p in (args.session, args.plot) if p is not None]
    for p in paths + extra:
        if p.exists() and not args.overwrite:
            raise OutputExistsError(f"{p} already exists; pass --overwrite to replace it")
        check_output_folder(p)
    settings, stems = suggest(args.stems, model=args.model, amount_percent=args.amount,
                              group_trims_db=group_trims(args), reference=args.reference,
                              sample_rate=args.sample_rate)
    print(format_table(settings))
    for p in paths:
        save_settings(p, settings, overwrite=args.overwrite, inputs=tuple(stems.paths))
        print(f"settings: {p}")
    if args.session:
        print(f"session: {write_session(args.session, settings, stems, overwrite=args.overwrite)}")
    if args.plot:
        print(f"plot: {plot_settings(args.plot, settings, stems.sample_rate, overwrite=args.overwrite, inputs=tuple(stems.paths))}")
    for note in stems.notes:
        print(f"note: {note}", file=sys.stderr)
    compile_in_background()  # a first run: the kernels it did without compile for the next
    return 0
