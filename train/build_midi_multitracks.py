"""Build real multitracks from MIDI songs: one rendered stem per MIDI channel.

Sources: the ``D_*`` music lumps inside Doom WAD files (Debian ``freedoom``: 67 real songs,
BSD-style licence) or any folder of ``.mid`` files. Each MIDI channel that plays notes becomes
one stem: a copy of the song that keeps every non-note event (tempo, program changes,
controllers, pitch bend of all channels) and only that channel's notes, rendered with a
General MIDI soundfont. The stem is named for its instrument role from the GM program family
(channel 10 is ``drums``), e.g. ``drums.flac``, ``bass.flac``, ``guitar_1.flac``. The mix is
the sum of the stems (the composer's balance).

Output layout (see ``train/data_README.md``)::

    ROOT/<song>/<stem>.flac    44.1 kHz stereo FLAC (24-bit by default)
    ROOT/<song>/mix.flac       sum of the stems
    ROOT/<song>/meta.json      source, channel/program of each stem, renderer, gain

Renderers: ``fluidsynth`` (Debian ``fluidsynth`` + ``fluid-soundfont-gm`` FluidR3_GM.sf2) or the
pure-pip ``tinysoundfont`` synth with pretty_midi's bundled TimGM6mb.sf2. Songs already built
are skipped, so an interrupted build resumes where it stopped.

Examples
--------
    python train/build_midi_multitracks.py --wad /usr/share/games/doom/freedoom2.wad \\
        --out /work/data/midi_mt --max-seconds 120
    python train/build_midi_multitracks.py --midi-dir ~/midi --out ~/data/midi_mt \\
        --renderer tinysoundfont --exclude heldout.txt --jobs 2
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from train.multitrack_layout import (  # noqa: E402
    SongResult,
    align_stems,
    fade_out,
    is_song_done,
    read_name_list,
    safe_name,
    summarize,
    trim_trailing_silence,
    unique_names,
    write_song,
)

SAMPLE_RATE = 44100
DRUM_CHANNEL = 9  # MIDI channel 10, zero-based
FADE_SECONDS = 1.0
TAIL_SECONDS = 2.0
FREEDOOM_WAD_DIRS = ("/usr/share/games/doom",)
FLUIDR3_PATHS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2",)

# General MIDI program families (program // 8) -> instrument role used as the stem name.
GM_FAMILY_ROLES = (
    "piano",        # 0-7 acoustic/electric pianos, harpsichord, clavinet
    "mallets",      # 8-15 chromatic percussion: celesta, glockenspiel, vibraphone, bells
    "organ",        # 16-23
    "guitar",       # 24-31
    "bass",         # 32-39
    "strings",      # 40-47 solo strings, harp, timpani
    "strings",      # 48-55 ensembles, choir, orchestra hit (choir handled below)
    "brass",        # 56-63
    "reed",         # 64-71 saxophones, oboe, clarinet ...
    "flute",        # 72-79 pipes
    "lead_synth",   # 80-87
    "pad",          # 88-95
    "fx",           # 96-103 synth effects
    "ethnic",       # 104-111: named per program, see ETHNIC_NAMES
    "percussion",   # 112-119 percussive: steel drums, taiko, synth drum ...
    "fx",           # 120-127 sound effects
)
CHOIR_PROGRAMS = range(52, 55)  # choir aahs, voice oohs, synth voice
ETHNIC_NAMES = ("sitar", "banjo", "shamisen", "koto", "kalimba", "bagpipe", "fiddle", "shanai")


def role_for(channel: int, program: int) -> str:
    """Instrument role (stem base name) of a MIDI channel playing GM ``program`` (0-127)."""
    if channel == DRUM_CHANNEL:
        return "drums"
    program = max(0, min(127, program))
    if program in CHOIR_PROGRAMS:
        return "choir"
    if 104 <= program < 112:
        return ETHNIC_NAMES[program - 104]
    return GM_FAMILY_ROLES[program // 8]


# --------------------------------------------------------------------------------------------
# WAD files
# --------------------------------------------------------------------------------------------
def read_wad_lumps(path: str | Path) -> list[tuple[str, bytes]]:
    """All lumps of a Doom WAD file as ``(name, data)`` in directory order.

    A WAD starts with a 12-byte header: ``IWAD``/``PWAD``, lump count and directory offset
    (little-endian int32). Each 16-byte directory entry holds offset, size and an 8-byte
    NUL-padded name.
    """
    data = Path(path).read_bytes()
    if len(data) < 12 or data[:4] not in (b"IWAD", b"PWAD"):
        raise ValueError(f"{path} is not a WAD file (no IWAD/PWAD header)")
    count, directory = struct.unpack_from("<ii", data, 4)
    if count < 0 or directory < 12 or directory + 16 * count > len(data):
        raise ValueError(f"{path}: WAD directory out of bounds (truncated file?)")
    lumps = []
    for i in range(count):
        offset, size, raw = struct.unpack_from("<ii8s", data, directory + 16 * i)
        name = raw.split(b"\0", 1)[0].decode("ascii", "replace")
        if offset < 0 or size < 0 or offset + size > len(data):
            raise ValueError(f"{path}: lump {name!r} out of bounds (truncated file?)")
        lumps.append((name, data[offset:offset + size]))
    return lumps


def wad_midi_songs(path: str | Path, prefix: str | None = None) -> dict[str, bytes]:
    """MIDI music lumps (``D_*`` starting with ``MThd``) of a WAD, keyed by song name.

    Song names are ``<prefix>_<lump name without D_>`` in lower case, e.g. ``freedoom2_runnin``;
    ``prefix`` defaults to the WAD file name without extension. Lumps in the MUS format are
    skipped.
    """
    prefix = safe_name(prefix if prefix is not None else Path(path).stem)
    songs = {}
    for name, data in read_wad_lumps(path):
        if name.upper().startswith("D_") and data[:4] == b"MThd":
            songs[f"{prefix}_{safe_name(name[2:])}"] = data
    return songs


def collect_sources(wads: list[str], midi_dirs: list[str]) -> dict[str, bytes]:
    """Song name -> MIDI bytes from the WADs and MIDI folders; identical songs kept once."""
    songs: dict[str, bytes] = {}
    seen: set[str] = set()
    items: list[tuple[str, bytes]] = []
    for wad in wads:
        items.extend(sorted(wad_midi_songs(wad).items()))
    for folder in midi_dirs:
        for p in sorted(Path(folder).rglob("*")):
            if p.suffix.lower() in (".mid", ".midi", ".kar") and p.is_file():
                items.append((safe_name(p.stem), p.read_bytes()))
    for name, data in items:
        digest = hashlib.sha1(data).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        base, k = name, 2
        while name in songs:
            name, k = f"{base}_{k}", k + 1
        songs[name] = data
    return songs


def default_wads() -> list[str]:
    """freedoom1.wad / freedoom2.wad where Debian's ``freedoom`` package installs them."""
    found = []
    for d in FREEDOOM_WAD_DIRS:
        for n in ("freedoom1.wad", "freedoom2.wad"):
            if (Path(d) / n).is_file():
                found.append(str(Path(d) / n))
    return found


# --------------------------------------------------------------------------------------------
# Channel split
# --------------------------------------------------------------------------------------------
NOTE_TYPES = ("note_on", "note_off", "polytouch")


@dataclass
class ChannelInfo:
    """A MIDI channel that plays notes: its first-note program and note count."""

    channel: int
    program: int
    notes: int


def load_midi(data: bytes):
    """Parse MIDI bytes with mido (clipping out-of-range data bytes found in old files)."""
    import io

    import mido

    return mido.MidiFile(file=io.BytesIO(data), clip=True)


def _merged_absolute(midi) -> list[tuple[int, object]]:
    """All messages of all tracks as (absolute tick, message), in playback order."""
    import mido

    events = []
    tick = 0
    for msg in mido.merge_tracks(midi.tracks):
        tick += msg.time
        if msg.type != "end_of_track":
            events.append((tick, msg))
    return events


def channels_used(midi) -> list[ChannelInfo]:
    """Channels with at least one sounding note, with the GM program active at the first note."""
    program = [0] * 16
    first_program: dict[int, int] = {}
    notes: dict[int, int] = {}
    for _, msg in _merged_absolute(midi):
        if msg.type == "program_change":
            program[msg.channel] = msg.program
        elif msg.type == "note_on" and msg.velocity > 0:
            first_program.setdefault(msg.channel, program[msg.channel])
            notes[msg.channel] = notes.get(msg.channel, 0) + 1
    return [ChannelInfo(c, first_program[c], notes[c]) for c in sorted(notes)]


def seconds_to_ticks(midi, seconds: float) -> int:
    """Absolute tick reached at ``seconds`` of playback, following the file's tempo map."""
    tpb = midi.ticks_per_beat
    tempo = 500000  # microseconds per beat, the MIDI default (120 BPM)
    now_s, now_tick = 0.0, 0
    for tick, msg in _merged_absolute(midi):
        if msg.type != "set_tempo":
            continue
        t = now_s + (tick - now_tick) * tempo / (tpb * 1e6)
        if t >= seconds:
            break
        now_s, now_tick, tempo = t, tick, msg.tempo
    return now_tick + int((seconds - now_s) * tpb * 1e6 / tempo)


def channel_midi(midi, channel: int, max_ticks: int | None = None):
    """A type-0 copy of ``midi`` with every non-note event and only ``channel``'s notes.

    Events after ``max_ticks`` (absolute) are dropped; an all-notes-off on ``channel`` ends the
    copy there so no note hangs.
    """
    import mido

    out = mido.MidiFile(type=0, ticks_per_beat=midi.ticks_per_beat)
    track = mido.MidiTrack()
    events = _merged_absolute(midi)
    song_end = max((tick for tick, _ in events), default=0)
    cut = max_ticks is not None and song_end > max_ticks
    last = 0
    for tick, msg in events:
        if cut and tick > max_ticks:
            break
        if msg.type in NOTE_TYPES and msg.channel != channel:
            continue
        track.append(msg.copy(time=tick - last))
        last = tick
    end = max_ticks if cut else song_end  # every copy ends where the (cut) song ends
    if cut:
        track.append(mido.Message("control_change", channel=channel, control=123, value=0,
                                  time=end - last))
        last = end
    track.append(mido.MetaMessage("end_of_track", time=end - last))
    out.tracks.append(track)
    return out


def split_channels(midi, max_seconds: float | None = None) -> dict[int, object]:
    """Channel number -> single-channel MIDI copy (see :func:`channel_midi`) for used channels."""
    max_ticks = seconds_to_ticks(midi, max_seconds) if max_seconds else None
    return {info.channel: channel_midi(midi, info.channel, max_ticks) for info in channels_used(midi)}


# --------------------------------------------------------------------------------------------
# Renderers
# --------------------------------------------------------------------------------------------
def tinysoundfont_path() -> str | None:
    """pretty_midi's bundled TimGM6mb.sf2 (GPL-2), if pretty_midi is installed."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("pretty_midi")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    p = Path(spec.origin).parent / "TimGM6mb.sf2"
    return str(p) if p.is_file() else None


def render_fluidsynth(midi, soundfont: str, sample_rate: int = SAMPLE_RATE, dry: bool = False) -> np.ndarray:
    """Render a MIDI file object with the fluidsynth CLI; returns float32 (2, samples)."""
    import soundfile as sf

    with tempfile.TemporaryDirectory(prefix="automix_fs_") as tmp:
        mid, wav = Path(tmp) / "in.mid", Path(tmp) / "out.wav"
        midi.save(str(mid))
        cmd = ["fluidsynth", "-q", "-n", "-i", "-r", str(sample_rate), "-O", "float", "-T", "wav",
               "-F", str(wav)]
        if dry:
            cmd += ["-R", "0", "-C", "0"]
        cmd += [soundfont, str(mid)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
        data, sr = sf.read(wav, dtype="float32", always_2d=True)
    if sr != sample_rate:
        raise RuntimeError(f"fluidsynth wrote {sr} Hz instead of {sample_rate} Hz")
    return data.T


def render_tinysoundfont(midi, soundfont: str, sample_rate: int = SAMPLE_RATE,
                         tail_seconds: float = TAIL_SECONDS) -> np.ndarray:
    """Render a MIDI file object with tinysoundfont (pure pip); returns float32 (2, samples).

    Events are applied at their exact sample position (rounded); after the last event the synth
    keeps running for ``tail_seconds`` so that releases ring out.
    """
    import tinysoundfont

    synth = tinysoundfont.Synth(samplerate=sample_rate)
    sfid = synth.sfload(soundfont)
    for ch in range(16):
        synth.program_select(ch, sfid, 0, 0, is_drums=(ch == DRUM_CHANNEL))
    chunks: list[np.ndarray] = []
    pos = 0
    now = 0.0

    def advance(to_sample: int) -> None:
        nonlocal pos
        if to_sample > pos:
            buf = synth.generate(to_sample - pos)
            chunks.append(np.frombuffer(bytes(buf), dtype=np.float32).reshape(-1, 2))
            pos = to_sample

    for msg in midi:  # mido yields messages with .time in seconds (tempo map applied)
        now += msg.time
        if msg.is_meta or msg.type == "sysex":
            continue
        advance(int(round(now * sample_rate)))
        ch = msg.channel
        try:
            if msg.type == "note_on" and msg.velocity > 0:
                synth.noteon(ch, msg.note, msg.velocity)
            elif msg.type in ("note_on", "note_off"):
                synth.noteoff(ch, msg.note)
            elif msg.type == "control_change":
                synth.control_change(ch, msg.control, msg.value)
            elif msg.type == "program_change":
                try:
                    synth.program_change(ch, msg.program, is_drums=(ch == DRUM_CHANNEL))
                except RuntimeError:  # preset missing in this soundfont: fall back to bank 0
                    synth.program_change(ch, 0, is_drums=(ch == DRUM_CHANNEL))
            elif msg.type == "pitchwheel":
                synth.pitchbend(ch, msg.pitch + 8192)
        except RuntimeError:
            continue
    advance(pos + int(round(tail_seconds * sample_rate)))
    audio = np.concatenate(chunks, axis=0) if chunks else np.zeros((0, 2), np.float32)
    return np.ascontiguousarray(audio.T)


def pick_renderer(name: str, soundfont: str | None) -> tuple[str, str]:
    """Resolve ``--renderer`` (auto|fluidsynth|tinysoundfont) and its soundfont path."""
    fluid_ok = shutil.which("fluidsynth") is not None
    fluid_sf = soundfont or next((p for p in FLUIDR3_PATHS if Path(p).is_file()), None)
    if name == "auto":
        name = "fluidsynth" if fluid_ok and fluid_sf else "tinysoundfont"
    if name == "fluidsynth":
        if not fluid_ok:
            raise SystemExit("fluidsynth not found: apt-get install --no-install-recommends -y "
                             "fluidsynth fluid-soundfont-gm (or use --renderer tinysoundfont)")
        if not fluid_sf:
            raise SystemExit("no soundfont: install fluid-soundfont-gm or pass --soundfont")
        return name, fluid_sf
    if name == "tinysoundfont":
        try:
            import tinysoundfont  # noqa: F401
        except ImportError:
            raise SystemExit("tinysoundfont missing: pip install --no-deps tinysoundfont") from None
        sf2 = soundfont or tinysoundfont_path()
        if not sf2:
            raise SystemExit("no soundfont: pip install pretty_midi (ships TimGM6mb.sf2) or pass --soundfont")
        return name, sf2
    raise SystemExit(f"unknown renderer {name!r}")


def render(midi, renderer: str, soundfont: str, sample_rate: int = SAMPLE_RATE, dry: bool = False) -> np.ndarray:
    """Render with the named renderer; float32 (2, samples)."""
    if renderer == "fluidsynth":
        return render_fluidsynth(midi, soundfont, sample_rate, dry=dry)
    return render_tinysoundfont(midi, soundfont, sample_rate)


# --------------------------------------------------------------------------------------------
# One song
# --------------------------------------------------------------------------------------------
def render_stems(data: bytes, renderer: str, soundfont: str, *, max_seconds: float | None,
                 sample_rate: int = SAMPLE_RATE, dry: bool = False) -> tuple[dict[str, np.ndarray], dict]:
    """Render every used channel of a MIDI song; returns (stem name -> (2, T) float, meta)."""
    midi = load_midi(data)
    infos = channels_used(midi)
    parts = split_channels(midi, max_seconds)
    names = unique_names(role_for(i.channel, i.program) for i in infos)
    stems = {}
    for name, info in zip(names, infos):
        stems[name] = render(parts[info.channel], renderer, soundfont, sample_rate, dry=dry)
    max_samples = int(round(max_seconds * sample_rate)) if max_seconds else None
    stems = trim_trailing_silence(align_stems(stems, max_samples), sample_rate)
    length = next(iter(stems.values())).shape[-1] if stems else 0
    if max_samples is not None and length >= max_samples:
        fade_out(stems, sample_rate, FADE_SECONDS)  # the song was cut: no hard stop
    meta = {
        "source_kind": "midi",
        "renderer": renderer,
        "soundfont": Path(soundfont).name,
        "dry": dry or renderer == "tinysoundfont",  # tinysoundfont has no reverb/chorus
        "max_seconds": max_seconds,
        "midi_seconds": round(float(midi.length), 3),
        "channels": {n: {"midi_channel": i.channel + 1, "gm_program": i.program, "notes": i.notes}
                     for n, i in zip(names, infos)},
    }
    return stems, meta


def build_song(job: tuple) -> SongResult:
    """Worker: render and write one song unless it is already built."""
    song, data, root, renderer, soundfont, max_seconds, dry, subtype, source = job
    root = Path(root)
    if is_song_done(root, song):
        return SongResult(song, "skipped-existing")
    try:
        stems, meta = render_stems(data, renderer, soundfont, max_seconds=max_seconds, dry=dry)
        meta["source"] = source
        return write_song(root, song, stems, SAMPLE_RATE, meta, subtype=subtype)
    except Exception as exc:  # one bad song must not stop a long build
        return SongResult(song, "failed", message=f"{type(exc).__name__}: {exc}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__[__doc__.index("Examples"):],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--wad", action="append", default=[], help="Doom WAD with D_* MIDI lumps "
                        "(repeatable; default: Debian freedoom1/2.wad when no --midi-dir is given)")
    parser.add_argument("--midi-dir", action="append", default=[], help="folder of .mid files (repeatable)")
    parser.add_argument("--out", required=True, help="dataset root to write ROOT/<song>/...")
    parser.add_argument("--renderer", default="auto", choices=["auto", "fluidsynth", "tinysoundfont"])
    parser.add_argument("--soundfont", default=None, help="GM .sf2 (default FluidR3_GM / TimGM6mb)")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="cut songs after this (s)")
    parser.add_argument("--dry", action="store_true", help="fluidsynth without reverb/chorus")
    parser.add_argument("--bits", type=int, default=24, choices=[16, 24], help="FLAC bit depth")
    parser.add_argument("--include", action="append", default=None,
                        help="build only these songs (names, comma list or a file of names)")
    parser.add_argument("--exclude", action="append", default=None,
                        help="never build these songs (names, comma list or a file of names)")
    parser.add_argument("--limit", type=int, default=None, help="build at most N songs")
    parser.add_argument("--jobs", type=int, default=1, help="parallel songs (CPU is shared)")
    parser.add_argument("--list", action="store_true", help="list song names and exit")
    args = parser.parse_args(argv)

    wads = args.wad or ([] if args.midi_dir else default_wads())
    if not wads and not args.midi_dir:
        raise SystemExit("no MIDI source: pass --wad or --midi-dir (or install Debian freedoom)")
    songs = collect_sources(wads, args.midi_dir)
    include, exclude = read_name_list(args.include), read_name_list(args.exclude)
    unknown = (include | exclude) - set(songs)
    if unknown:
        print(f"warning: unknown song names ignored: {sorted(unknown)}", file=sys.stderr)
    names = [n for n in sorted(songs) if (not include or n in include) and n not in exclude]
    if args.limit is not None:
        names = names[: args.limit]
    if args.list:
        print("\n".join(names))
        return 0
    renderer, soundfont = pick_renderer(args.renderer, args.soundfont)
    source = ", ".join(Path(w).name for w in wads) or ", ".join(args.midi_dir)
    subtype = f"PCM_{args.bits}"
    jobs = [(n, songs[n], args.out, renderer, soundfont, args.max_seconds, args.dry, subtype, source)
            for n in names]
    print(f"{len(jobs)} songs -> {args.out} ({renderer}, {Path(soundfont).name})", flush=True)

    from tqdm import tqdm

    results = []
    t0 = time.time()
    if args.jobs > 1:
        from multiprocessing import Pool

        with Pool(args.jobs) as pool:
            iterator = pool.imap(build_song, jobs)
            for r in tqdm(iterator, total=len(jobs), unit="song", mininterval=5):
                results.append(r)
                tqdm.write(_line(r))
    else:
        for job in tqdm(jobs, unit="song", mininterval=5):
            r = build_song(job)
            results.append(r)
            tqdm.write(_line(r))
    print(f"{summarize(results)} in {time.time() - t0:.0f} s", flush=True)
    return 1 if any(r.status == "failed" for r in results) else 0


def _line(r: SongResult) -> str:
    stems = ",".join(r.stems)
    return f"{r.status:22s} {r.song} {r.seconds:6.1f}s [{stems}] {r.message}".rstrip()


if __name__ == "__main__":
    sys.exit(main())
