"""Build the shipped example multitrack ``automix/examples/<song>/`` used by ``automix demo``.

A short excerpt of a freedoom MIDI song (BSD-style licence) is rendered per channel with the
FluidR3_GM soundfont (MIT), like ``build_midi_multitracks.py`` does. The stems are then stored
deliberately OUT of balance, so that the auto-mixer has something to fix: every stem gets a
seeded random gain (uniform in +/-``--gain-range-db``) and a seeded spectral tilt (a first-order
1 kHz crossover: low band ``+tilt/2`` dB, high band ``-tilt/2`` dB). The gains and tilts applied
are written to ``README.txt`` so the composer's balance can be recovered exactly
(``original = stored`` with the low band at ``-gain - tilt/2`` dB and the high band at
``-gain + tilt/2`` dB).

Example
-------
    python train/build_example.py --wad /usr/share/games/doom/freedoom1.wad \\
        --song freedoom1_e1m1 --start 8 --seconds 18 --out automix/examples
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from train.build_midi_multitracks import (  # noqa: E402
    SAMPLE_RATE,
    collect_sources,
    pick_renderer,
    render_stems,
)
from train.multitrack_layout import peak_dbfs  # noqa: E402

CROSSOVER_HZ = 1000.0


def tilt(samples: np.ndarray, tilt_db: float, sample_rate: int, crossover_hz: float = CROSSOVER_HZ) -> np.ndarray:
    """Spectral tilt: low band (1st-order low-pass) ``+tilt_db/2`` dB, the rest ``-tilt_db/2`` dB.

    The two bands are complementary (high = x - low), so ``tilt_db = 0`` returns ``samples``.
    ``samples`` is (channels, samples).
    """
    from scipy.signal import butter, lfilter

    b, a = butter(1, crossover_hz, btype="low", fs=sample_rate)
    low = lfilter(b, a, samples, axis=-1)
    high = samples - low
    return low * 10.0 ** (tilt_db / 40.0) + high * 10.0 ** (-tilt_db / 40.0)


def unbalance(stems: dict[str, np.ndarray], seed: int, gain_range_db: float, tilt_range_db: float,
              sample_rate: int) -> tuple[dict[str, np.ndarray], dict[str, tuple[float, float]]]:
    """Apply seeded random gain (dB) and tilt (dB) per stem, in sorted stem-name order."""
    rng = np.random.default_rng(seed)
    out, applied = {}, {}
    for name in sorted(stems):
        gain_db = float(rng.uniform(-gain_range_db, gain_range_db))
        tilt_db = float(rng.uniform(-tilt_range_db, tilt_range_db))
        out[name] = tilt(stems[name], tilt_db, sample_rate) * 10.0 ** (gain_db / 20.0)
        applied[name] = (round(gain_db, 2), round(tilt_db, 2))
    return out, applied


README = """automix example multitrack: {song}
{underline}

{n} stems, {seconds:.1f} s excerpt (from {start:.1f} s) of the song "{lump}" from Freedoom
({wad}, Debian package freedoom 0.12.1), rendered one MIDI channel per stem with fluidsynth
and the FluidR3_GM General MIDI soundfont (Debian fluid-soundfont-gm).
Rendering: {wetness}.
Format: 44.1 kHz, 16-bit FLAC, {layout}.
Built by train/build_example.py:

    {command}

The stems are stored DELIBERATELY OUT OF BALANCE so that `automix demo` has a real mixing job:
each stem got a seeded random gain (uniform +/-{gain_range:g} dB) and a spectral tilt (uniform
+/-{tilt_range:g} dB: low band below a first-order {crossover:g} Hz crossover raised by tilt/2 dB,
the rest lowered by tilt/2 dB), seed {seed}. Applied on top of the composer's balance:

    stem            gain_db   tilt_db   midi_channel  gm_program
{table}

Undoing these (gain -g dB, tilt -t dB) gives back the composer's balance (the plain sum of the
rendered channels). A common gain of {common_db:+.2f} dB was applied to every stem afterwards
(peak headroom). source.mid is the song's MIDI file, extracted from the WAD.

Licences
--------
- Music: Freedoom, Copyright (c) 2001-2019 Contributors to the Freedoom project. BSD-style
  licence: redistribution and use in source and binary forms, with or without modification,
  are permitted provided that the copyright notice, conditions and disclaimer are retained
  (full text: /usr/share/doc/freedoom/copyright, https://github.com/freedoom/freedoom).
  THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS" AND ANY EXPRESS
  OR IMPLIED WARRANTIES ... ARE DISCLAIMED.
- Soundfont: FluidR3_GM.sf2 by Frank Wen, MIT licence (Debian fluid-soundfont-gm).
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__[__doc__.index("Example"):],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wad", action="append", required=True)
    parser.add_argument("--song", default="freedoom1_e1m1")
    parser.add_argument("--start", type=float, default=8.0, help="excerpt start (s)")
    parser.add_argument("--seconds", type=float, default=18.0, help="excerpt length (s)")
    parser.add_argument("--stems", default=None, help="comma list of stems to keep (default: all)")
    parser.add_argument("--wet", action="store_true", help="keep fluidsynth reverb/chorus (larger files)")
    parser.add_argument("--stereo", action="store_true",
                        help="keep the soundfont's stereo stems (default: mono stems, ~half the size)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--gain-range-db", type=float, default=9.0)
    parser.add_argument("--tilt-range-db", type=float, default=6.0)
    parser.add_argument("--headroom-db", type=float, default=-3.0, help="peak of the stored sum (dBFS)")
    parser.add_argument("--out", default="automix/examples")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)

    songs = collect_sources(args.wad, [])
    if args.song not in songs:
        raise SystemExit(f"song {args.song!r} not in {args.wad}")
    renderer, soundfont = pick_renderer("fluidsynth", None)
    stems, meta = render_stems(songs[args.song], renderer, soundfont,
                               max_seconds=args.start + args.seconds + 1.0, dry=not args.wet)
    a, b = int(round(args.start * SAMPLE_RATE)), int(round((args.start + args.seconds) * SAMPLE_RATE))
    stems = {n: s[:, a:b].astype(np.float64) for n, s in stems.items()}
    if not args.stereo:  # raw recorded stems are mostly mono; placing them is the mixer's job
        stems = {n: s.mean(axis=0, keepdims=True) for n, s in stems.items()}
    if args.stems:
        keep = [s.strip() for s in args.stems.split(",")]
        stems = {n: stems[n] for n in keep}
    stems = {n: s for n, s in stems.items() if peak_dbfs(s) > -50.0}
    fade = int(0.05 * SAMPLE_RATE)  # 50 ms fades: the excerpt starts and stops without clicks
    ramp = np.linspace(0.0, 1.0, fade)
    for s in stems.values():
        s[:, :fade] *= ramp
        s[:, -fade:] *= ramp[::-1]
    out_stems, applied = unbalance(stems, args.seed, args.gain_range_db, args.tilt_range_db, SAMPLE_RATE)
    total = np.sum(list(out_stems.values()), axis=0)
    common_db = args.headroom_db - max(peak_dbfs(total), max(peak_dbfs(s) for s in out_stems.values()))
    g = 10.0 ** (common_db / 20.0)

    import soundfile as sf

    folder = Path(args.out) / args.song
    if folder.exists():
        if not args.overwrite:
            raise SystemExit(f"{folder} exists (pass --overwrite)")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name, s in out_stems.items():
        sf.write(folder / f"{name}.flac", (s * g).T.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
    (folder / "source.mid").write_bytes(songs[args.song])
    channels = meta["channels"]
    table = "\n".join(
        f"    {n:<15s} {applied[n][0]:+7.2f}   {applied[n][1]:+7.2f}   {channels[n]['midi_channel']:>12d}"
        f"  {channels[n]['gm_program']:>10d}" for n in sorted(out_stems))
    wad = next(Path(w).name for w in args.wad if Path(w).stem == args.song.split("_", 1)[0])
    command = ("python train/build_example.py " + " ".join(
        f"--wad {Path(w).name}" for w in args.wad) + f" --song {args.song} --start {args.start:g}"
        f" --seconds {args.seconds:g} --seed {args.seed}" + (" --wet" if args.wet else "") + (" --stereo" if args.stereo else "") + (f" --stems {args.stems}" if args.stems else ""))
    title = f"{args.song}"
    (folder / "README.txt").write_text(README.format(
        song=title, underline="=" * (34 + len(title)), n=len(out_stems), seconds=args.seconds,
        start=args.start, lump="D_" + args.song.split("_", 1)[1].upper(), wad=wad, command=command,
        gain_range=args.gain_range_db, tilt_range=args.tilt_range_db, crossover=CROSSOVER_HZ,
        seed=args.seed, table=table,
        layout="stereo" if args.stereo else "mono (left+right averaged; panning is left to the mixer)",
        wetness="with fluidsynth's reverb and chorus" if args.wet else "dry (no reverb/chorus, like raw recorded stems)", common_db=common_db))
    size = sum(p.stat().st_size for p in folder.iterdir())
    print(f"wrote {folder}: {len(out_stems)} stems, {size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
