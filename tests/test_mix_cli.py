"""`automix mix / suggest / render` as a user runs them: files written, loop closed, one-line errors."""
import json
import subprocess
import sys

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf
import torch
from mix_models import opinionated_model_checkpoint
import yaml


SR = 22050


def run_cli(*args) -> subprocess.CompletedProcess:
    """The real command in a fresh process (start-up, imports, exit status)."""
    return subprocess.run([sys.executable, "-m", "automix", *map(str, args)], capture_output=True, text=True,
                          timeout=180, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


def run_main(capsys, *args) -> subprocess.CompletedProcess:
    """The command's entry point in this process (same code path, no interpreter start-up)."""
    from automix.cli import main

    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # --help
        code = exc.code
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


@pytest.fixture(scope="module")
def song(tmp_path_factory):
    folder = tmp_path_factory.mktemp("song")
    t = np.arange(SR) / SR
    rng = np.random.default_rng(0)
    signals = {
        "kick.wav": 0.6 * np.exp(-20 * ((t * 2) % 1)) * np.sin(2 * np.pi * 60 * t),
        "bass.wav": 0.3 * np.sin(2 * np.pi * 82.4 * t),
        "Lead Vox.wav": sum(0.1 / k * np.sin(2 * np.pi * 220 * k * t) for k in range(1, 6)),
        "hats.wav": 0.05 * rng.standard_normal(SR),
    }
    for name, mono in signals.items():
        sf.write(folder / name, np.stack([mono, mono]).T.astype(np.float32), SR, subtype="FLOAT")
    return folder


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return opinionated_model_checkpoint(tmp_path_factory.mktemp("model"), seed=1)


def test_suggest_edit_render_loop(tmp_path, song, model_path, capsys):
    out = run_main(capsys, "suggest", song, "--model", model_path, "-o", tmp_path / "s.json", "--vocals", "2")
    assert out.returncode == 0, out.stderr
    assert "Lead Vox.wav" in out.stdout and "gain" in out.stdout and "vocals +2.0 dB" in out.stdout
    data = json.loads((tmp_path / "s.json").read_text())
    assert yaml.safe_load((tmp_path / "s.yaml").read_text()) == data
    # A person edits the YAML: vocal fader 6 dB down, everything else as suggested.
    vocal = next(s for s in data["stems"] if s["file"] == "Lead Vox.wav")
    original_gain = vocal["strip"]["gain_db"]
    vocal["strip"]["gain_db"] = original_gain - 6.0
    (tmp_path / "edited.yaml").write_text(yaml.safe_dump(data))
    a = run_main(capsys, "render", song, "--settings", tmp_path / "s.json", "-o", tmp_path / "a.wav",
                "--stems-out", tmp_path / "a", "--bit-depth", "float", "-q")
    b = run_main(capsys, "render", song, "--settings", tmp_path / "edited.yaml", "-o", tmp_path / "b.wav",
                "--stems-out", tmp_path / "b", "--bit-depth", "float", "-q")
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    meter = pyloudnorm.Meter(SR)
    lufs = lambda p: meter.integrated_loudness(sf.read(p)[0])  # noqa: E731
    assert abs((lufs(tmp_path / "a" / "Lead Vox.wav") - lufs(tmp_path / "b" / "Lead Vox.wav")) - 6.0) < 0.1
    assert abs(lufs(tmp_path / "a" / "kick.wav") - lufs(tmp_path / "b" / "kick.wav")) < 0.01


def test_mix_command_writes_everything(tmp_path, song, model_path):
    out = run_cli("mix", song, "-o", tmp_path / "mix.flac", "--model", model_path, "--stems-out", tmp_path / "stems",
                  "--settings-out", tmp_path / "settings.yaml", "--bit-depth", "16")
    assert out.returncode == 0, out.stderr
    info = sf.info(tmp_path / "mix.flac")
    assert info.samplerate == SR and info.frames == SR and info.subtype == "PCM_16"
    assert sorted(p.name for p in (tmp_path / "stems").iterdir()) == ["Lead Vox.wav", "bass.wav", "hats.wav", "kick.wav"]
    assert "mix: " in out.stdout and "LUFS" in out.stdout and "compressor" in out.stdout
    assert yaml.safe_load((tmp_path / "settings.yaml").read_text())["stems"][0]["file"] == "Lead Vox.wav"


@pytest.mark.parametrize(
    "args, message",
    [
        (["mix", "{empty}", "-o", "{tmp}/m.wav"], "no audio files in folder"),
        (["mix", "{song}", "-o", "{tmp}/m.wav", "--model", "{tmp}/none.pt"], "no mix-model weights"),
        (["mix", "{song}", "-o", "{tmp}/m.wav", "--amount", "150", "--model", "{model}"], "between 0 and 100"),
        (["render", "{song}", "--settings", "{tmp}/bad.json", "-o", "{tmp}/m.wav"],
         "gain_db = 99 is outside its range -48 to 24 dB"),
        (["mix", "{song}", "-o", "{tmp}/m.wav", "--target", "spotify", "--model", "{model}"], "need --master"),
    ],
)
def test_errors_are_one_line_and_exit_2(tmp_path, song, model_path, args, message, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.json").write_text(json.dumps({"stems": [{"file": "kick.wav", "strip": {"gain_db": 99}}]}))
    fill = {"empty": tmp_path / "empty", "tmp": tmp_path, "song": song, "model": model_path}
    out = run_main(capsys, *[a.format(**fill) for a in args])
    assert out.returncode == 2
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "m.wav").exists()


def test_error_exit_status_from_a_fresh_process(tmp_path):
    (tmp_path / "empty").mkdir()
    out = run_cli("mix", tmp_path / "empty", "-o", tmp_path / "m.wav")
    assert out.returncode == 2 and out.stderr.startswith("automix: error: no audio files in folder")


def test_help_teaches_with_examples(capsys):
    for command in ("mix", "suggest", "render"):
        out = run_main(capsys, command, "--help")
        assert out.returncode == 0 and "examples:" in out.stdout and f"automix {command}" in out.stdout


def test_mix_refuses_an_existing_output_before_reading_the_stems(tmp_path, capsys, monkeypatch):
    existing = tmp_path / "mix.wav"
    existing.write_bytes(b"keep me")
    import automix.stems_reader

    def fail(*_, **__):
        raise AssertionError("stems were read although the output exists")

    monkeypatch.setattr(automix.stems_reader, "read_stems", fail)
    result = run_main(capsys, "mix", tmp_path, "-o", existing)
    assert result.returncode == 2 and "already exists" in result.stderr and "--overwrite" in result.stderr
    assert result.stderr.count("\n") == 1 and existing.read_bytes() == b"keep me"
