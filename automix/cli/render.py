"""``automix render``: render hand-edited settings (from ``automix suggest``) into a mix."""
from __future__ import annotations

import argparse
import sys

from automix.cli.mix_options import SUBTYPES, add_outputs, add_stems, master_options, print_report

EPILOG = """\
examples:
  automix suggest song/ -o settings.json        # the model's settings, as JSON and YAML
  (edit settings.json or settings.yaml: faders, EQ, compressor...)
  automix render song/ --settings settings.json -o mix.wav
  automix render song/ --settings settings.yaml -o mix.wav --stems-out stems/ --master

Settings are matched to stems by file name and checked against the console's ranges;
a value out of range is reported with its name, range and unit. Missing values keep
their neutral default (processor off).
"""


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "render", help="render edited settings into a mix",
        description="Render stems through the console with settings from a JSON or YAML file "
                    "(as written by 'automix suggest' or 'automix mix --settings-out', then edited).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_stems(parser)
    parser.add_argument("--settings", required=True, metavar="FILE", help="settings file (.json, .yaml, .yml)")
    parser.add_argument("--reference", default=None, metavar="REF", help="mastering reference with --master")
    add_outputs(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from automix.errors import OutputExistsError
    from automix.mixing import mix
    from automix.outputs import check_output_folder
    from automix.precompile import compile_in_background, enable_first_run
    from automix.settings_io import load_settings

    enable_first_run()  # a first run renders without compiling (see automix.precompile)
    settings = load_settings(args.settings)  # validate before reading any audio
    if Path(args.output).exists() and not args.overwrite:
        raise OutputExistsError(f"{args.output} already exists; pass --overwrite to replace it")
    check_output_folder(args.output)
    report = mix(args.stems, args.output, settings=args.settings, stems_out=args.stems_out,
                 settings_out=args.settings_out, sample_rate=args.sample_rate or settings.sample_rate,
                 subtype=SUBTYPES[args.bit_depth], overwrite=args.overwrite, master=master_options(args),
                 session_out=args.session, plot_out=args.plot, progress=not args.quiet and sys.stderr.isatty())
    print_report(report, args.quiet)
    compile_in_background()  # a first run: the kernels it did without compile for the next
    return 0
