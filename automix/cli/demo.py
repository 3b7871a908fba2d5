"""``automix demo``: mix and master the shipped example multitrack into one folder."""
from __future__ import annotations

import argparse
import sys

EPILOG = """\
examples:
  automix demo
      writes automix-demo/: mix.wav, master.wav, stems/, settings.json, settings.yaml, report/
  automix demo -o my-demo --target apple --overwrite
      master to Apple Music's -16 LUFS instead, replacing an earlier run's files

Then listen to automix-demo/mix.wav and master.wav, edit settings.json and re-render with
  automix render automix/examples/<song> --settings automix-demo/settings.json -o edited.wav
"""


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo", help="mix and master the shipped example stems (start here)",
        description="Mix the shipped example multitrack (MIDI-rendered stems stored deliberately out "
                    "of balance) with the shipped mix model, master the mix to a streaming loudness "
                    "target, and write mix, master, per-stem outputs, settings and the mastering "
                    "report into one folder.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output-dir", default="automix-demo", metavar="DIR",
                        help="folder for the results (default: %(default)s)")
    parser.add_argument("--song", default=None, help="example song name (default: the first shipped one)")
    parser.add_argument("--target", default="spotify",
                        help="mastering target: a preset (spotify, apple, youtube, ...) or LUFS (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace files from an earlier demo run")
    return parser


def run(args: argparse.Namespace) -> int:
    from automix.cli.mix_options import print_report
    from automix.demo import run_demo

    result = run_demo(args.output_dir, song=args.song, target=args.target, overwrite=args.overwrite,
                      progress=sys.stderr.isatty())
    print_report(result.mix_report, quiet=False)
    print(f"settings (YAML copy): {result.settings_paths[1]}")
    print(f"report: {result.report_dir}")
    print(f"done: everything is in {result.folder}/")
    return 0
