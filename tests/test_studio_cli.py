"""``automix studio`` as a command: serves the page on 127.0.0.1, stops cleanly on Ctrl-C, and
refuses bad arguments with one line (exit status 2) before loading anything."""
from __future__ import annotations

import json
import shutil
import socket
import urllib.error
import urllib.request

import pytest
from studio_helpers import start_studio, stop_studio

from automix.cli import main
from automix.demo import example_song


def test_serves_the_song_on_loopback_and_stops_on_ctrl_c(tmp_path):
    song = tmp_path / "e1m1"
    shutil.copytree(example_song("freedoom1_e1m1"), song)
    proc, url = start_studio(song, tmp_path / "out")
    try:
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url, timeout=30) as r:
            assert "automix studio" in r.read().decode()
        with urllib.request.urlopen(url + "api/session", timeout=30) as r:
            state = json.loads(r.read())
        assert state["song"] == "e1m1" and len(state["stems"]) == 5
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url + "api/stems/..%2F..%2Fsecret/eq", timeout=30)
        assert err.value.code == 404
        with urllib.request.urlopen(url + "api/audio/edit.wav", timeout=60) as r:
            assert r.read(4) == b"RIFF"
    finally:
        rest = stop_studio(proc)
    assert "Traceback" not in rest
    assert "studio: edit: rendered and encoded in" in rest  # the latency of every preview is printed


def test_not_a_folder_is_one_line_and_status_2(tmp_path, capsys):
    assert main(["studio", str(tmp_path / "missing"), "--port", "0", "--no-open"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a folder" in err[0]


def test_taken_port_is_reported_before_loading(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["studio", str(tmp_path), "--port", str(port), "--no-open"]) == 2
    err = capsys.readouterr()
    assert f"cannot listen on 127.0.0.1:{port}" in err.err and "loading" not in err.out


def test_bad_target_and_preview_length(tmp_path, capsys):
    song = tmp_path / "e1m1"
    shutil.copytree(example_song("freedoom1_e1m1"), song)
    assert main(["studio", str(song), "--port", "0", "--no-open", "--target", "louder"]) == 2
    assert "unknown loudness target 'louder'" in capsys.readouterr().err
    assert main(["studio", str(song), "--port", "0", "--no-open", "--preview-seconds", "0.1"]) == 2
    assert "preview length 0.1 s is outside 1 to 600 s" in capsys.readouterr().err
