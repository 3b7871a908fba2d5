"""``automix analyze`` end to end, in a subprocess: tables, JSON, plot, one-line errors."""
import json
import struct
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from automix.loudness import analyze

SR = 44100


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "automix", "analyze", *map(str, args)],
                          capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    import conftest

    root = tmp_path_factory.mktemp("analyze")
    clean = conftest.song(4.0)
    sf.write(root / "clean.wav", clean.T, SR, subtype="PCM_24")
    hot = np.clip(clean * 4, -1, 1)  # +12 dB into a hard clipper
    hot[1] = -hot[1] + 0.01  # and a polarity flip plus DC on the right
    sf.write(root / "hot.flac", hot.T, SR, subtype="PCM_16")
    return root


def test_table_with_units_and_warnings(files):
    result = run_cli(files / "clean.wav", files / "hot.flac")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    clean_part, hot_part = out.split("== ")[1:]
    for label, unit in (("Integrated loudness", "LUFS"), ("Loudness range (LRA)", "LU"), ("True peak", "dBTP"),
                        ("Sample peak", "dBFS"), ("Peak-to-loudness ratio (PLR)", "dB"), ("Crest factor", "dB"),
                        ("Stereo correlation", ""), ("Side/mid ratio", "dB"), ("DC offset", "%"),
                        ("Clipped samples", ""), ("Max short-term loudness", "LUFS"),
                        ("Max momentary loudness", "LUFS")):
        line = next(line for line in clean_part.splitlines() if label in line)
        assert line.rstrip().endswith(unit)
    assert "No problems found." in clean_part
    for words in ("clipping", "true peak", "DC offset on the right", "negative stereo correlation"):
        assert words in hot_part
    measured = analyze(sf.read(files / "clean.wav", dtype="float32")[0].T, SR)
    assert f"{measured.integrated_lufs:.1f}" in next(line for line in clean_part.splitlines() if "Integrated" in line)


def test_json_matches_the_library(files):
    result = run_cli(files / "clean.wav", files / "hot.flac", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [d["file"] for d in data] == [str(files / "clean.wav"), str(files / "hot.flac")]
    measured = analyze(sf.read(files / "hot.flac", dtype="float32")[0].T, SR)
    assert data[1]["integrated_lufs"] == pytest.approx(measured.integrated_lufs, abs=1e-6)
    assert data[1]["true_peak_dbtp"] == pytest.approx(measured.true_peak_dbtp, abs=1e-6)
    assert data[1]["clipped_samples"] == measured.clipped_samples > 0
    assert len(data[0]["spectrum"]["freqs_hz"]) == len(data[0]["spectrum"]["level_db"]) == 31
    assert data[0]["short_term"]["times_s"][0] == pytest.approx(3.0)
    assert data[0]["warnings"] == [] and len(data[1]["warnings"]) >= 3


def test_plot_is_written_and_not_overwritten(files, tmp_path):
    out = tmp_path / "plot.png"
    result = run_cli(files / "clean.wav", files / "hot.flac", "--plot", out)
    assert result.returncode == 0, result.stderr
    header = out.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    assert width >= 800 and height >= 600
    before = out.read_bytes()
    again = run_cli(files / "clean.wav", "--plot", out)
    assert again.returncode == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr
    assert again.stdout == "" and out.read_bytes() == before  # refused before any work


def test_help_teaches():
    result = subprocess.run([sys.executable, "-m", "automix", "analyze", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "examples:" in result.stdout and "--json" in result.stdout and "--plot" in result.stdout


def _make_bad(kind, root):
    if kind == "missing":
        return root / "missing.wav"
    path = root / {"unsupported": "bad.m4a"}.get(kind, f"{kind}.wav")
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "corrupt":
        path.write_bytes(b"RIFF....WAVEfmt " + bytes(200))
    elif kind == "zero-length":
        sf.write(path, np.zeros((0, 2), np.float32), SR)
    elif kind == "silent":
        sf.write(path, np.zeros((SR, 2), np.float32), SR)
    elif kind in ("nan", "inf"):
        x = np.full((SR // 10, 2), 0.1, np.float32)
        x[5, 0] = np.nan if kind == "nan" else -np.inf
        sf.write(path, x, SR, subtype="FLOAT")
    elif kind == "unsupported":
        path.write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(64))
    elif kind == "six-channel":
        sf.write(path, np.full((SR // 10, 6), 0.1, np.float32), SR)
    return path


@pytest.mark.parametrize("kind,message", [
    ("missing", "file not found"), ("empty", "empty"), ("corrupt", "cannot be read"),
    ("zero-length", "zero length"), ("silent", "is silent"), ("nan", "NaN or infinite"),
    ("inf", "NaN or infinite"), ("unsupported", "unsupported audio format"), ("six-channel", "6 channels"),
])
def test_bad_input_one_line_exit_2(tmp_path, kind, message):
    path = _make_bad(kind, tmp_path)
    result = run_cli(path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert path.name in lines[0] and message in lines[0]


def test_bad_file_does_not_stop_the_others(files, tmp_path):
    result = run_cli(tmp_path / "gone.wav", files / "clean.wav")
    assert result.returncode == 2
    assert "gone.wav: file not found" in result.stderr
    assert "Integrated loudness" in result.stdout
