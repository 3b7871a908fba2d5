"""Settings files: JSON/YAML round trip, validation messages, the musician's table."""
import json

import pytest
import torch
import yaml

from automix.dsp.params import PARAM_TABLE_VERSION, STRIP
from automix.errors import OutputExistsError, SettingsError
from automix.settings_io import (MixSettings, StemSettings, format_table, load_settings, save_settings,
                                 settings_from_dict)


def _settings() -> MixSettings:
    values = STRIP.neutral.repeat(3, 1)
    values[0, STRIP.index("gain_db")] = -3.5
    values[0, STRIP.index("pan")] = -0.3
    values[1, STRIP.index("eq.peak2.gain_db")] = 2.5
    values[1, STRIP.index("eq.peak2.freq_hz")] = 3200.0
    values[1, STRIP.index("eq.peak2.q")] = 1.4
    values[1, STRIP.index("comp.ratio")] = 4.0
    values[1, STRIP.index("comp.threshold_db")] = -20.0
    values[2, STRIP.index("eq.hpf.mix")] = 1.0
    values[2, STRIP.index("eq.hpf.freq_hz")] = 80.0
    return MixSettings.from_values(["kick.wav", "vocals.wav", "gtr.wav"], ["kick", "vocals", "guitar"], values,
                                   sample_rate=44100, amount_percent=80.0,
                                   group_trims_db={"vocals": 1.5, "bass": 0, "drums": 0, "music": 0, "fx": 0},
                                   silent=[False, False, True], notes=["gtr.wav is silent: left untouched"])


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_round_trip(tmp_path, suffix):
    s = _settings()
    path = save_settings(tmp_path / f"s{suffix}", s)
    back = load_settings(path)
    assert back.files() == s.files()
    assert torch.allclose(back.strip_values(), s.strip_values(), atol=1e-5)
    assert back.amount_percent == 80.0 and back.group_trims_db["vocals"] == 1.5
    assert back.stems[2].silent and back.notes == s.notes and back.sample_rate == 44100
    raw = (json.loads if suffix == ".json" else yaml.safe_load)(path.read_text())
    assert raw["param_table_version"] == PARAM_TABLE_VERSION
    assert raw["stems"][0]["strip"]["gain_db"] == -3.5 and raw["stems"][1]["group"] == "vocals"


def test_refuses_to_overwrite_and_is_atomic(tmp_path):
    path = save_settings(tmp_path / "s.json", _settings())
    with pytest.raises(OutputExistsError, match="already exists"):
        save_settings(path, _settings())
    save_settings(path, _settings(), overwrite=True)
    with pytest.raises(OutputExistsError, match="input"):
        save_settings(tmp_path / "x.json", _settings(), inputs=(tmp_path / "x.json",))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]


def _edited(**change):
    data = _settings().to_dict()
    for key, value in change.items():
        data["stems"][1]["strip"][key] = value
    return data


@pytest.mark.parametrize(
    "data, message",
    [
        (_edited(gain_db=40), r"stem 'vocals.wav'.*gain_db = 40 is outside its range -48 to 24 dB"),
        (_edited(**{"comp.ratio": 0.5}), r"comp.ratio = 0.5 is outside its range 1 to 20 :1"),
        (_edited(**{"eq.peak1.freq_hz": "loud"}), r"eq.peak1.freq_hz must be a number"),
        (_edited(**{"eq.mid.gain_db": 3}), r"unknown strip setting 'eq.mid.gain_db'"),
        ({"stems": []}, r"non-empty list"),
        ([1, 2], r"mapping"),
        ({"stems": [{"strip": {}}]}, r"needs a 'file'"),
        ({"stems": [{"file": "a.wav", "role": "banjo"}]}, r"unknown role 'banjo'"),
        ({"stems": [{"file": "a.wav"}, {"file": "a.wav"}]}, r"appears twice"),
        ({"stems": [{"file": "a.wav"}], "amount_percent": 150}, r"amount_percent = 150 is outside 0 to 100"),
        ({"stems": [{"file": "a.wav"}], "group_trims_db": {"horns": 2}}, r"unknown group 'horns'"),
        ({"stems": [{"file": "a.wav"}], "param_table_version": PARAM_TABLE_VERSION + 1}, r"parameter table version"),
    ],
)
def test_validation_messages(data, message):
    with pytest.raises(SettingsError, match=message):
        settings_from_dict(data, "edited.json")


def test_missing_values_take_neutral_defaults():
    s = settings_from_dict({"stems": [{"file": "a.wav", "strip": {"gain_db": -6}}]})
    values = s.strip_values()[0]
    expected = STRIP.neutral.clone()
    expected[STRIP.index("gain_db")] = -6
    assert torch.allclose(values, expected)


def test_bad_files(tmp_path):
    (tmp_path / "broken.json").write_text("{ not json")
    with pytest.raises(SettingsError, match="not valid JSON"):
        load_settings(tmp_path / "broken.json")
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "missing.yaml")
    with pytest.raises(SettingsError, match=r"\.json, \.yaml or \.yml"):
        load_settings(tmp_path / "settings.txt")


def test_table_reads_in_musician_units():
    table = format_table(_settings())
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["stem", "role", "gain", "pan"]
    kick = next(line for line in lines if line.startswith("kick.wav"))
    vocals = next(line for line in lines if line.startswith("vocals.wav"))
    gtr = next(line for line in lines if line.startswith("gtr.wav"))
    assert "-3.5 dB" in kick and "L30" in kick
    assert "+2.5@3.2k Q1.4" in vocals and "4.0:1 @-20 dB" in vocals
    assert "80 Hz" in gtr and "(silent)" in gtr
    assert "amount 80 %" in table and "vocals +1.5 dB" in table and "note: gtr.wav is silent" in table


def test_stem_settings_group():
    assert StemSettings("Lead Vox.wav", "vocals").group == "vocals"
    assert StemSettings("x.wav", "synth").group == "music"
