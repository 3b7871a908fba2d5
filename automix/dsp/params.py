"""The single declaration of every console parameter: name, unit, range, default, scale.

Everything else is driven by these tables: the neural heads map network outputs in
[0, 1] to values with :meth:`ParamTable.from_unit`, user-edited settings are validated
with :meth:`ParamTable.from_dict`, JSON/YAML export uses :meth:`ParamTable.to_dict`,
the printed tables use :meth:`ParamTable.format_table`, and the settings dataclasses
(:class:`StripSettings`, :class:`MasterSettings`) are generated from the tables.

Two tables exist:

* :data:`STRIP` -- one channel strip per stem (EQ -> compressor -> saturation -> fader -> pan).
* :data:`MASTER` -- the master bus (EQ -> compressor -> output gain). The mastering stage
  extends this table with its limiter parameters; append new specs at the end and bump
  :data:`PARAM_TABLE_VERSION` so that saved settings and checkpoints can be checked.

Every default is *neutral*: a strip or master bus at its defaults leaves the audio untouched.

The tables work on torch tensors (the networks, training) and on numpy arrays (mastering, which
runs without importing torch): each mapping returns the kind of array it is given, and
:meth:`ParamTable.defaults` / :meth:`ParamTable.neutral_like` / :meth:`ParamTable.from_dict` return
numpy arrays when asked for a numpy dtype (torch tensors otherwise, as before).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Mapping, Sequence

import numpy as np

from automix.errors import SettingsError

PARAM_TABLE_VERSION: int = 1
"""Bumped whenever a table gains, loses, renames or re-ranges a parameter."""


@dataclass(frozen=True)
class ParamSpec:
    """Declaration of one parameter.

    Parameters
    ----------
    name : str
        Dotted name that ends with the unit, e.g. ``"eq.peak1.freq_hz"``.
    unit : str
        Unit shown to people: ``"dB"``, ``"Hz"``, ``"ms"``, ``""`` (plain number), ...
    minimum, maximum : float
        Inclusive range of valid values.
    default : float
        Default value; for the console tables this is also neutral (no effect on audio).
    scale : {"linear", "log"}
        How the unit interval maps onto the range (log needs ``minimum > 0``).
    description : str
        One line for a musician.
    neutral : float or None
        Value that makes this parameter's processor transparent, when it differs from
        ``default`` (``None``: same as ``default``).
    """

    name: str
    unit: str
    minimum: float
    maximum: float
    default: float
    scale: str = "linear"
    description: str = ""
    neutral: float | None = None

    def __post_init__(self) -> None:
        if self.scale not in ("linear", "log"):
            raise ValueError(f"{self.name}: scale must be 'linear' or 'log', not {self.scale!r}")
        if not self.minimum < self.maximum:
            raise ValueError(f"{self.name}: minimum must be below maximum")
        if self.scale == "log" and self.minimum <= 0:
            raise ValueError(f"{self.name}: a log scale needs a positive minimum")
        for label, value in (("default", self.default), ("neutral", self.neutral)):
            if value is not None and not self.minimum <= value <= self.maximum:
                raise ValueError(f"{self.name}: {label} {value} outside its range")

    @property
    def neutral_value(self) -> float:
        """Value that leaves audio untouched (``neutral`` if given, else ``default``)."""
        return self.default if self.neutral is None else self.neutral

    def describe_range(self) -> str:
        """Human-readable range, e.g. ``"-48 to 24 dB"``."""
        unit = f" {self.unit}" if self.unit else ""
        return f"{_fmt(self.minimum)} to {_fmt(self.maximum)}{unit}"


def _fmt(value: float) -> str:
    return f"{value:g}"


def _is_torch_dtype(dtype: Any) -> bool:
    """True for a ``torch.dtype`` (told apart without importing torch)."""
    return type(dtype).__module__.split(".")[0] == "torch"


def _float64_rows(values: Any, size: int) -> np.ndarray:
    """``values`` (a torch tensor on any device, or an array) as float64 numpy rows ``(-1, size)``."""
    if not isinstance(values, np.ndarray) and hasattr(values, "detach"):
        values = values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64).reshape(-1, size)


class ParamTable:
    """An ordered, immutable collection of :class:`ParamSpec` (the last axis of settings tensors).

    Parameters
    ----------
    label : str
        What the table configures (``"strip"``, ``"master"``), used in error messages.
    specs : sequence of ParamSpec
        The parameters, in tensor order.
    """

    def __init__(self, label: str, specs: Sequence[ParamSpec]):
        self.label = label
        self.specs: tuple[ParamSpec, ...] = tuple(specs)
        self.names: tuple[str, ...] = tuple(s.name for s in self.specs)
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"{label}: duplicate parameter names")
        self._index = {n: i for i, n in enumerate(self.names)}
        self._arrays = {  # numpy copies; the torch ones are made on first use (no torch import here)
            "_min": np.array([s.minimum for s in self.specs], dtype=np.float64),
            "_max": np.array([s.maximum for s in self.specs], dtype=np.float64),
            "_is_log": np.array([s.scale == "log" for s in self.specs]),
            "_default": np.array([s.default for s in self.specs], dtype=np.float64),
            "_neutral": np.array([s.neutral_value for s in self.specs], dtype=np.float64),
        }
        self._tensors: dict[str, Any] = {}

    def __getattr__(self, name: str):
        """``_min``, ``_max``, ``_is_log``, ``_default``, ``_neutral``: the torch tensors (float64, bool)."""
        arrays = self.__dict__.get("_arrays")
        if arrays is None or name not in arrays:
            raise AttributeError(name)
        if name not in self._tensors:
            import torch

            self._tensors[name] = torch.from_numpy(arrays[name].copy())
        return self._tensors[name]

    # ----------------------------------------------------------------- structure
    @property
    def size(self) -> int:
        """Number of parameters (``P``)."""
        return len(self.specs)

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        return iter(self.specs)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __repr__(self) -> str:
        return f"ParamTable({self.label!r}, {self.size} parameters)"

    def index(self, name: str) -> int:
        """Position of ``name`` on the last axis; raises SettingsError for unknown names."""
        try:
            return self._index[name]
        except KeyError:
            raise SettingsError(
                f"unknown {self.label} setting {name!r}; known settings: {', '.join(self.names)}"
            ) from None

    def spec(self, name: str) -> ParamSpec:
        """The :class:`ParamSpec` called ``name``."""
        return self.specs[self.index(name)]

    def extended(self, specs: Iterable[ParamSpec], label: str | None = None) -> "ParamTable":
        """A new table with ``specs`` appended (existing indices stay valid)."""
        return ParamTable(label or self.label, list(self.specs) + list(specs))

    # ----------------------------------------------------------------- mapping
    def _bounds_np(self, like: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        dtype = like.dtype if np.issubdtype(like.dtype, np.floating) else np.float32
        return self._arrays["_min"].astype(dtype), self._arrays["_max"].astype(dtype), self._arrays["_is_log"]

    def _bounds(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        import torch

        dtype = like.dtype if like.is_floating_point() else torch.float32
        lo = self._min.to(device=like.device, dtype=dtype)
        hi = self._max.to(device=like.device, dtype=dtype)
        return lo, hi, self._is_log.to(like.device)

    def _log_ratio(self, lo: torch.Tensor, hi: torch.Tensor, is_log: torch.Tensor):
        """(safe minimum, log(max/min)) with 1 and 0 where the scale is linear (no NaN anywhere)."""
        import torch

        lo_safe = torch.where(is_log, lo, torch.ones_like(lo))
        hi_safe = torch.where(is_log, hi, torch.ones_like(hi))
        return lo_safe, torch.log(hi_safe / lo_safe)

    def _check_last_axis(self, t: torch.Tensor) -> None:
        if t.shape[-1:] != (self.size,):
            raise SettingsError(
                f"{self.label} settings need {self.size} values on the last axis, got shape {tuple(t.shape)}"
            )

    def from_unit(self, unit: torch.Tensor) -> torch.Tensor:
        """Map values in [0, 1] (e.g. sigmoid outputs) to parameter values, differentiably.

        Parameters
        ----------
        unit : Tensor, shape (..., P)
            0 maps to each minimum and 1 to each maximum; log-scaled parameters are
            interpolated geometrically. Values are not clamped.

        Returns
        -------
        Tensor, shape (..., P), same dtype as ``unit`` (a numpy array for a numpy ``unit``).
        """
        self._check_last_axis(unit)
        if isinstance(unit, np.ndarray):
            lo, hi, is_log = self._bounds_np(unit)
            lo_safe = np.where(is_log, lo, 1.0)
            span = np.log(np.where(is_log, hi, 1.0) / lo_safe)
            return np.where(is_log, lo_safe * np.exp(unit * span), lo + unit * (hi - lo)).astype(lo.dtype)
        lo, hi, is_log = self._bounds(unit)
        linear = lo + unit * (hi - lo)
        lo_safe, span = self._log_ratio(lo, hi, is_log)
        import torch

        log = lo_safe * torch.exp(unit * span)
        return torch.where(is_log, log, linear)

    def to_unit(self, values: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`from_unit`: parameter values (..., P) to positions in [0, 1]."""
        self._check_last_axis(values)
        if isinstance(values, np.ndarray):
            lo, hi, is_log = self._bounds_np(values)
            lo_safe = np.where(is_log, lo, 1.0)
            span = np.log(np.where(is_log, hi, 1.0) / lo_safe)
            safe = np.maximum(np.where(is_log, values, 1.0), 1e-30)
            log = np.log(safe / lo_safe) / np.where(is_log, span, 1.0)
            return np.where(is_log, log, (values - lo) / (hi - lo)).astype(lo.dtype)
        lo, hi, is_log = self._bounds(values)
        linear = (values - lo) / (hi - lo)
        lo_safe, span = self._log_ratio(lo, hi, is_log)
        import torch

        safe = torch.where(is_log, values, torch.ones_like(values)).clamp_min(1e-30)
        log = torch.log(safe / lo_safe) / torch.where(is_log, span, torch.ones_like(span))
        return torch.where(is_log, log, linear)

    def defaults(self, *shape: int, dtype: Any = None, device: Any = None) -> torch.Tensor:
        """Default values broadcast to ``(*shape, P)``: a torch tensor (``dtype`` default float32), or a
        numpy array when ``dtype`` is a numpy dtype."""
        return self._filled("_default", shape, dtype, device)

    @property
    def neutral(self) -> torch.Tensor:
        """Settings (P,) float32 that leave the audio untouched (torch)."""
        return self._filled("_neutral", (), None, None)

    def neutral_like(self, *shape: int, dtype: Any = None, device: Any = None) -> torch.Tensor:
        """Neutral settings broadcast to ``(*shape, P)`` (torch, or numpy for a numpy ``dtype``)."""
        return self._filled("_neutral", shape, dtype, device)

    def _filled(self, name: str, shape: tuple[int, ...], dtype: Any, device: Any):
        if dtype is not None and not _is_torch_dtype(dtype):
            return np.broadcast_to(self._arrays[name].astype(dtype), (*shape, self.size)).copy()
        import torch

        dtype = torch.float32 if dtype is None else dtype
        return getattr(self, name).to(dtype=dtype, device=device).expand(*shape, self.size).clone()

    def clamp(self, values: torch.Tensor) -> torch.Tensor:
        """Clamp values (..., P) into their declared ranges."""
        self._check_last_axis(values)
        if isinstance(values, np.ndarray):
            lo, hi, _ = self._bounds_np(values)
            return np.clip(values, lo, hi)
        import torch

        lo, hi, _ = self._bounds(values)
        return torch.maximum(torch.minimum(values, hi), lo)

    # ----------------------------------------------------------------- validation / dicts
    def validate(self, values: torch.Tensor) -> None:
        """Raise SettingsError naming the first value (..., P) that is non-finite or out of range."""
        self._check_last_axis(values)
        v = _float64_rows(values, self.size)
        lo, hi = self._arrays["_min"], self._arrays["_max"]
        bad = ~np.isfinite(v) | (v < lo - 1e-9 * np.maximum(np.abs(lo), 1)) | (
            v > hi + 1e-9 * np.maximum(np.abs(hi), 1))
        if bool(bad.any()):
            row, col = (int(i) for i in np.argwhere(bad)[0])
            self._raise_range(self.specs[col], float(v[row, col]))

    def _raise_range(self, spec: ParamSpec, value: Any) -> None:
        raise SettingsError(
            f"{self.label} setting {spec.name} = {value!r} is outside its range "
            f"{spec.describe_range()}" + (f" ({spec.description})" if spec.description else "")
        )

    def to_dict(self, values: torch.Tensor) -> dict[str, float]:
        """Settings (P,) to ``{name: float}`` in table order (for JSON/YAML)."""
        self._check_last_axis(values)
        if values.ndim != 1:
            raise SettingsError(f"to_dict needs one set of {self.label} settings (shape ({self.size},))")
        return {n: float(round(float(x), 6)) for n, x in zip(self.names, _float64_rows(values, self.size)[0].tolist())}

    def from_dict(self, settings: Mapping[str, Any], *, fill_defaults: bool = True,
                  dtype: Any = None) -> torch.Tensor:
        """Validated tensor (P,) from ``{name: number}``.

        Parameters
        ----------
        settings : mapping
            Parameter names to numbers. Missing names take their default when
            ``fill_defaults`` (otherwise they are an error).

        Raises
        ------
        SettingsError
            For unknown names, non-numbers, NaN/inf or values outside the declared range;
            the message names the parameter, its range and its unit.
        """
        if not isinstance(settings, Mapping):
            raise SettingsError(f"{self.label} settings must be a mapping of name -> number")
        for key in settings:
            self.index(str(key))
        out = []
        for spec in self.specs:
            if spec.name not in settings:
                if not fill_defaults:
                    raise SettingsError(f"{self.label} setting {spec.name} is missing "
                                        f"(range {spec.describe_range()})")
                out.append(spec.default)
                continue
            raw = settings[spec.name]
            if isinstance(raw, bool) or not isinstance(raw, (int, float)):
                try:
                    if isinstance(raw, bool):
                        raise TypeError
                    value = float(raw)
                except (TypeError, ValueError):
                    raise SettingsError(
                        f"{self.label} setting {spec.name} must be a number in "
                        f"{spec.describe_range()}, got {raw!r}") from None
            else:
                value = float(raw)
            if not math.isfinite(value) or not (spec.minimum <= value <= spec.maximum):
                self._raise_range(spec, raw)
            out.append(value)
        if dtype is not None and not _is_torch_dtype(dtype):
            return np.array(out, dtype=dtype)
        import torch

        return torch.tensor(out, dtype=torch.float32 if dtype is None else dtype)

    def format_table(self) -> str:
        """Markdown table: name, unit, range, default, scale, description."""
        lines = ["| parameter | unit | minimum | maximum | default | scale | what it does |",
                 "|---|---|---|---|---|---|---|"]
        for s in self.specs:
            lines.append(f"| `{s.name}` | {s.unit or '-'} | {_fmt(s.minimum)} | {_fmt(s.maximum)} | "
                         f"{_fmt(s.default)} | {s.scale} | {s.description} |")
        return "\n".join(lines)


# --------------------------------------------------------------------- declarations
SHELF_Q = 1.0 / math.sqrt(2.0)
"""Fixed Q of the low and high shelves (RBJ shelf slope S = 1)."""

HPF_Q = 1.0 / math.sqrt(2.0)
"""Q of the 12 dB/oct high-pass (Butterworth)."""


def _eq_specs() -> list[ParamSpec]:
    P = ParamSpec
    specs = [
        P("eq.hpf.freq_hz", "Hz", 20.0, 500.0, 30.0, "log", "high-pass cutoff (12 dB/oct)"),
        P("eq.hpf.mix", "", 0.0, 1.0, 0.0, "linear", "high-pass amount: 0 = bypassed, 1 = full high-pass"),
        P("eq.low_shelf.freq_hz", "Hz", 30.0, 500.0, 100.0, "log", "low-shelf corner frequency"),
        P("eq.low_shelf.gain_db", "dB", -15.0, 15.0, 0.0, "linear", "low-shelf boost/cut"),
    ]
    for band, (lo, hi, default) in enumerate([(40.0, 1000.0, 200.0), (200.0, 5000.0, 1000.0),
                                              (1000.0, 16000.0, 4000.0)], start=1):
        specs += [
            P(f"eq.peak{band}.freq_hz", "Hz", lo, hi, default, "log", f"peaking band {band} centre frequency"),
            P(f"eq.peak{band}.gain_db", "dB", -15.0, 15.0, 0.0, "linear", f"peaking band {band} boost/cut"),
            P(f"eq.peak{band}.q", "", 0.3, 10.0, 0.7, "log", f"peaking band {band} sharpness (higher = narrower)"),
        ]
    specs += [
        P("eq.high_shelf.freq_hz", "Hz", 1000.0, 16000.0, 6000.0, "log", "high-shelf corner frequency"),
        P("eq.high_shelf.gain_db", "dB", -15.0, 15.0, 0.0, "linear", "high-shelf boost/cut"),
    ]
    return specs


def _compressor_specs(attack_min_ms: float) -> list[ParamSpec]:
    P = ParamSpec
    return [
        P("comp.threshold_db", "dBFS", -60.0, 0.0, 0.0, "linear", "compressor threshold"),
        P("comp.ratio", ":1", 1.0, 20.0, 1.0, "log", "compression ratio (1 = no compression)"),
        P("comp.attack_ms", "ms", attack_min_ms, 250.0, 10.0, "log", "attack time constant"),
        P("comp.release_ms", "ms", 10.0, 1000.0, 100.0, "log", "release time constant"),
        P("comp.knee_db", "dB", 0.0, 12.0, 6.0, "linear", "soft-knee width (0 = hard knee)"),
        P("comp.makeup_db", "dB", 0.0, 24.0, 0.0, "linear", "make-up gain after compression"),
    ]


STRIP = ParamTable("strip", _eq_specs() + _compressor_specs(0.1) + [
    ParamSpec("sat.drive_db", "dB", 0.0, 24.0, 0.0, "linear", "saturation drive into the soft clipper"),
    ParamSpec("sat.mix", "", 0.0, 1.0, 0.0, "linear", "saturation wet/dry: 0 = dry, 1 = fully saturated"),
    ParamSpec("gain_db", "dB", -48.0, 24.0, 0.0, "linear", "fader level"),
    ParamSpec("pan", "", -1.0, 1.0, 0.0, "linear",
              "pan (mono stems) or balance (stereo stems): -1 = left, 0 = centre, 1 = right"),
])
"""Per-stem channel strip: EQ -> compressor -> saturation -> fader -> pan."""

MASTER = ParamTable("master", _eq_specs() + _compressor_specs(0.1) + [
    ParamSpec("output_gain_db", "dB", -24.0, 24.0, 0.0, "linear", "master output level"),
])
"""Master bus: EQ -> compressor -> output gain (the mastering stage appends its limiter)."""

MASTERING = MASTER.extended([
    ParamSpec("width.low_side_db", "dB", -24.0, 12.0, 0.0, "linear",
              "side (stereo) level below width.low_freq_hz: negative = narrower/more mono bass"),
    ParamSpec("width.mid_side_db", "dB", -24.0, 12.0, 0.0, "linear",
              "side (stereo) level between the two width crossovers: positive = wider"),
    ParamSpec("width.high_side_db", "dB", -24.0, 12.0, 0.0, "linear",
              "side (stereo) level above width.high_freq_hz: positive = wider top end"),
    ParamSpec("width.low_freq_hz", "Hz", 50.0, 1000.0, 200.0, "log", "crossover between low and mid width regions"),
    ParamSpec("width.high_freq_hz", "Hz", 1000.0, 16000.0, 4000.0, "log", "crossover between mid and high width regions"),
    ParamSpec("limiter.ceiling_dbtp", "dBTP", -12.0, 0.0, -1.0, "linear",
              "true-peak ceiling of the limiter (the output never exceeds it)", neutral=0.0),
    ParamSpec("limiter.lookahead_ms", "ms", 0.5, 20.0, 5.0, "log", "limiter look-ahead (attack ramp length)"),
    ParamSpec("limiter.release_ms", "ms", 5.0, 2000.0, 150.0, "log", "limiter release time constant"),
], label="mastering")
"""Mastering chain: the master bus (EQ -> compressor -> output gain, ``output_gain_db`` being the
level into the limiter) plus mid/side width and the true-peak limiter (used by automix.mastering)."""

MIX_CONTROLS = ParamTable("mix", [
    ParamSpec("amount_percent", "%", 0.0, 100.0, 100.0, "linear",
              "how far from the untouched stems (0) toward the model's settings (100)", neutral=0.0),
    ParamSpec("group_trim_db", "dB", -24.0, 24.0, 0.0, "linear",
              "level added to the fader of every stem in a group (vocals, bass, drums, music, fx)"),
])
"""Whole-mix controls applied on top of the per-stem settings (``--amount`` and the group trims;
used by the studio's controls)."""


# --------------------------------------------------------------------- settings dataclasses
class SettingsBase:
    """Methods shared by the settings dataclasses generated from a :class:`ParamTable`.

    Field names are the parameter names with dots replaced by underscores
    (``eq.peak1.freq_hz`` -> ``eq_peak1_freq_hz``); values are plain floats in the
    parameter's unit.
    """

    table: ClassVar[ParamTable]
    _fields: ClassVar[tuple[str, ...]]

    @classmethod
    def from_tensor(cls, values: torch.Tensor):
        """Settings from a tensor (P,) of values (validated)."""
        import torch

        cls.table.validate(values)
        floats = values.detach().cpu().tolist()
        if values.dtype in (torch.float32, torch.float16, torch.bfloat16):
            floats = [float(f"{v:.7g}") for v in floats]  # 0.699999988 -> 0.7
        return cls(**dict(zip(cls._fields, floats)))

    def to_tensor(self, dtype: Any = None) -> torch.Tensor:
        """Tensor (P,) in table order (``dtype`` default float32)."""
        import torch

        return torch.tensor([getattr(self, f) for f in self._fields], dtype=torch.float32 if dtype is None else dtype)

    @classmethod
    def from_dict(cls, settings: Mapping[str, Any]):
        """Settings from ``{dotted name: number}`` (missing names take defaults; validated)."""
        import torch

        return cls.from_tensor(cls.table.from_dict(settings, dtype=torch.float64))

    def to_dict(self) -> dict[str, float]:
        """``{dotted name: float}`` in table order (for JSON/YAML)."""
        return {name: float(getattr(self, f)) for name, f in zip(self.table.names, self._fields)}

    @classmethod
    def neutral(cls):
        """Settings that leave the audio untouched."""
        import torch

        return cls.from_tensor(cls.table.neutral_like(dtype=torch.float64))

    def validate(self) -> None:
        """Raise SettingsError if any value is outside its range."""
        self.table.validate(np.array([getattr(self, f) for f in self._fields], dtype=np.float64))


def field_name(param_name: str) -> str:
    """Dataclass field name for a dotted parameter name."""
    return param_name.replace(".", "_")


def settings_dataclass(table: ParamTable, class_name: str) -> type:
    """Build a frozen dataclass with one float field per parameter of ``table``."""
    fields = [(field_name(s.name), float, dataclasses.field(default=s.default)) for s in table.specs]
    if len({f[0] for f in fields}) != len(fields):
        raise ValueError(f"{table.label}: parameter names collide as field names")
    cls = dataclasses.make_dataclass(class_name, fields, bases=(SettingsBase,), frozen=True)
    cls.table = table
    cls._fields = tuple(f[0] for f in fields)
    cls.__module__ = __name__
    cls.__doc__ = f"Settings of one {table.label} ({table.size} parameters; see automix.dsp.params.{table.label.upper()})."
    return cls


StripSettings = settings_dataclass(STRIP, "StripSettings")
MasterSettings = settings_dataclass(MASTER, "MasterSettings")
