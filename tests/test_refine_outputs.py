"""Outputs for refining a mix by hand: the REAPER session and the settings plot.

The session is read back with a small independent parser (not automix's writer) and checked
against the settings file and the audio: faders/pans match, items point at real files of the
right length, and a session of processed stems plays back the rendered mix.
"""
import json
import math
import re

import numpy as np
import pytest
import scipy.signal
import soundfile as sf
import torch
from mix_models import opinionated_model_checkpoint

from automix.daw_session import SessionTrack, write_reaper_session
from automix.errors import OutputExistsError, SettingsError
from automix.settings_io import MixSettings, StemSettings

SR = 22050


def parse_rpp(text: str) -> tuple[int, list[dict]]:
    """(sample rate, tracks) of a REAPER project: name, vol, pan, item length, source type, file."""
    rate = int(re.search(r"^\s*SAMPLERATE (\d+)", text, re.M).group(1))
    tracks = []
    for chunk in re.split(r"^\s*<TRACK\s*$", text, flags=re.M)[1:]:
        vol, pan = (float(v) for v in re.search(r"^\s*VOLPAN (\S+) (\S+)", chunk, re.M).groups())
        tracks.append({
            "name": re.search(r'^\s*NAME "([^"]*)"', chunk, re.M).group(1),
            "vol": vol, "pan": pan,
            "length": float(re.search(r"^\s*LENGTH (\S+)", chunk, re.M).group(1)),
            "source": re.search(r"^\s*<SOURCE (\w+)", chunk, re.M).group(1),
            "file": re.search(r'^\s*FILE "([^"]*)"', chunk, re.M).group(1),
        })
    assert text.count("<") == text.count("\n  >") + text.count("\n    >") + text.count("\n      >") + 1
    return rate, tracks


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    folder = tmp_path_factory.mktemp("song")
    rng = np.random.default_rng(3)
    t = np.arange(int(1.5 * SR)) / SR
    signals = {
        "kick.wav": 0.6 * np.exp(-20 * ((t * 2) % 1)) * np.sin(2 * np.pi * 60 * t),
        "bass.flac": 0.3 * np.sin(2 * np.pi * 82.4 * t),
        "keys.wav": sum(0.1 / k * np.sin(2 * np.pi * 330 * k * t) for k in range(1, 5))[: SR],  # shorter stem
        "hats.wav": 0.05 * rng.standard_normal(t.size),
    }
    for name, mono in signals.items():
        sf.write(folder / name, np.stack([mono, 0.8 * mono]).T.astype(np.float32), SR,
                 subtype="PCM_24" if name.endswith(".flac") else "FLOAT")
    return folder


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return opinionated_model_checkpoint(tmp_path_factory.mktemp("model"), seed=2)


def main(*args) -> int:
    from automix.cli import main as cli_main

    return cli_main([str(a) for a in args])


def test_suggest_session_matches_settings_and_files(song, model_path, tmp_path, capsys):
    out = tmp_path / "s.json"
    assert main("suggest", song, "--model", model_path, "-o", out, "--session", tmp_path / "song.RPP",
                "--plot", tmp_path / "s.png") == 0
    settings = json.loads(out.read_text())
    rate, tracks = parse_rpp((tmp_path / "song.RPP").read_text())
    assert rate == SR
    assert [t["name"] for t in tracks] == [s["file"].rsplit(".", 1)[0] for s in settings["stems"]]
    gains = []
    for track, stem in zip(tracks, settings["stems"]):
        gains.append(stem["strip"]["gain_db"])
        assert 20 * math.log10(track["vol"]) == pytest.approx(stem["strip"]["gain_db"], abs=1e-6)
        assert track["pan"] == pytest.approx(stem["strip"]["pan"], abs=1e-5)
        info = sf.info(track["file"])  # the item refers to the real stem (absolute path)
        assert track["file"] == str((song / stem["file"]).resolve())
        assert track["length"] == pytest.approx(info.frames / info.samplerate, abs=1e-5)
        assert track["source"] == ("FLAC" if stem["file"].endswith(".flac") else "WAVE")
    assert np.ptp(gains) > 0.5  # faders really differ, so the check above means something
    assert "session: " in capsys.readouterr().out
    png = __import__("matplotlib.image", fromlist=["imread"]).imread(tmp_path / "s.png")
    assert png.ndim == 3 and png.shape[0] > 300 and png.shape[1] > 600
    assert png[..., :3].std() > 0.05  # something is drawn


def test_mix_session_of_processed_stems_plays_the_mix(song, model_path, tmp_path):
    mix_path, stems_dir, rpp = tmp_path / "mix.wav", tmp_path / "stems", tmp_path / "mix.RPP"
    assert main("mix", song, "--model", model_path, "-o", mix_path, "--bit-depth", "float", "--stems-out",
                stems_dir, "--session", rpp, "--plot", tmp_path / "mix.png", "-q") == 0
    mix, sr = sf.read(mix_path, dtype="float64", always_2d=True)
    _, tracks = parse_rpp(rpp.read_text())
    assert len(tracks) == 4
    played = np.zeros_like(mix)
    for track in tracks:
        assert track["file"].startswith(str(stems_dir.resolve()))
        audio, rate = sf.read(track["file"], dtype="float64", always_2d=True)
        assert rate == sr and track["length"] == pytest.approx(len(audio) / sr, abs=1e-5)
        assert track["vol"] == 1.0 and track["pan"] == 0.0
        played[: len(audio)] += track["vol"] * audio
    assert np.abs(played - mix).max() < 1e-5 * max(1.0, np.abs(mix).max())
    assert np.abs(mix).max() > 0.01


def test_session_refuses_to_overwrite_and_bad_tracks(tmp_path, song):
    track = SessionTrack("kick", song / "kick.wav", 1.5, -3.0, 0.2)
    path = write_reaper_session(tmp_path / "a.rpp", [track], SR)
    before = path.read_text()
    with pytest.raises(OutputExistsError):
        write_reaper_session(path, [track], SR)
    with pytest.raises(OutputExistsError):
        write_reaper_session(tmp_path / "b.rpp", [track], SR, inputs=[tmp_path / "b.rpp"])
    with pytest.raises(SettingsError, match="pan"):
        write_reaper_session(path, [SessionTrack("k", song / "kick.wav", 1.5, 0.0, 1.5)], SR, overwrite=True)
    with pytest.raises(SettingsError, match="RPP"):
        write_reaper_session(tmp_path / "a.txt", [track], SR)
    with pytest.raises(SettingsError, match="format"):
        write_reaper_session(path, [SessionTrack("k", tmp_path / "x.m4a", 1.0)], SR, overwrite=True)
    assert path.read_text() == before  # failed writes left the session alone
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_settings_eq_curve_matches_cookbook_peak():
    """The plotted EQ curve is the console's: a +6 dB, Q 1 bell at 1 kHz vs scipy.freqz of RBJ."""
    stem = StemSettings("x.wav")
    stem.strip.update({"eq.peak2.gain_db": 6.0, "eq.peak2.freq_hz": 1000.0, "eq.peak2.q": 1.0})
    settings = MixSettings([stem, StemSettings("flat.wav")])
    freqs = np.geomspace(20, 20000, 64)
    curves = settings.eq_response_db(freqs, 44100).numpy()
    a_lin, w0 = 10 ** (6.0 / 40), 2 * np.pi * 1000.0 / 44100
    alpha = np.sin(w0) / 2.0
    b = [1 + alpha * a_lin, -2 * np.cos(w0), 1 - alpha * a_lin]
    a = [1 + alpha / a_lin, -2 * np.cos(w0), 1 - alpha / a_lin]
    _, h = scipy.signal.freqz(b, a, worN=freqs, fs=44100)
    assert np.abs(curves[0] - 20 * np.log10(np.abs(h))).max() < 0.01
    assert np.abs(curves[1]).max() < 1e-6  # neutral strip: flat
