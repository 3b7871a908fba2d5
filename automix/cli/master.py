"""``automix master``: master a mix to a reference track or a delivery loudness target."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

DESCRIPTION = """\
Master a mix: match a reference track's tone, stereo width and loudness (or a platform
loudness target), with a true-peak limiter that never goes above the ceiling.

The chain is: tonal-match EQ (readable parametric bands + a fine correction curve) ->
mid/side width -> (optional bus compression) -> gain -> soft clipper -> true-peak limiter.
The loudness lands within 0.1 LU of the target; if that would push the distortion of the
loudness stage past --max-distortion (or need more than --max-limiting dB of limiting),
automix stops short and says how loud it got and what the rest would cost.
"""

EPILOG = """\
targets (--target): spotify, youtube, tidal, amazon, soundcloud (-14 LUFS), apple (-16),
deezer (-15), broadcast/ebu (-23, EBU R 128), aes (-16, AES TD1008), cd/loud (-9), or a
number in LUFS such as -12.

examples:
  automix master mix.wav -o master.wav --reference favourite.flac
      match a commercial track's tone, width and loudness
  automix master mix.wav -o master.wav --target apple --ceiling -1
      -16 LUFS for Apple Music, peaks at most -1 dBTP
  automix master mix.wav -o master.flac --reference a.wav b.wav --reference-weights 2 1 --eq-amount 70%
      two references (the first counts double), 70 % of the tonal correction
  automix master mix.wav -o master.wav --reference ref.wav --no-limiter --bit-depth 32f
      tone and level only, unlimited float file for your own limiter
  automix master mix.wav -o master.wav --target spotify --report reports/ --preview reports/
      also write a JSON+PNG report and a loudness-matched A/B preview of the loudest 30 s
  automix master a.wav b.wav c.wav -o album/ --album --target -14
      three tracks, one loudness and one tone
"""


def _percent(text: str) -> float:
    raw = text.strip().rstrip("%").strip()
    try:
        value = float(raw) / 100.0
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentage like 70%, got {text!r}") from None
    if not 0.0 <= value <= 2.0:
        raise argparse.ArgumentTypeError(f"{text}: amount must be between 0% and 200%")
    return value


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("master", help="master a mix to a reference or a loudness target",
                              description=DESCRIPTION, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mixes", nargs="+", metavar="MIX", help="mix file(s) to master (WAV, FLAC, AIFF, OGG, MP3)")
    p.add_argument("-o", "--output", required=True,
                   help="output file (one mix) or folder (several mixes / --album; files named NAME.master.EXT)")
    p.add_argument("-r", "--reference", nargs="+", metavar="REF", default=None,
                   help="reference track(s) whose tone, width and loudness to match (any rate, mono or stereo)")
    p.add_argument("--reference-weights", nargs="+", type=float, metavar="W", default=None,
                   help="one weight per reference (default: equal)")
    p.add_argument("-t", "--target", default=None,
                   help="loudness target: a preset name or LUFS (default: the reference's loudness, else spotify)")
    p.add_argument("--ceiling", type=float, default=-1.0, metavar="DBTP", help="true-peak ceiling in dBTP (default -1.0)")
    p.add_argument("--max-limiting", type=float, default=12.0, metavar="DB",
                   help="most limiter gain reduction allowed to reach the target (default 12 dB)")
    p.add_argument("--max-distortion", type=float, default=None, metavar="DB",
                   help="distortion budget of the loudness stage: its non-linear residual in the loudest 10%% of "
                        "the master, relative to it (default -10 dB; higher goes louder, dirtier)")
    p.add_argument("--bass-tone", default="1", metavar="DB",
                   help="on targets of -12 LUFS and louder, the bass boost (below 300 Hz) the tonal match asks is "
                        "limited as far as this much tonal distance allows (default 1 dB; 'none': the full "
                        "match): boosted bass peaks cost clipping")
    p.add_argument("--bit-depth", choices=["16", "24", "32f"], default="24",
                   help="output encoding: 16 (TPDF-dithered), 24 or 32-bit float (default 24)")
    p.add_argument("--no-dither", action="store_true", help="no dither on 16-bit output")
    amounts = p.add_argument_group("amount per stage (0% = off, 100% = full match)")
    amounts.add_argument("--eq-amount", type=_percent, default=1.0, metavar="PCT", help="tonal matching (default 100%%)")
    amounts.add_argument("--width-amount", type=_percent, default=1.0, metavar="PCT", help="stereo width matching")
    amounts.add_argument("--dynamics-amount", type=_percent, default=1.0, metavar="PCT", help="bus compression")
    stages = p.add_argument_group("stages")
    stages.add_argument("--no-eq", action="store_true", help="leave the tone alone")
    stages.add_argument("--no-fine-eq", action="store_true", help="parametric bands only, no fine correction curve")
    stages.add_argument("--no-width", action="store_true", help="leave the stereo width alone")
    stages.add_argument("--dynamics", action="store_true",
                        help="gentle bus compression when the mix is much more dynamic than the reference (off by "
                             "default: it costs more distortion per LU than the clipper)")
    stages.add_argument("--no-dynamics", action="store_true", help=argparse.SUPPRESS)
    stages.add_argument("--no-clipper", action="store_true",
                        help="no soft clipper ahead of the limiter (limiter only: more distortion on loud targets)")
    stages.add_argument("--no-limiter", action="store_true",
                        help="no limiter: level only, written as 32-bit float when it goes above full scale")
    p.add_argument("--model", default="auto", metavar="PATH",
                   help="mastering model that starts the EQ fit (default: the shipped one; 'none' to start flat)")
    p.add_argument("--album", action="store_true", help="master all mixes to one loudness and one tone")
    p.add_argument("--report", metavar="DIR", default=None, help="write NAME.report.json and NAME.report.png here")
    p.add_argument("--preview", metavar="DIR", default=None,
                   help="write a loudness-matched A/B preview (loudest 30 s of input and master) here")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files (never an input)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the result line and warnings")
    return p


def _options(args):
    from automix.mastering import MasteringOptions
    from automix.mastering.landing import MAX_DISTORTION_DB

    budget = MAX_DISTORTION_DB if args.max_distortion is None else args.max_distortion
    return MasteringOptions(target=args.target, ceiling_dbtp=args.ceiling, eq_amount=args.eq_amount,
                            width_amount=args.width_amount, dynamics_amount=args.dynamics_amount,
                            eq=not args.no_eq, fine_eq=not args.no_fine_eq, width=not args.no_width,
                            dynamics=args.dynamics and not args.no_dynamics, clipper=not args.no_clipper,
                            limiter=not args.no_limiter, max_limiting_db=args.max_limiting,
                            max_distortion_db=budget, reference_weights=args.reference_weights,
                            bass_tone_db=_bass_tone(args.bass_tone),
                            model=None if str(args.model).lower() == "none" else args.model)


def _bass_tone(text: str) -> float | None:
    from automix.errors import SettingsError

    if str(text).strip().lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise SettingsError(f"--bass-tone must be a number of dB or 'none', got {text!r}") from None
    if not 0.0 <= value <= 24.0:
        raise SettingsError(f"--bass-tone {value:g} dB must be between 0 and 24 dB")
    return value


def _print(result, quiet: bool) -> None:
    from automix.mastering import describe_settings

    if not quiet:
        for line in describe_settings(result.settings):
            print(f"  {line}")
    print(f"{result.output_path}: {result.integrated_lufs:.1f} LUFS (target {result.target_lufs:.1f}), "
          f"true peak {result.true_peak_dbtp:.2f} dBTP, {_loudness_stage(result.landing)}")
    for path in result.report_paths + result.preview_paths:
        print(f"  wrote {path}")
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)


def _loudness_stage(landing) -> str:
    """"clipping 2.1 dB, limiting 0.8 dB, distortion -15.3 dB" (the last when measured)."""
    parts = []
    if landing.clip_db is not None:
        parts.append(f"clipping {landing.clip_reduction_db:.1f} dB")
    parts.append(f"limiting {landing.max_gain_reduction_db:.1f} dB")
    if landing.distortion is not None:
        parts.append(f"distortion {landing.distortion.loud_db:.1f} dB")
    return ", ".join(parts)


def run(args) -> int:
    from automix.errors import SettingsError
    from automix.mastering import master
    from automix.mastering.album import master_album

    options = _options(args)
    if options.model is not None and str(options.model) != "auto":  # a damaged file is named even when unused
        from automix.mastering.model import load_predictor

        load_predictor(options.model)
    progress = not args.quiet and sys.stderr.isatty()
    dither = not args.no_dither
    if args.album or len(args.mixes) > 1:
        out_dir = Path(args.output)
        if out_dir.suffix and not out_dir.is_dir():
            raise SettingsError(f"{out_dir}: with several mixes, -o must be a folder")
        if args.album:
            album = master_album(args.mixes, out_dir, reference=args.reference, options=options,
                                 bit_depth=args.bit_depth, dither=dither, report_dir=args.report,
                                 overwrite=args.overwrite, progress=progress)
            for w in album.warnings:
                print(f"warning: {w}", file=sys.stderr)
            for result in album.tracks:
                _print(result, args.quiet)
            print(f"album: {len(album.tracks)} tracks at {album.target_lufs:.1f} LUFS "
                  f"(spread {album.loudness_spread_lu:.2f} LU)")
            return 0
        for mix in args.mixes:
            src = Path(mix)
            ext = src.suffix.lower() if src.suffix.lower() in (".wav", ".flac", ".aif", ".aiff") else ".wav"
            result = master(src, out_dir / f"{src.stem}.master{ext}", reference=args.reference,
                            options=_options(args), bit_depth=args.bit_depth, dither=dither,
                            report_dir=args.report, preview_dir=args.preview, overwrite=args.overwrite,
                            progress=progress)
            _print(result, args.quiet)
        return 0
    result = master(args.mixes[0], args.output, reference=args.reference, options=options,
                    bit_depth=args.bit_depth, dither=dither, report_dir=args.report, preview_dir=args.preview,
                    overwrite=args.overwrite, progress=progress)
    _print(result, args.quiet)
    return 0
