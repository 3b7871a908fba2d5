"""Data builders: WAD parsing, MIDI channel split, per-channel rendering, LMMS selection,
song-folder writing, and the shipped example multitrack."""

from __future__ import annotations

import io
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from train import build_lmms_multitracks as lmms  # noqa: E402
from train import multitrack_layout as layout  # noqa: E402

mido = pytest.importorskip("mido")  # noqa: E402  (a test dependency; see pyproject)
from train import build_midi_multitracks as bmm  # noqa: E402

SR = 44100
EXAMPLE = ROOT / "automix" / "examples" / "freedoom1_e1m1"


# ------------------------------------------------------------------------------ helpers
def make_wad(lumps: list[tuple[str, bytes]], kind: bytes = b"IWAD") -> bytes:
    """A WAD file: header, lump data, directory at the end."""
    body = b""
    entries = []
    for name, data in lumps:
        entries.append((12 + len(body), len(data), name.encode("ascii").ljust(8, b"\0")))
        body += data
    directory = b"".join(struct.pack("<ii8s", *e) for e in entries)
    return kind + struct.pack("<ii", len(lumps), 12 + len(body)) + body + directory


def two_channel_midi(seconds: float = 2.0, tpb: int = 480) -> "mido.MidiFile":
    """Bass (program 33, channel 1) low notes and piano (program 0, channel 2) high notes,
    a tempo change half way, a program change on an unused channel, a controller per channel."""
    mid = mido.MidiFile(type=1, ticks_per_beat=tpb)
    meta = mido.MidiTrack([
        mido.MetaMessage("set_tempo", tempo=500000, time=0),  # 120 BPM
        mido.MetaMessage("set_tempo", tempo=400000, time=2 * tpb),  # 150 BPM after 1 s
        mido.MetaMessage("end_of_track", time=0),
    ])
    bass = mido.MidiTrack([mido.Message("program_change", channel=0, program=33, time=0),
                           mido.Message("control_change", channel=0, control=7, value=100, time=0)])
    piano = mido.MidiTrack([mido.Message("program_change", channel=1, program=0, time=0),
                            mido.Message("control_change", channel=1, control=10, value=30, time=0),
                            mido.Message("program_change", channel=5, program=40, time=0)])
    beats = int(seconds * 2)  # roughly one note per beat
    for track, ch, notes in ((bass, 0, (36, 43)), (piano, 1, (72, 76, 79))):
        for i in range(beats):
            n = notes[i % len(notes)]
            track.append(mido.Message("note_on", channel=ch, note=n, velocity=100, time=0))
            track.append(mido.Message("note_off", channel=ch, note=n, velocity=0, time=tpb))
        track.append(mido.MetaMessage("end_of_track", time=0))
    mid.tracks.extend([meta, bass, piano])
    return mid


def midi_bytes(mid) -> bytes:
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


def absolute(mid) -> list[tuple[int, object]]:
    tick, out = 0, []
    for msg in mido.merge_tracks(mid.tracks):
        tick += msg.time
        out.append((tick, msg))
    return out


def db(x: float) -> float:
    return 20.0 * np.log10(max(x, 1e-20))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


# ------------------------------------------------------------------------------ WAD
def test_wad_lumps_and_midi_songs(tmp_path):
    song = midi_bytes(two_channel_midi())
    wad = tmp_path / "test.wad"
    wad.write_bytes(make_wad([("MAP01", b"\x01\x02"), ("D_E1M1", song), ("D_MUSFMT", b"MUS\x1a" + b"\0" * 12),
                              ("D_RUNNIN", song[:-1] + b"\0"), ("DEMO1", song)]))
    lumps = bmm.read_wad_lumps(wad)
    assert [n for n, _ in lumps] == ["MAP01", "D_E1M1", "D_MUSFMT", "D_RUNNIN", "DEMO1"]
    assert lumps[1][1] == song and lumps[0][1] == b"\x01\x02"
    songs = bmm.wad_midi_songs(wad)
    # only D_* lumps in MIDI format: not the MUS lump, not a non-music lump
    assert sorted(songs) == ["test_e1m1", "test_runnin"]
    assert songs["test_e1m1"] == song
    # the parsed song is a real MIDI file
    assert len(bmm.channels_used(bmm.load_midi(songs["test_e1m1"]))) == 2


def test_wad_errors(tmp_path):
    bad = tmp_path / "bad.wad"
    bad.write_bytes(b"NOTAWAD" + b"\0" * 20)
    with pytest.raises(ValueError, match="not a WAD"):
        bmm.read_wad_lumps(bad)
    truncated = tmp_path / "trunc.wad"
    truncated.write_bytes(make_wad([("D_X", b"MThd" + b"\0" * 100)])[:-8])
    with pytest.raises(ValueError, match="out of bounds"):
        bmm.read_wad_lumps(truncated)


def test_collect_sources_dedupes_and_names(tmp_path):
    song = midi_bytes(two_channel_midi())
    (tmp_path / "a.wad").write_bytes(make_wad([("D_ONE", song)]))
    midis = tmp_path / "midis"
    midis.mkdir()
    (midis / "My Song.mid").write_bytes(song)  # same content as the WAD lump: kept once
    (midis / "other.MID").write_bytes(midi_bytes(two_channel_midi(seconds=1.0)))
    songs = bmm.collect_sources([str(tmp_path / "a.wad")], [str(midis)])
    assert sorted(songs) == ["a_one", "other"]


# ------------------------------------------------------------------------------ channel split
def test_channel_split_keeps_non_note_events_and_only_own_notes():
    mid = two_channel_midi()
    infos = bmm.channels_used(mid)
    assert [(i.channel, i.program, i.notes) for i in infos] == [(0, 33, 4), (1, 0, 4)]
    parts = bmm.split_channels(mid)
    assert sorted(parts) == [0, 1]  # channel 5 has a program change but no notes
    orig = absolute(mid)
    for ch, part in parts.items():
        got = absolute(part)
        types = [m.type for _, m in got]
        assert types.count("set_tempo") == 2
        programs = sorted((m.channel, m.program) for _, m in got if m.type == "program_change")
        assert programs == [(0, 33), (1, 0), (5, 40)]
        assert sum(m.type == "control_change" for _, m in got) == 2
        notes = [(t, m.note, m.type) for t, m in got if m.type in ("note_on", "note_off")]
        want = [(t, m.note, m.type) for t, m in orig if m.type in ("note_on", "note_off") and m.channel == ch]
        assert notes == want and len(notes) == 8  # same notes at the same absolute ticks
        assert abs(part.length - mid.length) < 1e-6


def test_seconds_to_ticks_follows_tempo_map_and_cut():
    mid = two_channel_midi(seconds=4.0)
    # 120 BPM for the first 960 ticks (1 s), then 150 BPM: 1.5 s = 960 + 0.5 s * 2.5 beat/s * 480
    assert bmm.seconds_to_ticks(mid, 0.5) == 480
    assert bmm.seconds_to_ticks(mid, 1.5) == 960 + 600
    cut = bmm.split_channels(mid, max_seconds=1.5)[0]
    assert abs(cut.length - 1.5) < 1e-3
    last = absolute(cut)
    assert max(t for t, _ in last) == 1560
    assert any(m.type == "control_change" and m.control == 123 for _, m in last)  # all notes off
    # a cap longer than the song leaves its length alone
    assert abs(bmm.split_channels(mid, max_seconds=60.0)[0].length - mid.length) < 1e-6


def test_role_names_cover_gm_and_are_unique():
    assert bmm.role_for(9, 0) == "drums" and bmm.role_for(9, 33) == "drums"
    assert [bmm.role_for(0, p) for p in (0, 19, 27, 33, 48, 53, 61, 81, 89, 104, 127)] == [
        "piano", "organ", "guitar", "bass", "strings", "choir", "brass", "lead_synth", "pad", "sitar", "fx"]
    assert layout.unique_names(["guitar", "bass", "guitar", "mix"]) == ["guitar_1", "bass", "guitar_2", "mix_stem"]
    from automix.model.roles import ROLES, role_from_name

    # every name the builder gives is understood by the mix model's role classifier
    for ch, program in [(9, 0)] + [(0, p) for p in range(128)]:
        name = bmm.role_for(ch, program) + "_2.flac"
        assert ROLES[role_from_name(name)] != "other", name


# ------------------------------------------------------------------------------ rendering
def _tinysoundfont():
    pytest.importorskip("tinysoundfont")
    sf2 = bmm.tinysoundfont_path()
    if sf2 is None:
        pytest.skip("pretty_midi's TimGM6mb.sf2 not installed")
    return sf2


def spectral_centroid_hz(x: np.ndarray) -> float:
    mag = np.abs(np.fft.rfft(x.mean(axis=0))) ** 2  # power-weighted
    freqs = np.fft.rfftfreq(x.shape[-1], 1.0 / SR)
    return float(np.sum(freqs * mag) / np.sum(mag))


def test_tinysoundfont_stems_sum_to_mix_and_to_full_render(tmp_path):
    sf2 = _tinysoundfont()
    data = midi_bytes(two_channel_midi(seconds=2.0))
    stems, meta = bmm.render_stems(data, "tinysoundfont", sf2, max_seconds=None)
    assert sorted(stems) == ["bass", "piano"]
    assert meta["channels"]["bass"]["gm_program"] == 33
    # the split is exact: the stems add up to a render of the whole song
    full = bmm.render_tinysoundfont(bmm.load_midi(data), sf2)
    total = np.sum(list(stems.values()), axis=0)
    n = min(full.shape[-1], total.shape[-1])
    assert db(rms(total[:, :n] - full[:, :n]) / rms(full)) < -50.0
    # each stem holds its own instrument: the bass sits far lower in frequency than the piano
    assert spectral_centroid_hz(stems["bass"]) < 0.5 * spectral_centroid_hz(stems["piano"])

    res = layout.write_song(tmp_path, "song", stems, SR, meta)
    assert res.status == "built" and layout.is_song_done(tmp_path, "song")
    files = {p.stem: sf.read(p, dtype="float64", always_2d=True) for p in (tmp_path / "song").glob("*.flac")}
    assert sorted(files) == ["bass", "mix", "piano"]
    assert all(sr == SR and x.shape[1] == 2 for x, sr in files.values())
    mix = files["mix"][0]
    assert 2.0 <= mix.shape[0] / SR <= 5.0
    summed = files["bass"][0] + files["piano"][0]
    assert db(rms(summed - mix) / rms(mix)) < -50.0
    assert db(np.max(np.abs(mix))) == pytest.approx(layout.HEADROOM_DBFS, abs=0.01)
    # the stored balance is the rendered balance (one common gain)
    g = rms(files["bass"][0]) / rms(files["piano"][0])
    assert db(g) == pytest.approx(db(rms(stems["bass"]) / rms(stems["piano"])), abs=0.05)


def test_build_song_is_resumable(tmp_path):
    sf2 = _tinysoundfont()
    data = midi_bytes(two_channel_midi(seconds=1.0))
    job = ("s", data, str(tmp_path), "tinysoundfont", sf2, 10.0, False, "PCM_16", "test")
    assert bmm.build_song(job).status == "built"
    stamp = (tmp_path / "s" / "mix.flac").stat().st_mtime_ns
    assert bmm.build_song(job).status == "skipped-existing"
    assert (tmp_path / "s" / "mix.flac").stat().st_mtime_ns == stamp
    assert not list(tmp_path.glob(".tmp_*"))


# ------------------------------------------------------------------------------ song folders
def test_write_song_drops_silent_stems_and_needs_two(tmp_path):
    t = np.arange(SR) / SR
    tone = np.stack([np.sin(2 * np.pi * 220 * t)] * 2) * 0.5
    stems = {"bass": tone, "keys": 0.25 * np.roll(tone, 100, axis=-1), "quiet": tone * 1e-4}
    res = layout.write_song(tmp_path, "a", stems, SR, {"source": "test"})
    assert res.status == "built" and res.stems == ["bass", "keys"]
    assert not (tmp_path / "a" / "quiet.flac").exists()
    res = layout.write_song(tmp_path, "b", {"bass": tone, "quiet": tone * 1e-4}, SR, {})
    assert res.status == "skipped-too-few-stems" and not (tmp_path / "b").exists()


def test_trim_trailing_silence_and_align():
    a = np.zeros((2, 3 * SR))
    a[:, : SR] = 0.5
    b = np.zeros((2, 2 * SR))
    b[:, SR // 2: SR // 2 + 10] = 0.1
    stems = layout.trim_trailing_silence(layout.align_stems({"a": a, "b": b}), SR, keep_s=0.25)
    assert {s.shape[-1] for s in stems.values()} == {SR + SR // 4}
    assert layout.align_stems({"a": a, "b": b}, max_samples=SR)["b"].shape == (2, SR)


def test_name_lists(tmp_path):
    f = tmp_path / "HELDOUT.txt"
    f.write_text("# held out\nfreedoom1_e1m1\nfreedoom2_runnin  # rock\n\n")
    assert layout.read_name_list([str(f), "a,b"]) == {"freedoom1_e1m1", "freedoom2_runnin", "a", "b"}


# ------------------------------------------------------------------------------ LMMS
def test_lmms_heldout_projects_are_never_in_training(tmp_path):
    rels = ["demos/Thomasso-AxeFromThe80s.mmpz", "demos/Shovon-ProgressiveHousePluckDemo.mmpz",
            "demos/CapDan/CapDan-ReggaeTry.mmpz", "demos/CapDan/Sub/X.mmp", "demos/Saber-FinalStep.mmpz",
            "shorties/DirtyLove.mmpz", "demos/CapDanish.mmpz", "templates/AcousticDrumset.mpt",
            "templates/Empty.mmpz"]
    for rel in rels:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
    found = lmms.find_projects(tmp_path)
    assert "templates/Empty.mmpz" not in found and len(found) == 7
    train = lmms.select_projects(found, heldout=False)
    held = lmms.select_projects(found, heldout=True)
    assert train == ["demos/CapDanish.mmpz", "demos/Saber-FinalStep.mmpz", "shorties/DirtyLove.mmpz"]
    assert sorted(held) == sorted(set(found) - set(train))
    assert not any("Thomasso" in r or "Shovon" in r or r.startswith("demos/CapDan/") for r in train)


def test_lmms_project_parsing_and_names(tmp_path):
    xml = ('<?xml version="1.0"?><lmms-project><song><trackcontainer>'
           '<track muted="0" type="0" name="Lead"><instrumenttrack><instrument name="tripleoscillator"/>'
           '</instrumenttrack></track><track type="2" name="kick.ogg"/>'
           '<track type="0" name="Default preset"><instrumenttrack><instrument name="zynaddsubfx"/>'
           '</instrumenttrack></track>'
           '<track type="0" name="Default preset"><instrumenttrack><instrument name="lb302"/>'
           '</instrumenttrack></track>'
           '<track type="1" name="Beat/Bassline 0"><bbtrack><trackcontainer>'
           '<track type="0" name="wood.ds"><instrumenttrack><instrument name="audiofileprocessor">'
           '<audiofileprocessor src="drumsynth/misc/wood.ds"/></instrument></instrumenttrack></track>'
           '</trackcontainer></bbtrack></track>'
           '<track type="6" name="Automation track"/></trackcontainer></song></lmms-project>')
    p = tmp_path / "song.mmpz"
    p.write_bytes(struct.pack(">I", len(xml)) + zlib.compress(xml.encode()))
    assert lmms.count_tracks(p) == 5
    hints = lmms.track_hints(lmms.project_xml(p))
    assert [h for _, h, _ in hints] == ["synth", "sample", "synth", "bass", "drums"]
    files = ["1_Lead.wav", "2_kick.ogg.wav", "3_Default preset.wav", "4_Default preset.wav", "5_wood.ds.wav"]
    names = lmms.stem_names(files, hints)
    # a telling track name is kept; a meaningless one gets the plugin/sample-folder hint
    assert names == ["lead", "kick", "synth_default_preset", "bass_default_preset", "drums_wood"]
    from automix.model.roles import ROLES, role_from_name

    assert [ROLES[role_from_name(n + ".flac")] for n in names] == ["lead", "kick", "synth", "bass", "drums"]
    assert lmms.song_name("demos/Saber-FinalStep.mmpz") == "lmms_demos_saber_finalstep"
    assert lmms.stem_base_name("2_bassdrum03.ogg.wav") == "bassdrum03"
    assert lmms.stem_base_name("11_Default preset.wav") == "default_preset"


# ------------------------------------------------------------------------------ example
def test_tilt_matches_band_gains():
    from train.build_example import tilt

    t = np.arange(SR) / SR
    for f, sign in ((40.0, +1), (16000.0, -1)):
        x = np.sin(2 * np.pi * f * t)[None]
        y = tilt(x, 6.0, SR)
        assert db(rms(y[:, SR // 2:]) / rms(x[:, SR // 2:])) == pytest.approx(sign * 3.0, abs=0.3)
    assert np.allclose(tilt(x, 0.0, SR), x)


def test_shipped_example_multitrack():
    files = sorted(EXAMPLE.glob("*.flac"))
    assert 4 <= len(files) <= 6
    assert sum(p.stat().st_size for p in EXAMPLE.iterdir()) < 3_000_000
    readme = (EXAMPLE / "README.txt").read_text()
    assert "BSD" in readme and "MIT" in readme and "seed" in readme
    levels = {}
    for p in files:
        info = sf.info(p)
        assert info.samplerate == SR and info.subtype == "PCM_16" and 15.0 <= info.duration <= 20.0
        x, _ = sf.read(p, always_2d=True)
        levels[p.stem] = db(rms(x))
        assert p.stem in readme  # each stem's applied gain is documented
        assert levels[p.stem] > -50.0 and np.max(np.abs(x)) < 1.0
    from automix.model.roles import ROLES, role_from_name

    assert "drums" in levels and "bass" in levels
    assert all(ROLES[role_from_name(p.name)] != "other" for p in files)
    # documented gains are really applied: deliberately unbalanced, not the composer's mix
    assert max(levels.values()) - min(levels.values()) > 6.0
