"""``automix analyze``: loudness, peaks, stereo image and spectrum of audio files."""
from __future__ import annotations

import argparse
import sys

EPILOG = """\
examples:
  automix analyze master.wav
      one line per measurement (integrated loudness, LRA, true peak, PLR, ...) and
      the warnings a mastering engineer would give (clipping, DC offset, true peak
      above -1 dBTP, mono-compatibility)
  automix analyze mix.wav master.wav --plot compare.png
      both files, plus one picture of their spectra and loudness over time
  automix analyze *.flac --json > metrics.json
      the same numbers for scripts (unmeasurable values are null)

Loudness follows ITU-R BS.1770-4 / EBU R 128 (LUFS; LRA per EBU Tech 3342); true
peak is 4x oversampled (dBTP). Mono files are measured as mono. Files that cannot
be analysed (missing, damaged, silent...) are reported on one line each and make
the command exit with status 2; the other files are still analysed.
"""


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "analyze", help="measure loudness, peaks, stereo image and spectrum of audio files",
        description="Measure audio files the way a mastering engineer does: integrated, short-term "
                    "and momentary loudness, loudness range, true and sample peak, PLR, crest factor, "
                    "stereo correlation, side/mid balance, DC offset, clipping and the 1/3-octave "
                    "spectrum, with warnings for common problems.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio files (WAV, FLAC, AIFF, OGG, MP3)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--plot", metavar="OUT.png", help="write spectra and short-term loudness of all files to a PNG")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --plot file")
    parser.add_argument("--downmix", action="store_true",
                        help="fold files with more than two channels to stereo instead of refusing them")
    return parser


def analyze_file(path: str, downmix: bool = False):
    """Load ``path`` (as mono or stereo), reject silence, and measure it."""
    from automix.audio import check_not_silent, load_audio
    from automix.loudness import analyze

    audio = load_audio(path, mono_to_stereo=False, downmix=downmix)
    check_not_silent(audio)
    return analyze(audio.samples, audio.sample_rate, peak=audio.peak)


def run(args: argparse.Namespace) -> int:
    import json

    from automix.errors import AudioError

    if args.plot:  # fail before the work, not after it
        from automix.audio import check_output_path

        check_output_path(args.plot, overwrite=args.overwrite, inputs=args.files)
    results = []
    failed = False
    for path in args.files:
        try:
            results.append((path, analyze_file(path, downmix=args.downmix)))
        except AudioError as exc:
            print(f"automix: error: {exc}", file=sys.stderr)
            failed = True
    if args.json:
        print(json.dumps([{"file": path, **m.to_dict()} for path, m in results], indent=2, allow_nan=False))
    else:
        for i, (path, m) in enumerate(results):
            if i:
                print()
            print(f"== {path}")
            for line in m.table():
                print(f"  {line}")
            if m.warnings:
                print("  Warnings:")
                for warning in m.warnings:
                    print(f"    ! {warning}")
            else:
                print("  No problems found.")
    if args.plot and results:
        from pathlib import Path

        from automix.plots import Series, plot_spectra_and_loudness

        names = [Path(p).name for p, _ in results]
        plot_spectra_and_loudness(
            args.plot,
            spectra=[Series(n, m.spectrum_hz, m.spectrum_db) for n, (_, m) in zip(names, results)],
            loudness=[Series(n, m.short_term_times_s, m.short_term_lufs) for n, (_, m) in zip(names, results)],
            loudness_lines=[(f"{n} integrated", m.integrated_lufs) for n, (_, m) in zip(names, results)],
            title="automix analyze: " + ", ".join(names),
            overwrite=args.overwrite, inputs=args.files,
        )
        if not args.json:
            print(f"\nplot written to {args.plot}")
    return 2 if failed else 0
