"""``automix studio``: a local web page to hear, compare (A/B/C at equal loudness), refine and export a mix."""
from __future__ import annotations

import argparse
import sys

EPILOG = """\
examples:
  automix studio song/                         # open http://127.0.0.1:8765/ for song/
  automix studio song/ --reference rough.wav   # also A/B against a reference, master to it
  automix studio song/ --port 0 --no-open      # any free port, print the address only

The stems are loaded and the model runs once; the page then re-renders a 30 s preview
region on every edit (only the stems that changed). Exports (settings for 'automix
render', mix, processed stems, REAPER session, master) go to SONG_DIR/automix-studio/
unless --out says otherwise. Ctrl-C stops the server.
"""


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "studio", help="local web page to hear, A/B, refine and export the suggested mix",
        description="Serve a page (on this machine only, by default) with one channel strip per stem, "
                    "initialised from the model's suggestion; A/B/C the raw sum, the suggestion, your "
                    "edit and a reference at equal loudness, and export the result.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("song", metavar="SONG_DIR", help="folder of stems (wav, flac, aiff, ogg, mp3)")
    parser.add_argument("--reference", default=None, metavar="REF",
                        help="a reference mix: a fourth A/B version, followed by the model and the master")
    parser.add_argument("--port", type=int, default=None, metavar="N",
                        help="port to listen on (default 8765; 0 = any free port)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--model", default=None, metavar="PATH",
                        help="mix-model checkpoint (default: the shipped models/mixer.pt)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="folder for exports (default SONG_DIR/automix-studio)")
    parser.add_argument("--target", default=None, metavar="PLATFORM",
                        help="loudness target of the master toggle and export without a reference "
                             "(default spotify, -14 LUFS)")
    parser.add_argument("--preview-seconds", type=float, default=30.0, metavar="S",
                        help="length of the preview region (default 30)")
    parser.add_argument("--sample-rate", type=int, default=None, metavar="HZ",
                        help="work at this rate (default: the stems' most common rate)")
    parser.add_argument("--no-open", action="store_true", help="do not open a browser")
    return parser


def run(args: argparse.Namespace) -> int:
    from automix.studio.server import DEFAULT_PORT, bind, is_loopback, serve

    port = DEFAULT_PORT if args.port is None else args.port
    bind(args.host, port).close()  # a taken port is reported before the stems are read
    if not is_loopback(args.host):
        print(f"automix: warning: listening on {args.host}: anyone who can reach this machine can use "
              "the studio and write into its output folder", file=sys.stderr)
    from automix.studio.session import StudioSession

    print(f"studio: loading {args.song} ...", flush=True)
    session = StudioSession.open(args.song, reference=args.reference, model=args.model, out_dir=args.out,
                                 master_target=args.target, preview_seconds=args.preview_seconds,
                                 sample_rate=args.sample_rate)
    for note in session.notes:
        print(f"note: {note}", file=sys.stderr)

    def announce(url: str) -> None:
        print(f"studio: {len(session.stems.files)} stems, exports to {session.out_dir}", flush=True)
        print(f"studio: open {url}  (Ctrl-C stops)", flush=True)

    def log(line: str) -> None:
        print(f"studio: {line}", flush=True)

    serve(session, args.host, port, open_browser=not args.no_open, announce=announce, log=log)
    print("studio: stopped", flush=True)
    return 0
