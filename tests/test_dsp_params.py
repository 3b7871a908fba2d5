"""The parameter tables: unit mapping, validation messages, dataclasses."""
import json
import math

import pytest
import torch

from automix.dsp.params import (MASTER, PARAM_TABLE_VERSION, STRIP, MasterSettings, ParamSpec,
                                ParamTable, StripSettings)
from automix.errors import SettingsError


def test_contract_names_present():
    for name in ["gain_db", "pan", "eq.hpf.freq_hz", "eq.low_shelf.gain_db", "eq.peak1.freq_hz",
                 "eq.peak1.q", "comp.threshold_db", "comp.ratio", "comp.attack_ms", "comp.release_ms",
                 "comp.knee_db", "comp.makeup_db", "sat.drive_db", "sat.mix"]:
        assert name in STRIP.names
    assert "output_gain_db" in MASTER.names and "pan" not in MASTER.names
    assert isinstance(PARAM_TABLE_VERSION, int)
    assert STRIP.size == len(STRIP.names) == STRIP.defaults(3, 2).shape[-1]


@pytest.mark.parametrize("table", [STRIP, MASTER])
def test_unit_mapping_round_trip_and_scale(table):
    torch.manual_seed(0)
    u = torch.rand(50, table.size, dtype=torch.float64)
    values = table.from_unit(u)
    torch.testing.assert_close(table.to_unit(values), u, atol=1e-12, rtol=0)
    ends = table.from_unit(torch.stack([torch.zeros(table.size), torch.ones(table.size)]).double())
    for i, spec in enumerate(table.specs):
        assert ends[0, i].item() == pytest.approx(spec.minimum)
        assert ends[1, i].item() == pytest.approx(spec.maximum)
        mid = table.from_unit(torch.full((table.size,), 0.5, dtype=torch.float64))[i].item()
        expected = (math.sqrt(spec.minimum * spec.maximum) if spec.scale == "log"
                    else (spec.minimum + spec.maximum) / 2)
        assert mid == pytest.approx(expected)
    # gradients flow through the mapping without NaN (where() branches are safe)
    u = torch.rand(4, table.size, dtype=torch.float64, requires_grad=True)
    table.to_unit(table.from_unit(u)).sum().backward()
    assert torch.isfinite(u.grad).all()
    torch.testing.assert_close(u.grad, torch.ones_like(u), atol=1e-9, rtol=0)


def test_log_scale_parameters_are_frequencies_and_times():
    assert STRIP.spec("eq.peak2.freq_hz").scale == "log"
    assert STRIP.spec("comp.attack_ms").scale == "log"
    assert STRIP.spec("gain_db").scale == "linear"


def test_from_dict_validates_and_names_param_range_unit():
    with pytest.raises(SettingsError) as err:
        STRIP.from_dict({"eq.peak1.gain_db": 40})
    msg = str(err.value)
    assert "eq.peak1.gain_db" in msg and "-15 to 15 dB" in msg
    with pytest.raises(SettingsError, match=r"comp\.attack_ms.*0\.1 to 250 ms"):
        STRIP.from_dict({"comp.attack_ms": 0})
    with pytest.raises(SettingsError, match="unknown strip setting 'gain'"):
        STRIP.from_dict({"gain": 1.0})
    with pytest.raises(SettingsError, match="pan must be a number"):
        STRIP.from_dict({"pan": "left"})
    with pytest.raises(SettingsError, match="pan"):
        STRIP.from_dict({"pan": float("nan")})
    with pytest.raises(SettingsError, match="missing"):
        STRIP.from_dict({"pan": 0.0}, fill_defaults=False)
    with pytest.raises(SettingsError, match=r"output_gain_db.*-24 to 24 dB"):
        MASTER.validate(MASTER.defaults(2).index_fill(-1, torch.tensor([MASTER.index("output_gain_db")]), 30.0))


def test_dict_round_trip_through_json():
    torch.manual_seed(1)
    values = STRIP.from_unit(torch.rand(STRIP.size, dtype=torch.float64))
    d = json.loads(json.dumps(STRIP.to_dict(values)))
    assert list(d) == list(STRIP.names)
    torch.testing.assert_close(STRIP.from_dict(d, dtype=torch.float64), values, atol=1e-5, rtol=1e-6)


def test_settings_dataclasses_convert_to_and_from_tensors():
    s = StripSettings(gain_db=-6.0, pan=0.5, eq_peak2_q=2.0)
    t = s.to_tensor()
    assert t[STRIP.index("gain_db")] == -6.0 and t[STRIP.index("eq.peak2.q")] == 2.0
    assert StripSettings.from_tensor(t) == s
    assert StripSettings.from_dict(s.to_dict()) == s
    assert StripSettings.neutral() == StripSettings()  # defaults are neutral
    assert MasterSettings().to_dict()["output_gain_db"] == 0.0
    with pytest.raises(SettingsError, match="gain_db"):
        StripSettings(gain_db=99.0).validate()


def test_neutral_and_defaults_in_range_and_table_extension():
    for table in (STRIP, MASTER):
        table.validate(table.neutral)
        table.validate(table.defaults(2, 3))
    bigger = MASTER.extended([ParamSpec("limiter.ceiling_dbtp", "dBTP", -3.0, 0.0, -1.0)])
    assert bigger.size == MASTER.size + 1
    assert bigger.index("comp.ratio") == MASTER.index("comp.ratio")
    with pytest.raises(ValueError):
        ParamTable("x", [ParamSpec("a", "", 0, 1, 0), ParamSpec("a", "", 0, 1, 0)])
    with pytest.raises(ValueError):
        ParamSpec("f", "Hz", 0.0, 10.0, 1.0, "log")


def test_format_table_lists_every_parameter():
    text = STRIP.format_table()
    for spec in STRIP.specs:
        assert f"`{spec.name}`" in text


def test_console_doc_lists_every_parameter_with_unit_and_range():
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[1] / "docs" / "console.md").read_text()
    for table in (STRIP, MASTER):
        for spec in table.specs:
            row = next((line for line in doc.splitlines() if line.startswith(f"| `{spec.name}` |")), None)
            assert row is not None, spec.name
            cells = [c.strip() for c in row.split("|")[1:-1]]
            assert cells[1] == (spec.unit or "-")
            assert float(cells[2]) == spec.minimum and float(cells[3]) == spec.maximum
