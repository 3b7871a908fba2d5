"""Mix settings on disk (JSON / YAML) and as a table a musician can read.

A settings file is what ``automix suggest`` and ``automix mix --settings-out`` write and what
``automix render --settings`` reads back after a person edited it::

    {
      "automix_settings": 1,
      "param_table_version": 1,
      "sample_rate": 44100,
      "amount_percent": 100.0,
      "group_trims_db": {"vocals": 0.0, "bass": 0.0, "drums": 0.0, "music": 0.0, "fx": 0.0},
      "model": "models/mixer.pt",
      "stems": [
        {"file": "kick.wav", "role": "kick", "group": "drums", "silent": false,
         "strip": {"eq.hpf.freq_hz": 30.0, ..., "gain_db": -3.5, "pan": 0.0}},
        ...
      ],
      "notes": ["snare.wav is silent: left untouched"]
    }

Every ``strip`` value is validated against the ranges declared in
:data:`automix.dsp.params.STRIP`; a missing value takes its neutral default. Errors are
:class:`automix.errors.SettingsError` naming the file, the stem and the setting.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from automix.dsp.params import PARAM_TABLE_VERSION, STRIP
from automix.errors import OutputExistsError, SettingsError
from automix.model.roles import GROUPS, ROLES, group_of_role

#: Version of the settings file layout (not of the parameter table).
SETTINGS_FORMAT = 1


@dataclass
class StemSettings:
    """Channel-strip settings of one stem.

    Attributes
    ----------
    file : str
        The stem's file name (how ``render`` matches settings to files).
    role : str
        Instrument role (one of :data:`automix.model.roles.ROLES`).
    strip : dict
        ``{parameter name: value}`` in the units of :data:`automix.dsp.params.STRIP`.
    silent : bool
        The stem was silent and left untouched.
    """

    file: str
    role: str = "other"
    strip: dict[str, float] = field(default_factory=lambda: STRIP.to_dict(STRIP.neutral_like(dtype=np.float32)))
    silent: bool = False

    @property
    def group(self) -> str:
        """Trim group (vocals, bass, drums, music, fx) of the stem's role."""
        return group_of_role(self.role)

    def values(self) -> torch.Tensor:
        """Strip values as a tensor ``[P]`` float32 (validated)."""
        return STRIP.from_dict(self.strip)

    def array(self) -> np.ndarray:
        """Strip values as a numpy array ``[P]`` float32 (validated; no torch)."""
        return STRIP.from_dict(self.strip, dtype=np.float32)


@dataclass
class MixSettings:
    """Everything needed to re-render a mix: one :class:`StemSettings` per stem plus context."""

    stems: list[StemSettings]
    sample_rate: int | None = None
    amount_percent: float = 100.0
    group_trims_db: dict[str, float] = field(default_factory=lambda: {g: 0.0 for g in GROUPS})
    model: str | None = None
    notes: list[str] = field(default_factory=list)

    def strip_values(self) -> torch.Tensor:
        """Settings of every stem, ``[S, P]`` float32 tensor (validated)."""
        import torch

        return torch.from_numpy(self.strip_array())

    def strip_array(self) -> np.ndarray:
        """Settings of every stem, ``[S, P]`` float32 numpy array (validated; no torch)."""
        if not self.stems:
            return np.zeros((0, STRIP.size), dtype=np.float32)
        return np.stack([s.array() for s in self.stems])

    def files(self) -> list[str]:
        return [s.file for s in self.stems]

    def eq_response_db(self, freqs_hz, sample_rate: float) -> torch.Tensor:
        """Each stem's channel-EQ magnitude response ``[S, F]`` in dB at ``freqs_hz`` (Hz).

        Computed from the console's own filter designs (high-pass blend, shelves, peaks), so
        it is the response ``render`` applies at ``sample_rate`` (Hz).
        """
        import torch

        from automix.dsp.biquad import magnitude_db
        from automix.dsp.eq import eq_response

        freqs = torch.as_tensor(freqs_hz, dtype=torch.float64)
        if not self.stems:
            return torch.zeros(0, freqs.numel(), dtype=torch.float64)
        return magnitude_db(eq_response(self.strip_values().double(), STRIP, freqs, float(sample_rate)))

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary in the documented file layout."""
        return {
            "automix_settings": SETTINGS_FORMAT,
            "param_table_version": PARAM_TABLE_VERSION,
            "sample_rate": self.sample_rate,
            "amount_percent": float(self.amount_percent),
            "group_trims_db": {g: float(self.group_trims_db.get(g, 0.0)) for g in GROUPS},
            "model": self.model,
            "stems": [
                {"file": s.file, "role": s.role, "group": s.group, "silent": bool(s.silent),
                 "strip": {k: float(v) for k, v in s.strip.items()}}
                for s in self.stems
            ],
            "notes": list(self.notes),
        }

    @classmethod
    def from_values(cls, files: list[str], roles: list[str], values: torch.Tensor, **kw) -> "MixSettings":
        """Build from per-stem strip values ``[S, P]`` (a tensor or a numpy array; validated)."""
        STRIP.validate(values)
        silent = kw.pop("silent", [False] * len(files))
        stems = [StemSettings(f, r, STRIP.to_dict(v), bool(q)) for f, r, v, q in zip(files, roles, values, silent)]
        return cls(stems, **kw)


# ------------------------------------------------------------------------- parsing
def settings_from_dict(data: Any, source: str = "settings") -> MixSettings:
    """Validate a parsed settings document and build :class:`MixSettings`.

    Raises
    ------
    SettingsError
        Naming ``source``, the stem and the offending setting.
    """
    if not isinstance(data, dict):
        raise SettingsError(f"{source}: expected a mapping with a 'stems' list at the top level")
    version = data.get("param_table_version", PARAM_TABLE_VERSION)
    if version != PARAM_TABLE_VERSION:
        raise SettingsError(
            f"{source} was written for console parameter table version {version}; this automix "
            f"uses version {PARAM_TABLE_VERSION} (re-run 'automix suggest' to get a fresh file)"
        )
    stems_raw = data.get("stems")
    if not isinstance(stems_raw, list) or not stems_raw:
        raise SettingsError(f"{source}: 'stems' must be a non-empty list of stems")
    stems: list[StemSettings] = []
    seen: set[str] = set()
    for i, entry in enumerate(stems_raw):
        where = f"{source}, stem {i + 1}"
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or not entry["file"]:
            raise SettingsError(f"{where}: each stem needs a 'file' name")
        name = entry["file"]
        where = f"{source}, stem {name!r}"
        if name in seen:
            raise SettingsError(f"{where} appears twice")
        seen.add(name)
        role = entry.get("role", "other")
        if role not in ROLES:
            raise SettingsError(f"{where}: unknown role {role!r}; known roles: {', '.join(ROLES)}")
        strip = entry.get("strip", {})
        try:
            values = STRIP.from_dict(strip, dtype=np.float64)
        except SettingsError as exc:
            raise SettingsError(f"{where}: {exc}") from None
        stems.append(StemSettings(name, role, STRIP.to_dict(values), bool(entry.get("silent", False))))
    sample_rate = data.get("sample_rate")
    if sample_rate is not None and (isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0):
        raise SettingsError(f"{source}: sample_rate must be a positive whole number of Hz, got {sample_rate!r}")
    amount = _number(data.get("amount_percent", 100.0), f"{source}: amount_percent")
    if not 0.0 <= amount <= 100.0:
        raise SettingsError(f"{source}: amount_percent = {amount:g} is outside 0 to 100 %")
    trims_raw = data.get("group_trims_db") or {}
    if not isinstance(trims_raw, dict):
        raise SettingsError(f"{source}: group_trims_db must map groups ({', '.join(GROUPS)}) to dB")
    trims = {g: 0.0 for g in GROUPS}
    for g, v in trims_raw.items():
        if g not in GROUPS:
            raise SettingsError(f"{source}: unknown group {g!r} in group_trims_db; groups: {', '.join(GROUPS)}")
        trims[g] = _number(v, f"{source}: group_trims_db.{g}")
    notes = data.get("notes") or []
    model = data.get("model")
    return MixSettings(stems, sample_rate, amount, trims, model if isinstance(model, str) else None,
                       [str(n) for n in notes] if isinstance(notes, list) else [])


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise SettingsError(f"{what} must be a number, got {value!r}")
    return float(value)


def _format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".json":
        return "json"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    raise SettingsError(f"{path}: settings files must end in .json, .yaml or .yml")


def load_settings(path: str | Path) -> MixSettings:
    """Read and validate a JSON or YAML settings file (format chosen by extension)."""
    path = Path(path)
    fmt = _format_of(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError(f"settings file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"cannot read settings file {path}: {exc}") from None
    try:
        if fmt == "json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # json.JSONDecodeError, yaml.YAMLError
        raise SettingsError(f"{path} is not valid {fmt.upper()}: {_parse_problem(exc)}") from None
    return settings_from_dict(data, str(path))


def _parse_problem(exc: Exception) -> str:
    """A parser's complaint on one line: YAML's problem and where (its own text quotes the file)."""
    problem, mark = getattr(exc, "problem", None), getattr(exc, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(exc).split())


def dump_settings(settings: MixSettings, fmt: str = "json") -> str:
    """Settings as JSON or YAML text."""
    data = settings.to_dict()
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    if fmt == "yaml":
        import yaml

        return yaml.safe_dump(data, sort_keys=False, width=100)
    raise SettingsError(f"unknown settings format {fmt!r} (json or yaml)")


def save_settings(path: str | Path, settings: MixSettings, *, overwrite: bool = False,
                  inputs: tuple[str | Path, ...] = ()) -> Path:
    """Write settings atomically as JSON or YAML (by extension).

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is False, or ``path`` is one of ``inputs``.
    """
    path = Path(path)
    fmt = _format_of(path)
    resolved = path.resolve()
    if any(resolved == Path(p).resolve() for p in inputs):
        raise OutputExistsError(f"{path} is an input; choose another output name")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path} already exists; pass --overwrite to replace it")
    from automix.outputs import write_text_atomic

    return write_text_atomic(path, dump_settings(settings, fmt))


# ------------------------------------------------------------------------- table
def _pan(p: float) -> str:
    if abs(p) < 0.005:
        return "C"
    return f"{'L' if p < 0 else 'R'}{abs(p) * 100:.0f}"


def _hz(f: float) -> str:
    return f"{f / 1000:.1f}k" if f >= 1000 else f"{f:.0f}"


def _band(gain_db: float, freq_hz: float, q: float | None = None) -> str:
    if abs(gain_db) < 0.05:
        return "-"
    text = f"{gain_db:+.1f}@{_hz(freq_hz)}"
    return text + (f" Q{q:.1f}" if q is not None else "")


def describe_strip(strip: dict[str, float]) -> dict[str, str]:
    """One stem's settings as short strings in musician units (column -> text)."""
    s = strip
    hpf = "-" if s["eq.hpf.mix"] < 0.005 else (
        f"{_hz(s['eq.hpf.freq_hz'])} Hz" + ("" if s["eq.hpf.mix"] > 0.995 else f" {s['eq.hpf.mix'] * 100:.0f}%"))
    ratio = s["comp.ratio"]
    comp = "-" if ratio < 1.01 else (
        f"{ratio:.1f}:1 @{s['comp.threshold_db']:.0f} dB {s['comp.attack_ms']:.0f}/{s['comp.release_ms']:.0f} ms"
        + (f" +{s['comp.makeup_db']:.1f}" if s["comp.makeup_db"] >= 0.05 else ""))
    sat = "-" if s["sat.mix"] < 0.005 or s["sat.drive_db"] < 0.05 else f"{s['sat.drive_db']:.1f} dB {s['sat.mix'] * 100:.0f}%"
    return {
        "gain": f"{s['gain_db']:+.1f} dB",
        "pan": _pan(s["pan"]),
        "hpf": hpf,
        "low shelf": _band(s["eq.low_shelf.gain_db"], s["eq.low_shelf.freq_hz"]),
        "peak 1": _band(s["eq.peak1.gain_db"], s["eq.peak1.freq_hz"], s["eq.peak1.q"]),
        "peak 2": _band(s["eq.peak2.gain_db"], s["eq.peak2.freq_hz"], s["eq.peak2.q"]),
        "peak 3": _band(s["eq.peak3.gain_db"], s["eq.peak3.freq_hz"], s["eq.peak3.q"]),
        "high shelf": _band(s["eq.high_shelf.gain_db"], s["eq.high_shelf.freq_hz"]),
        "compressor": comp,
        "saturation": sat,
    }


def format_table(settings: MixSettings) -> str:
    """A fixed-width table, one row per stem: gain, pan, EQ bands, compressor, saturation.

    EQ bands read ``gain@frequency`` (``+2.5@3.2k Q1.4`` = +2.5 dB at 3.2 kHz, Q 1.4); ``-``
    means the processor is off (neutral).
    """
    header = ["stem", "role"] + list(describe_strip(STRIP.to_dict(STRIP.neutral_like(dtype=np.float32))).keys())
    rows = []
    for st in settings.stems:
        cells = describe_strip(st.strip)
        name = st.file + (" (silent)" if st.silent else "")
        rows.append([name, st.role] + list(cells.values()))
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    out = [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]
    trims = {g: v for g, v in settings.group_trims_db.items() if abs(v) > 1e-9}
    footer = f"amount {settings.amount_percent:g} %"
    if trims:
        footer += "; group trims: " + ", ".join(f"{g} {v:+.1f} dB" for g, v in trims.items())
    out.append(footer)
    out.extend(f"note: {n}" for n in settings.notes)
    return "\n".join(out)
