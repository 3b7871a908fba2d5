"""The studio's API (FastAPI test client) on the shipped example song: bad input is refused with
the validation ``automix render`` uses, the page can name nothing outside the song and its output
folder, edits re-render only what changed, and exports load back into ``automix render``."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from automix.demo import example_song  # noqa: E402
from automix.dsp.params import MIX_CONTROLS, STRIP  # noqa: E402
from automix.loudness import integrated_loudness  # noqa: E402


@pytest.fixture(scope="module")
def song(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("studio") / "e1m1"
    shutil.copytree(example_song("freedoom1_e1m1"), folder)
    return folder


@pytest.fixture(scope="module")
def session(song):
    from automix.studio.session import StudioSession

    return StudioSession.open(song, out_dir=song.parent / "out")


@pytest.fixture()
def client(session):
    from automix.studio.app import create_app

    session.base = session.suggested.clone()
    session.amount_percent, session.group_trims_db = 100.0, {g: 0.0 for g in session.group_trims_db}
    session.mute = [False] * len(session.mute)
    session.solo = [False] * len(session.solo)
    with TestClient(create_app(session)) as c:
        yield c


def wav(response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/wav"
    import io

    data, rate = sf.read(io.BytesIO(response.content), dtype="float32", always_2d=True)
    assert rate == 44100
    return data.T


# ----------------------------------------------------------------------------- the page and its specs
def test_page_and_assets_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "studio.js" in page.text
    assert client.get("/static/studio.js").status_code == 200
    assert client.get("/static/studio.css").status_code == 200


def test_params_endpoint_is_the_declared_table(client):
    data = client.get("/api/params").json()
    assert [s["name"] for s in data["strip"]] == list(STRIP.names)
    for sent, spec in zip(data["strip"], STRIP):
        assert (sent["minimum"], sent["maximum"], sent["default"], sent["scale"], sent["unit"]) == (
            spec.minimum, spec.maximum, spec.default, spec.scale, spec.unit)
    assert [s["name"] for s in data["mix"]] == list(MIX_CONTROLS.names)


def test_session_lists_the_songs_stems(client, session):
    data = client.get("/api/session").json()
    assert [s["file"] for s in data["stems"]] == session.stems.files
    assert data["versions"] == ["raw", "automix", "edit"]
    for stem in data["stems"]:
        assert stem["strip"] == stem["suggested"]


# ----------------------------------------------------------------------------- bad values
def test_out_of_range_value_is_refused_with_the_render_message(client):
    before = client.get("/api/session").json()["stems"][0]["strip"]
    r = client.post("/api/stems/bass.flac/strip", json={"values": {"gain_db": 40}})
    assert r.status_code == 422
    message = r.json()["error"]
    assert "gain_db = 40 is outside its range -48 to 24 dB" in message and "bass.flac" in message
    assert client.get("/api/session").json()["stems"][0]["strip"] == before  # nothing changed


@pytest.mark.parametrize("values, words", [
    ({"eq.peak1.q": 0.01}, "eq.peak1.q = 0.01 is outside its range 0.3 to 10"),
    ({"pan": "left"}, "pan must be a number in -1 to 1"),
    ({"gain_db": None}, "gain_db must be a number"),
    ({"volume": 3}, "unknown strip setting 'volume'"),
    ({"gain_db": True}, "gain_db must be a number"),
])
def test_bad_strip_values(client, values, words):
    r = client.post("/api/stems/drums.flac/strip", json={"values": values})
    assert r.status_code == 422
    assert words in r.json()["error"]


def test_non_finite_value_is_refused(client):
    r = client.post("/api/stems/drums.flac/strip", content='{"values": {"gain_db": NaN}}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 422


@pytest.mark.parametrize("body, words", [
    ({"amount_percent": 150}, "amount 150 % is outside 0 to 100 %"),
    ({"amount_percent": "lots"}, "amount must be a number"),
    ({"group_trims_db": {"drums": 30}}, "drums trim 30 dB is outside -24 to 24 dB"),
    ({"group_trims_db": {"choir": 1}}, "unknown group 'choir'"),
    ({"group_trims_db": [1, 2]}, "group_trims_db must map groups to dB"),
])
def test_bad_mix_values(client, body, words):
    r = client.post("/api/mix", json=body)
    assert r.status_code == 422
    assert words in r.json()["error"]


def test_bad_region_and_monitor_values(client):
    assert "outside the song" in client.post("/api/region", json={"centre_s": 999}).json()["error"]
    assert client.post("/api/region", json={"centre_s": "middle"}).status_code == 422
    r = client.post("/api/stems/bass.flac/monitor", json={"mute": "yes"})
    assert r.status_code == 422 and "mute must be true or false" in r.json()["error"]


# ----------------------------------------------------------------------------- unknown stems, traversal
@pytest.mark.parametrize("stem", ["nope.flac", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "bass", "..", "BASS.FLAC"])
def test_unknown_stems_are_404(client, stem):
    for r in (client.post(f"/api/stems/{stem}/strip", json={"values": {"gain_db": 0}}),
              client.get(f"/api/stems/{stem}/eq"),
              client.post(f"/api/stems/{stem}/monitor", json={"mute": True})):
        assert r.status_code in (404, 405)
        if r.status_code == 404 and r.headers.get("content-type", "").startswith("application/json"):
            assert "error" in r.json() or "detail" in r.json()


def test_unknown_version_is_404(client):
    r = client.get("/api/audio/master.wav")
    assert r.status_code == 404 and "no version 'master'" in r.json()["error"]
    assert client.get("/api/audio/reference.wav").status_code == 404  # no reference given


@pytest.mark.parametrize("path", ["/static/../session.py", "/static/%2e%2e/session.py", "/static/..%2fsession.py",
                                  "/static/%2e%2e%2f%2e%2e%2fmixing.py", "/static//etc/passwd"])
def test_static_files_cannot_leave_the_page_folder(client, path):
    r = client.get(path)
    assert r.status_code == 404 or (r.status_code == 200 and "StudioSession" not in r.text and "root:" not in r.text)


@pytest.mark.parametrize("name, words", [
    ("../escape", "'..' is not allowed"),
    ("a/../../escape", "'..' is not allowed"),
    ("/tmp/escape", "absolute path"),
    ("~/escape", "absolute path"),
    ("C:\\escape", "absolute path"),
    ("..\\escape", "'..' is not allowed"),
    (".hidden", "hidden part"),
    ("", "empty"),
    ("take\x00", "NUL"),
    ("take;rm -rf", "characters other than"),
])
def test_export_names_cannot_leave_the_output_folder(client, session, name, words):
    r = client.post("/api/export", json={"name": name, "items": ["settings"]})
    assert r.status_code == 422
    assert words in r.json()["error"]
    assert not (session.out_dir.parent / "escape").exists()


def test_export_through_a_symlink_out_of_the_folder_is_refused(client, session, tmp_path):
    session.out_dir.mkdir(parents=True, exist_ok=True)
    link = session.out_dir / "outside"
    if not link.exists():
        link.symlink_to(tmp_path, target_is_directory=True)
    r = client.post("/api/export", json={"name": "outside/take", "items": ["settings"]})
    assert r.status_code == 422 and "outside the output folder" in r.json()["error"]
    assert not list(tmp_path.iterdir())


def test_export_bad_items(client):
    r = client.post("/api/export", json={"name": "t", "items": ["everything"]})
    assert r.status_code == 422 and "unknown: everything" in r.json()["error"]
    assert client.post("/api/export", json={"name": "t", "items": "settings"}).status_code == 422
    assert client.post("/api/export", json={"name": "t", "items": []}).status_code == 422


def test_other_host_names_are_refused(client):
    assert client.get("/api/session", headers={"host": "evil.example"}).status_code == 400


# ----------------------------------------------------------------------------- rendering
def test_preview_of_the_suggestion_equals_the_full_render(client, session):
    from automix.mixing import render

    full, _ = render(session.stems, session.suggested)
    r = session.renderer.region
    got = wav(client.get("/api/audio/automix.wav"))
    assert np.max(np.abs(got - full.numpy()[:, r.start:r.stop])) < 1e-5
    raw = wav(client.get("/api/audio/raw.wav"))
    assert np.allclose(raw, session.stems.audio.sum(dim=0).numpy()[:, r.start:r.stop], atol=1e-6)


def test_fader_edit_reprocesses_nothing_and_moves_the_level(client, session):
    client.post("/api/stems/drums.flac/monitor", json={"solo": True})
    before = wav(client.get("/api/audio/edit.wav"))
    renders = session.renderer.renders
    value = session.base[1, STRIP.index("gain_db")].item()
    r = client.post("/api/stems/drums.flac/strip", json={"values": {"gain_db": value - 6.0}})
    assert r.status_code == 200 and abs(r.json()["strip"]["gain_db"] - (value - 6.0)) < 1e-5
    after = wav(client.get("/api/audio/edit.wav"))
    assert session.renderer.renders == renders
    change = integrated_loudness(after, 44100) - integrated_loudness(before, 44100)
    assert change == pytest.approx(-6.0, abs=0.01)


def test_eq_edit_reprocesses_only_that_stem(client, session):
    client.get("/api/audio/edit.wav")
    renders = session.renderer.renders
    client.post("/api/stems/guitar_1.flac/strip", json={"values": {"eq.peak2.gain_db": 6.0, "eq.peak2.freq_hz": 2500}})
    edited = wav(client.get("/api/audio/edit.wav"))
    assert session.renderer.renders == renders + 1
    from automix.mixing import render

    full, _ = render(session.stems, session.edit_values())
    r = session.renderer.region
    assert np.max(np.abs(edited - full.numpy()[:, r.start:r.stop])) < 1e-5


def test_eq_curve_follows_the_edit(client):
    client.post("/api/stems/bass.flac/strip", json={"values": {"eq.peak1.gain_db": 9.0, "eq.peak1.freq_hz": 300,
                                                               "eq.low_shelf.gain_db": 0, "eq.high_shelf.gain_db": 0,
                                                               "eq.peak2.gain_db": 0, "eq.peak3.gain_db": 0,
                                                               "eq.hpf.mix": 0}})
    curve = client.get("/api/stems/bass.flac/eq").json()
    freqs, db = np.array(curve["freqs_hz"]), np.array(curve["db"])
    assert freqs[np.argmax(db)] == pytest.approx(300, rel=0.1)
    assert db.max() == pytest.approx(9.0, abs=0.2)


def test_equal_loudness_gains(client):
    client.post("/api/stems/strings.flac/strip", json={"values": {"gain_db": 10.0}})
    levels = client.get("/api/levels").json()["versions"]
    matched = [v["loudness_lufs"] + v["match_gain_db"] for v in levels.values()]
    assert max(matched) - min(matched) < 1e-6
    assert all(v["match_gain_db"] <= 1e-9 for v in levels.values())
    # and what the page plays at those gains measures equal
    measured = []
    for version, v in levels.items():
        audio = wav(client.get(f"/api/audio/{version}.wav")) * 10 ** (v["match_gain_db"] / 20)
        measured.append(integrated_loudness(audio, 44100))
    assert max(measured) - min(measured) < 0.01


def test_gain_reduction_matches_the_console(client, session):
    from automix.mixing import render

    settings = {"comp.threshold_db": -30.0, "comp.ratio": 4.0, "comp.attack_ms": 5.0, "comp.release_ms": 80.0,
                "comp.makeup_db": 0.0, "sat.mix": 0.0, "sat.drive_db": 0.0}
    client.post("/api/stems/drums.flac/strip", json={"values": settings})
    gr = client.get("/api/gain_reduction").json()["stems"]["drums.flac"]
    assert gr["max_db"] < -3.0
    # the console's own render of that stem with and without its compressor
    values = session.edit_values()
    off = values.clone()
    off[1, STRIP.index("comp.ratio")] = 1.0
    _, on_stems = render(session.stems, values, keep_stems=True)
    _, off_stems = render(session.stems, off, keep_stems=True)
    hop = int(round(gr["hop_s"] * 44100))
    on, dry = on_stems[1].numpy(), off_stems[1].numpy()
    n = len(gr["gr_db"])
    ratio_db = 10 * np.log10(np.maximum((on[:, :n * hop] ** 2).reshape(2, n, hop).sum((0, 2)), 1e-20)
                             / np.maximum((dry[:, :n * hop] ** 2).reshape(2, n, hop).sum((0, 2)), 1e-20))
    loud = (dry[:, :n * hop] ** 2).reshape(2, n, hop).mean((0, 2)) > 1e-6
    # the shown curve (most reduction per hop) is at or below the hop's average reduction
    assert np.all(np.array(gr["gr_db"])[loud] <= ratio_db[loud] + 0.05)
    assert np.min(ratio_db[loud]) == pytest.approx(gr["max_db"], abs=3.0)


def test_mute_and_solo_change_what_plays(client, session):
    client.post("/api/stems/bass.flac/monitor", json={"solo": True})
    solo = wav(client.get("/api/audio/raw.wav"))
    r = session.renderer.region
    assert np.allclose(solo, session.stems.audio[0, :, r.start:r.stop].numpy(), atol=1e-6)
    client.post("/api/stems/bass.flac/monitor", json={"solo": False, "mute": True})
    muted = wav(client.get("/api/audio/raw.wav"))
    assert np.allclose(muted, session.stems.audio[1:].sum(dim=0).numpy()[:, r.start:r.stop], atol=1e-6)


# ----------------------------------------------------------------------------- export
def test_export_settings_loads_into_automix_render(client, session, tmp_path):
    from automix.cli import main
    from automix.settings_io import load_settings

    client.post("/api/stems/guitar_2.flac/strip", json={"values": {"gain_db": -3.0, "pan": 0.4}})
    client.post("/api/mix", json={"group_trims_db": {"music": -1.5}})
    r = client.post("/api/export", json={"name": "take api", "items": ["settings"]})
    assert r.status_code == 200, r.text
    folder = Path(r.json()["folder"])
    assert folder == (session.out_dir / "take api").resolve()
    loaded = load_settings(folder / "settings.yaml")
    assert json.loads((folder / "settings.json").read_text())["group_trims_db"]["music"] == -1.5
    g2 = loaded.stems[3]
    assert g2.file == "guitar_2.flac" and g2.strip["pan"] == pytest.approx(0.4)
    assert g2.strip["gain_db"] == pytest.approx(-4.5, abs=1e-5)  # the music trim is in the rendered fader
    # exporting again without overwrite is refused; with it, fine
    again = client.post("/api/export", json={"name": "take api", "items": ["settings"]})
    assert again.status_code == 409 and "already exists" in again.json()["error"]
    assert client.post("/api/export", json={"name": "take api", "items": ["settings"], "overwrite": True}).status_code == 200
    out = tmp_path / "render.wav"
    assert main(["render", str(session.song_dir), "--settings", str(folder / "settings.json"), "-o", str(out), "-q"]) == 0
    from automix.mixing import render

    full, _ = render(session.stems, session.edit_values())
    written, _ = sf.read(out, dtype="float32", always_2d=True)
    assert np.max(np.abs(written.T - full.numpy())) < 1e-4  # 24-bit file of the same mix


def test_export_audio_session_and_master(client, session):
    r = client.post("/api/export", json={"name": "take full", "items": ["mix", "stems", "session", "master"]})
    assert r.status_code == 200, r.text
    folder = Path(r.json()["folder"])
    names = sorted(str(Path(f).relative_to(folder)) for f in r.json()["files"])
    assert names == sorted(["mix.wav", "session.RPP", "master.wav"] + [f"stems/{Path(f).stem}.wav" for f in session.stems.files])
    stems = [sf.read(folder / "stems" / f"{Path(f).stem}.wav", dtype="float32", always_2d=True)[0] for f in session.stems.files]
    mix, _ = sf.read(folder / "mix.wav", dtype="float32", always_2d=True)
    assert np.max(np.abs(sum(stems) - mix)) < 1e-4  # the stems sum to the mix
    master, rate = sf.read(folder / "master.wav", dtype="float32", always_2d=True)
    assert integrated_loudness(master.T, rate) == pytest.approx(-14.0, abs=0.2)  # spotify target
    assert "stems" in (folder / "session.RPP").read_text()
    assert not any(p.name.startswith(".") for p in folder.rglob("*"))  # no temporary files left


def test_export_never_writes_over_an_input(session, tmp_path):
    from automix.errors import OutputExistsError
    from automix.studio.session import StudioSession

    reference = tmp_path / "out" / "take" / "master.wav"  # a reference that lies where a master would go
    reference.parent.mkdir(parents=True)
    mix = session.stems.audio.sum(dim=0).numpy()
    sf.write(reference, mix.T, 44100, subtype="FLOAT")
    before = reference.read_bytes()
    other = StudioSession(session.stems, session.suggested, song_dir=session.song_dir, out_dir=tmp_path / "out",
                          reference=mix, reference_path=reference)
    with pytest.raises(OutputExistsError, match="would write over the input master.wav"):
        other.export("take", ["master"], overwrite=True)
    assert reference.read_bytes() == before


# ----------------------------------------------------------------------------- helpers
def test_wav_bytes_is_a_float_wav():
    import io

    from automix.studio.preview import wav_bytes

    x = np.random.default_rng(0).standard_normal((2, 1000)).astype(np.float32) * 0.1
    data, rate = sf.read(io.BytesIO(wav_bytes(x, 48000)), dtype="float32", always_2d=True)
    assert rate == 48000 and np.array_equal(data.T, x)
    assert sf.info(io.BytesIO(wav_bytes(x, 48000))).subtype == "FLOAT"


def test_region_around_stays_inside_the_song():
    from automix.studio.preview import region_around

    assert region_around(0.0, 30.0, 44100 * 100, 44100).start == 0
    r = region_around(99.0, 30.0, 44100 * 100, 44100)
    assert r.stop == 44100 * 100 and r.length == 30 * 44100
    assert region_around(5.0, 30.0, 44100 * 10, 44100).length == 44100 * 10
    assert math.isclose(region_around(50.0, 30.0, 44100 * 100, 44100).start / 44100, 35.0)


def test_master_toggle_plays_each_version_mastered_to_the_target(client):
    for version in ("raw", "edit"):
        r = client.get(f"/api/audio/{version}.wav?master=1")
        audio = wav(r)
        assert float(r.headers["X-Loudness-LUFS"]) == pytest.approx(integrated_loudness(audio, 44100), abs=0.01)
        assert integrated_loudness(audio, 44100) == pytest.approx(-14.0, abs=0.2)  # spotify, the default target
        from automix.loudness import true_peak_dbtp

        assert true_peak_dbtp(audio, 44100) <= -1.0 + 0.05


def test_reference_is_a_fourth_version(session, tmp_path):
    from automix.studio.app import create_app
    from automix.studio.session import StudioSession

    ref = (0.5 * session.stems.audio.sum(dim=0)).numpy()[:, : 44100 * 6]  # shorter than the song
    other = StudioSession(session.stems, session.suggested, song_dir=session.song_dir, out_dir=tmp_path,
                          reference=ref, reference_path=tmp_path / "ref.wav")
    with TestClient(create_app(other)) as c:
        state = c.get("/api/session").json()
        assert state["versions"] == ["raw", "automix", "edit", "reference"] and state["reference"] == "ref.wav"
        audio = wav(c.get("/api/audio/reference.wav"))
        assert audio.shape[1] == other.renderer.region.length
        assert np.allclose(audio[:, : ref.shape[1]], ref, atol=1e-7) and not np.any(audio[:, ref.shape[1]:])
        levels = c.get("/api/levels").json()["versions"]
        assert set(levels) == {"raw", "automix", "edit", "reference"}


def test_export_into_a_blocked_folder_is_one_clear_line(client, session):
    session.out_dir.mkdir(parents=True, exist_ok=True)
    (session.out_dir / "blocked").write_text("a file where a folder would go")
    r = client.post("/api/export", json={"name": "blocked/take", "items": ["settings", "mix"]})
    assert r.status_code == 422
    assert "is a file, not a folder" in r.json()["error"] and "\n" not in r.json()["error"]
    assert (session.out_dir / "blocked").read_text() == "a file where a folder would go"
