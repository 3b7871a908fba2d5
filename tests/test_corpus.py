"""Every command over the generated bad-input corpus (``tests/corpus.py``).

For each verb and each case that concerns it: the exit status; for a refusal exactly one
line on stderr, ``automix: error: ...``, naming the file and the problem (never a
traceback); for an accepted case the documented note or warning and an output that decodes;
and in every case every input byte-identical afterwards (SHA-256) and no file left behind
but the expected outputs (no partial output, no temporary file).

The commands run in this process through :func:`automix.cli.main` (the code path of the
real command, without its interpreter start-up); ``test_real_command_*`` runs a few cases
as real processes, where a decoder writing to the process's stderr would show.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import corpus
from corpus import Workspace

VERBS = ("analyze", "mix", "suggest", "render", "master", "evaluate", "studio")


# --------------------------------------------------------------------------- what each case expects
@dataclass(frozen=True)
class Expect:
    """``status`` 0: accepted, stderr must hold each of ``notes``; otherwise one error line with ``says``."""

    status: int = 0
    says: str = ""
    notes: tuple[str, ...] = ()
    names: str = "subject"  # what the error line must name: "subject", "song" or "settings"


OK = Expect()
STEM_VERBS = ("mix", "suggest", "render", "studio")


def _err(says: str, names: str = "subject") -> Expect:
    return Expect(2, says, names=names)


#: case -> {verb: expectation}; a verb missing from a case's row does not take that kind of input.
AUDIO_ERRORS = {
    "zero_bytes": "the file is empty (0 bytes)",
    "truncated_wav": "is truncated: its header promises 4.00 s of audio but the file holds only 1.60 s",
    "truncated_aiff": "is truncated: its header promises 4.00 s of audio but the file holds only 1.60 s",
    "random_wav": "cannot be read - corrupt or not an audio file",
    "random_flac": "cannot be read - corrupt or not an audio file",
    "random_mp3": "cannot be read - corrupt or not an audio file",
    "random_ogg": "cannot be read - corrupt or not an audio file",
    "text_wav": "cannot be read - corrupt or not an audio file",
    "nan": "contains 20 NaN or infinite sample values",
    "inf": "contains 20 NaN or infinite sample values",
}
EVERY_VERB_WITH_AUDIO = ("analyze", "mix", "suggest", "render", "master", "evaluate", "studio")

EXPECTED: dict[str, dict[str, Expect]] = {
    **{case: {v: _err(says) for v in EVERY_VERB_WITH_AUDIO} for case, says in AUDIO_ERRORS.items()},
    "silent": {"analyze": _err("is silent (no signal above -120 dBFS)"),
               **{v: _err("is silent (no signal above -90 dBFS): nothing to mix") for v in STEM_VERBS},
               "master": _err("is silent"), "evaluate": _err("the song is silent", names="song")},
    "one_sample": {"analyze": OK, **{v: Expect(notes=("had a DC offset",)) for v in STEM_VERBS},
                   "master": _err("is only 0.00 s long; mastering needs at least 3 s"),
                   "evaluate": _err("only 0.00 s long; scoring needs at least", names="song")},
    "half_second": {"analyze": OK, **{v: OK for v in STEM_VERBS}, "evaluate": OK,
                    "master": _err("is only 0.50 s long; mastering needs at least 3 s")},
    "six_channels": {"analyze": _err("has 6 channels; automix works on mono or stereo (use the downmix option"),
                     **{v: Expect(notes=("surround.wav has 6 channels: folded down to stereo",)) for v in STEM_VERBS},
                     "master": OK, "evaluate": OK},
    **{case: {v: OK for v in EVERY_VERB_WITH_AUDIO} for case in ("pcm_u8", "pcm_32", "float64", "unicode_name")},
    "dc_offset": {"analyze": OK, **{v: Expect(notes=("offset.wav had a DC offset of 10.0",)) for v in STEM_VERBS},
                  "master": Expect(notes=("offset.wav has a DC offset of 10.0",)), "evaluate": OK},
    "clipped": {"analyze": OK, **{v: OK for v in STEM_VERBS}, "evaluate": OK,
                "master": Expect(notes=("samples are clipped at full scale",))},
    "mixed_rates": {"analyze": OK, **{v: Expect(notes=("kick.wav resampled from 22050 Hz to 96000 Hz",))
                                      for v in ("mix", "suggest", "studio")},
                    "render": Expect(notes=("hats.wav resampled from 96000 Hz to 22050 Hz",)),  # the settings' rate
                    "master": OK, "evaluate": OK},
    "different_lengths": {**{v: Expect(notes=("pad.wav is much longer than the other stems",)) for v in STEM_VERBS},
                          "evaluate": OK},
    "64_stems": {**{v: OK for v in STEM_VERBS}, "evaluate": OK},
    "70_stems": {**{v: _err("70 stems given, but automix mixes at most 64", names="song") for v in STEM_VERBS},
                 "evaluate": OK},
    "clutter_in_folder": {**{v: OK for v in STEM_VERBS}, "evaluate": OK},
    "one_bad_stem": {**{v: Expect(notes=("skipped broken.wav: cannot be read",)) for v in STEM_VERBS},
                     "evaluate": _err("cannot be read - corrupt or not an audio file")},
    "output_is_input": {"analyze": _err("refusing to overwrite an input file"),
                        "mix": _err("is one of the input stems"), "render": _err("is one of the input stems"),
                        "suggest": _err("settings files must end in .json, .yaml or .yml"),
                        "master": _err("refusing to overwrite an input file"),
                        "evaluate": _err("refusing to overwrite an input file")},
    "output_missing_folder": {v: OK for v in ("analyze", "mix", "suggest", "render", "master", "evaluate")},
    "output_read_only": {v: _err("cannot be written: the folder") for v in
                         ("analyze", "mix", "suggest", "render", "master", "evaluate")},
    "output_parent_is_file": {v: _err("is a file, not a folder") for v in
                              ("analyze", "mix", "suggest", "render", "master", "evaluate")},
    "output_exists": {v: _err("already exists") for v in ("analyze", "mix", "suggest", "render", "master", "evaluate")},
    "output_full_disk": {v: _err("could not be written: the disk is full") for v in
                         ("analyze", "mix", "suggest", "render", "master", "evaluate")},
    "settings_out_of_range": {"render": _err("strip setting gain_db = 40.0 is outside its range -48 to 24 dB")},
    "settings_missing_keys": {"render": _err("'stems' must be a non-empty list of stems")},
    "settings_wrong_type": {"render": _err("strip setting pan must be a number in -1 to 1, got 'left'")},
    "settings_unknown_stem": {"render": _err("settings do not match the stems: no settings for stem(s) kick.wav; "
                                             "settings name stem(s) not given: cowbell.wav")},
    "settings_broken_json": {"render": _err("is not valid JSON: Expecting")},
    "settings_broken_yaml": {"render": _err("is not valid YAML: expected ',' or '}', but got ':' (line 4, column 9)")},
    "corrupt_model": {v: _err("the file is corrupt, truncated or not a PyTorch checkpoint")
                      for v in ("mix", "suggest", "evaluate", "studio", "master")},
    "pickled_model": {v: _err("refused, it holds Python objects besides weights, which could run code")
                      for v in ("mix", "suggest", "evaluate", "studio", "master")},
    "silent_reference": {v: _err("is silent") for v in ("mix", "suggest", "master", "studio")},
    "corrupt_reference": {v: _err("cannot be read - corrupt or not an audio file")
                          for v in ("mix", "suggest", "master", "studio")},
}


def test_every_case_is_expected_somewhere():
    assert set(EXPECTED) == set(corpus.CASE_IDS)
    assert all(set(row) <= set(VERBS) for row in EXPECTED.values())


# --------------------------------------------------------------------------- the commands
def command(verb: str, ws: Workspace, case_id: str) -> list[str]:
    """The command line of ``verb`` over the workspace (outputs in ``ws.out`` or the case's own place)."""
    out = ws.output_for
    overwrite = ["--overwrite"] if case_id == "output_is_input" else []  # the input rule must hold even then
    if case_id == "output_is_input":
        target = {"analyze": ws.mix, "master": ws.mix, "suggest": ws.song / "kick.wav"}.get(verb, ws.song / "kick.wav")
        out = lambda suffix: target  # noqa: E731
    ref = ["--reference", ws.reference] if ws.reference is not None else []
    if verb == "analyze":
        files = ws.extra.get("analyze_files") or [ws.mix]
        return ["analyze", *files, *(["--plot", out(".png")] if ws.output is not None else []), *overwrite]
    if verb == "mix":
        return ["mix", ws.song, "-o", out(".wav"), "--model", ws.model, "-q", *ref, *overwrite]
    if verb == "suggest":
        return ["suggest", ws.song, "-o", out(".json"), "--model", ws.model, *ref, *overwrite]
    if verb == "render":
        return ["render", ws.song, "--settings", ws.settings, "-o", out(".wav"), "-q", *overwrite]
    if verb == "master":
        model = ["--model", ws.mastering_model] if ws.mastering_model is not None else []
        return ["master", ws.mix, "-o", out(".wav"), "-q", *ref, *model, *overwrite]
    if verb == "evaluate":  # the model only where the case is about it (it costs seconds per song)
        model = ["--model", ws.model] if case_id.endswith("_model") else ["--baselines-only", "--sample-rate", "16000"]
        return ["evaluate", ws.data, *model, "--seconds", "1", "--json", out(".json"), *overwrite]
    if verb == "studio":
        return ["studio", ws.song, "--model", ws.model, "--port", "0", "--no-open", "--out", ws.out / "studio", *ref]
    raise AssertionError(verb)


def expected_outputs(verb: str, ws: Workspace, case_id: str) -> set[Path]:
    """The files an accepted command writes."""
    out = ws.output_for
    return {"analyze": {out(".png")} if ws.output is not None else set(),
            "mix": {out(".wav")}, "render": {out(".wav")}, "master": {out(".wav")},
            "suggest": {out(".json"), out(".json").with_suffix(".yaml")},
            "evaluate": {out(".json")}, "studio": set()}[verb]


@dataclass
class Ran:
    status: int
    out: str
    err: str


def run_in_process(argv: list) -> Ran:
    from automix.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in argv])
    return Ran(status, out.getvalue(), err.getvalue())


# --------------------------------------------------------------------------- file-system conditions
def _mount_tmpfs(folder: Path, options: str) -> str | None:
    """Mount a tmpfs on ``folder``; None when done, else why it cannot be done here."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        return "mounting a tmpfs needs root and mount(8)"
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True)
    return None if done.returncode == 0 else f"mount -t tmpfs failed here: {done.stderr.strip()}"


@contextlib.contextmanager
def conditions(ws: Workspace):
    """A read-only output folder or a full disk, as the case asks (skips the test where impossible)."""
    mounted: list[Path] = []
    try:
        if "full_disk" in ws.extra:
            folder = ws.extra["full_disk"]
            why = _mount_tmpfs(folder, "size=64k")
            if why:
                pytest.skip(f"full disk not simulated: {why}")
            mounted.append(folder)
            with open(folder / "filler.bin", "wb", buffering=0) as f:  # fill it up: every further write fails
                with contextlib.suppress(OSError):
                    while True:
                        f.write(b"\0" * 4096)
        if "read_only" in ws.extra:
            folder = ws.extra["read_only"]
            if os.geteuid() == 0:
                why = _mount_tmpfs(folder, "ro,size=64k")
                if why:
                    pytest.skip(f"read-only folder not simulated (root ignores permissions): {why}")
                mounted.append(folder)
            else:
                folder.chmod(0o555)
        yield
    finally:
        for folder in mounted:
            subprocess.run(["umount", str(folder)], capture_output=True)
        if "read_only" in ws.extra and ws.extra["read_only"].exists():
            ws.extra["read_only"].chmod(0o755)


# --------------------------------------------------------------------------- the checks
def _name_in_error(expect: Expect, ws: Workspace) -> str:
    if expect.names == "song":
        return ws.song.name
    if ws.output is not None:  # the output's name, with the suffix of the verb's output
        return ws.output.stem
    return Path(ws.subject).name if ws.subject is not None else ws.song.name


def check(verb: str, case_id: str, tmp_path: Path, monkeypatch) -> Ran:
    expect = EXPECTED[case_id].get(verb)
    if expect is None:
        pytest.skip(f"{verb} takes no input of the kind {case_id} is about")
    ws = corpus.build(case_id, tmp_path / "ws")
    if verb == "studio":
        studio_without_server(monkeypatch)
    argv = command(verb, ws, case_id)
    with conditions(ws):
        before = corpus.hash_tree(ws.root)
        ran = run_in_process(argv)
        after = corpus.hash_tree(ws.root)
    lines = [line for line in ran.err.splitlines() if line.strip()]
    assert "Traceback" not in ran.err + ran.out
    assert ran.status == expect.status, (argv, ran.err)
    changed = {p for p in before if after.get(p) != before[p]}
    assert not changed, f"inputs changed: {changed}"
    new = {ws.root / p for p in set(after) - set(before)}
    if expect.status == 0:
        assert not [line for line in lines if line.startswith("automix: error")], lines
        for note in expect.notes:
            assert any(note in line for line in lines), (note, lines)
        assert new == expected_outputs(verb, ws, case_id), new
        check_outputs_decode(verb, new, ran)
    else:
        assert len(lines) == 1, lines
        line = lines[0]
        assert line.startswith("automix: error: "), line
        assert expect.says in line, line
        assert _name_in_error(expect, ws) in line, line
        assert not new, f"left behind: {new}"
    return ran


def check_outputs_decode(verb: str, outputs: set[Path], ran: Ran) -> None:
    for path in outputs:
        if path.suffix == ".wav":
            x, rate = sf.read(path, always_2d=True)
            assert x.shape[0] > 0 and x.shape[1] == 2 and np.all(np.isfinite(x)) and rate > 0
        elif path.suffix == ".json":
            data = json.loads(path.read_text())
            assert data.get("stems") or data.get("summary")
        elif path.suffix == ".yaml":
            import yaml

            assert yaml.safe_load(path.read_text())["stems"]
        elif path.suffix == ".png":
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if verb == "analyze":
        assert "Integrated loudness" in ran.out or "integrated" in ran.out.lower()


def studio_without_server(monkeypatch) -> None:
    """``automix studio`` loads the song (the part that reads the input) and then serves until
    Ctrl-C; here the server returns at once (the page is tested in tests/test_studio_*.py)."""
    server = pytest.importorskip("automix.studio.server")
    monkeypatch.setattr(server, "serve", lambda session, *a, **k: None)


# --------------------------------------------------------------------------- one test per verb
def _cases_of(verb: str) -> list[str]:
    return [c for c in corpus.CASE_IDS if verb in EXPECTED[c]]


@pytest.mark.parametrize("case_id", _cases_of("analyze"))
def test_analyze(case_id, tmp_path, monkeypatch):
    check("analyze", case_id, tmp_path, monkeypatch)


@pytest.mark.parametrize("case_id", _cases_of("mix"))
def test_mix(case_id, tmp_path, monkeypatch):
    ran = check("mix", case_id, tmp_path, monkeypatch)
    if case_id == "clutter_in_folder":  # the sub-folder's take, the text and the picture were not mixed
        assert "kick take 1" not in ran.out + ran.err and "notes.txt" not in ran.out + ran.err


@pytest.mark.parametrize("case_id", _cases_of("suggest"))
def test_suggest(case_id, tmp_path, monkeypatch):
    check("suggest", case_id, tmp_path, monkeypatch)
    if case_id in ("64_stems", "clutter_in_folder"):
        settings = json.loads((tmp_path / "ws" / "out" / "result.json").read_text())
        assert len(settings["stems"]) == {"64_stems": 64, "clutter_in_folder": 3}[case_id]


@pytest.mark.parametrize("case_id", _cases_of("render"))
def test_render(case_id, tmp_path, monkeypatch):
    check("render", case_id, tmp_path, monkeypatch)


@pytest.mark.parametrize("case_id", _cases_of("master"))
def test_master(case_id, tmp_path, monkeypatch):
    check("master", case_id, tmp_path, monkeypatch)


@pytest.mark.parametrize("case_id", _cases_of("evaluate"))
def test_evaluate(case_id, tmp_path, monkeypatch):
    check("evaluate", case_id, tmp_path, monkeypatch)


@pytest.mark.parametrize("case_id", _cases_of("studio"))
def test_studio(case_id, tmp_path, monkeypatch):
    check("studio", case_id, tmp_path, monkeypatch)


# --------------------------------------------------------------------------- real processes
REAL = [("analyze", "random_mp3"), ("master", "output_parent_is_file"), ("mix", "pickled_model"),
        ("render", "truncated_wav")]


@pytest.mark.parametrize("verb,case_id", REAL)
def test_real_command(verb, case_id, tmp_path):
    """The installed command as a person runs it: one line on the terminal, status 2, nothing written
    (a decoder printing to the process's own stderr, or a traceback, would show here)."""
    ws = corpus.build(case_id, tmp_path / "ws")
    before = corpus.hash_tree(ws.root)
    done = subprocess.run([sys.executable, "-m", "automix", *map(str, command(verb, ws, case_id))],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("automix: error: ") and EXPECTED[case_id][verb].says in lines[0]
    assert corpus.hash_tree(ws.root) == before
