"""``automix mix``: stems in, a balanced mix out (and the settings it chose)."""
from __future__ import annotations

import argparse
import sys

from automix.cli.mix_options import (SUBTYPES, add_model, add_outputs, add_stems, group_trims, master_options,
                                     print_report, read_stems_while_importing)

EPILOG = """\
examples:
  automix mix song/ -o mix.wav
      mix every audio file in song/ with the shipped model
  automix mix song/ -o mix.wav --stems-out mixed_stems/ --settings-out settings.json
      also write the processed stems (they sum to the mix) and the settings, for a DAW
      or for 'automix render'
  automix mix kick.wav snare.wav bass.wav vox.wav -o mix.flac --amount 60 --vocals +2
      60 % of the way from the plain sum to the model's mix, vocals 2 dB up
  automix mix song/ -o mix.wav --stems-out mixed_stems/ --session song.RPP --plot settings.png
      open the mix in REAPER (one track per processed stem) and see the EQ curves,
      faders and pans the model chose
  automix mix song/ -o mix.wav --master --target spotify
      mix, then master to Spotify's loudness (writes mix.master.wav)
  automix mix song/ -o mix.wav --reference favourite.wav --master
      follow a reference mix's balance and tone, and master to match it

Silent stems are left untouched and reported; unreadable files are named and skipped
(the other stems are still mixed). At most 64 stems; stems of different lengths are
aligned at the start and padded, different sample rates are resampled.
"""


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "mix", help="mix stems into a balanced stereo mix",
        description="Mix stems into a balanced stereo mix. The mix model listens to every stem and "
                    "chooses gain, pan, EQ, compression and saturation per stem; the console renders "
                    "the full-length mix. Prints the chosen settings as a table.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_stems(parser)
    add_model(parser)
    add_outputs(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from automix.errors import OutputExistsError
    from automix.outputs import check_output_folder

    if Path(args.output).exists() and not args.overwrite:  # say so before minutes of reading
        raise OutputExistsError(f"{args.output} already exists; pass --overwrite to replace it")
    check_output_folder(args.output)
    mixing, stems = read_stems_while_importing(args.stems, args.sample_rate)
    report = mixing.mix(stems, args.output, model=args.model, amount_percent=args.amount,
                        group_trims_db=group_trims(args), reference=args.reference, stems_out=args.stems_out,
                        settings_out=args.settings_out, sample_rate=args.sample_rate,
                        subtype=SUBTYPES[args.bit_depth], overwrite=args.overwrite, master=master_options(args),
                        session_out=args.session, plot_out=args.plot,
                        progress=not args.quiet and sys.stderr.isatty())
    print_report(report, args.quiet)
    from automix.precompile import compile_in_background

    compile_in_background()  # a first run: the kernels it did without compile for the next
    return 0
