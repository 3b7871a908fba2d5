"""Jobs too large for the machine's memory are refused up front with one line (never an
out-of-memory kill part-way); the threshold is tested with a small pretend memory size."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from automix import memory
from automix.cli import main

SR = 22050


def _write(path, seconds, channels=2):
    t = np.arange(int(seconds * SR)) / SR
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.3 * np.sin(2 * np.pi * 0.5 * t))
    sf.write(path, np.repeat(x[:, None], channels, axis=1), SR, subtype="PCM_16")
    return path


def test_the_machine_reports_its_available_memory():
    free = memory.available_bytes()
    assert free is not None and 0 < free < 1 << 50


def test_estimates_grow_with_the_job_and_match_the_measured_scale():
    three_hours = 3 * 3600 * 44100
    # measured: a 3-hour master peaked at 7.85 GiB (automix master --target -14); the estimate covers it
    assert 7.85 * memory.GIB < memory.master_bytes(three_hours) < 9 * memory.GIB
    assert memory.master_bytes(three_hours) > 2 * three_hours * 4  # at least the whole file as float32 stereo
    assert memory.mix_bytes(16, 12 * 60 * 44100) > 16 * 2 * 12 * 60 * 44100 * 4  # at least the decoded stems
    assert memory.mix_bytes(16, 1000, stems_out=True) > memory.mix_bytes(16, 1000)


def test_master_of_a_file_too_long_for_memory_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    mix = _write(tmp_path / "long set.wav", 6.0)
    need = memory.master_bytes(int(6.0 * SR))
    monkeypatch.setattr(memory, "available_bytes", lambda: need - 1)
    out = tmp_path / "out" / "master.wav"
    assert main(["master", str(mix), "-o", str(out), "--target", "-14"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("automix: error: ")
    assert "long set.wav: mastering 6 s of audio needs about" in err[0] and "is available" in err[0]
    assert not out.parent.exists() or not list(out.parent.iterdir())
    monkeypatch.setattr(memory, "available_bytes", lambda: need + 1)  # just enough: mastered
    assert main(["master", str(mix), "-o", str(out), "--target", "-14", "-q"]) == 0
    assert sf.info(str(out)).frames == int(6.0 * SR)


def test_the_refusal_reads_the_length_from_the_header(tmp_path, monkeypatch):
    """The 3-hour case without 3 hours of audio: a header that says 3 h is refused at a 6 GiB machine."""
    monkeypatch.setattr(memory, "available_bytes", lambda: 6 * (1 << 30))
    with pytest.raises(memory.MemoryLimitError, match=r"mastering 3\.0 h of audio needs about 8\.\d GiB of memory"):
        memory.check_fits("x.wav: mastering 3.0 h of audio", memory.master_bytes(3 * 3600 * 44100), "split it")
    memory.check_master_fits(tmp_path / "missing.wav")  # unreadable: left to the reader to report


def test_mix_of_a_session_too_large_for_memory_names_the_folder(tmp_path, monkeypatch, capsys):
    song = tmp_path / "big session"
    song.mkdir()
    for name in ("kick.wav", "bass.wav", "keys.wav"):
        _write(song / name, 2.0)
    need = memory.mix_bytes(3, int(2.0 * SR))
    monkeypatch.setattr(memory, "available_bytes", lambda: need // 2)
    out = tmp_path / "mix.wav"
    assert main(["mix", str(song), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{song}: mixing 3 stems of up to 2 s needs about" in err[0], err
    assert not out.exists()


def test_no_report_no_refusal(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: None)
    memory.check_fits("anything", 1 << 60, "")
