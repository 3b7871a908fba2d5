"""What the studio holds for one song: the stems, the model's suggestion, the edit, the previews.

:class:`StudioSession` is the studio without the web server (the routes in
:mod:`automix.studio.app` call it; tests and the latency benchmark use it directly). It loads
the stems once, runs the model once, and keeps both in memory. Its versions of the preview
region, for A/B/C listening:

* ``raw`` -- the plain sum of the stems (every processor off, faders at 0 dB);
* ``automix`` -- the model's suggestion (with the same headroom trim ``automix mix`` applies);
* ``edit`` -- the suggestion as edited on the page (per-stem strips, ``amount``, group trims);
* ``reference`` -- the reference mix, when one was given.

Every value from the page is validated by the code ``automix render`` uses:
:meth:`automix.dsp.params.ParamTable.from_dict` for strip settings and
:func:`automix.mixing.apply_amount_and_trims` for ``amount`` and the group trims.
Mute and solo are for listening: they change what the previews play, not the exports.
"""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from automix.dsp.params import MIX_CONTROLS, STRIP
from automix.errors import AudioError, OutputExistsError, SettingsError
from automix.model.roles import GROUPS, ROLES
from automix.studio.paths import safe_subpath
from automix.studio.preview import PreviewRenderer, Region, region_around

VERSIONS = ("raw", "automix", "edit", "reference")
"""Versions of the preview region the page can play."""

EXPORT_ITEMS = ("settings", "mix", "stems", "session", "master")
"""What the page can export (see :meth:`StudioSession.export`)."""

#: Default preview length, s.
PREVIEW_SECONDS = 30.0
#: Name of the folder, inside the song's folder, that exports go to (unless told otherwise).
OUTPUT_FOLDER = "automix-studio"
#: Points of the waveform overview.
WAVEFORM_POINTS = 1200
#: Hop of the gain-reduction curves sent to the page, s.
GAIN_REDUCTION_HOP_S = 0.05


class UnknownStemError(SettingsError):
    """The page named a stem this song does not have."""


@dataclass
class Take:
    """One rendered version of the preview region: ``audio`` ``[2, N]`` and its loudness (LUFS)."""

    audio: np.ndarray
    loudness_lufs: float
    revision: int
    sample_rate: int
    _true_peak: float | None = None

    @property
    def true_peak_dbtp(self) -> float:
        """True peak, dBTP (measured on first use)."""
        if self._true_peak is None:
            from automix.loudness import true_peak_dbtp

            self._true_peak = true_peak_dbtp(self.audio, self.sample_rate)
        return self._true_peak


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


class StudioSession:
    """One song in the studio.

    Parameters
    ----------
    stems : automix.mixing.Stems
    suggestion : Tensor ``[S, P]``
        The model's settings (validated).
    song_dir : Path
        The song's folder (only for naming; the stems are already loaded).
    out_dir : Path
        Where exports go.
    reference : np.ndarray ``[2, T]`` at the stems' rate, optional
    reference_path : Path, optional
    master_target : str
        Loudness target of the "master" toggle and export without a reference (preset or LUFS).
    model_name : str
    preview_seconds : float
    """

    def __init__(self, stems, suggestion: torch.Tensor, *, song_dir: Path, out_dir: Path,
                 reference: np.ndarray | None = None, reference_path: Path | None = None,
                 master_target: str = "spotify", model_name: str | None = None,
                 preview_seconds: float = PREVIEW_SECONDS, notes: Sequence[str] = ()):
        STRIP.validate(suggestion)
        if suggestion.shape[0] != stems.num_stems:
            raise SettingsError(f"{suggestion.shape[0]} sets of settings for {stems.num_stems} stems")
        self.stems = stems
        self.song_dir = Path(song_dir)
        self.out_dir = Path(out_dir)
        self.reference = None if reference is None else np.ascontiguousarray(reference, dtype=np.float32)
        self.reference_path = reference_path
        self.master_target = master_target
        self.model_name = model_name
        self.notes = list(notes)
        self.preview_seconds = float(preview_seconds)
        self.suggested = suggestion.detach().to(torch.float32).clone()
        self.base = self.suggested.clone()
        self.amount_percent = MIX_CONTROLS.spec("amount_percent").default
        self.group_trims_db = {g: 0.0 for g in GROUPS}
        self.mute = [False] * stems.num_stems
        self.solo = [False] * stems.num_stems
        self.revision = 0
        self.lock = threading.RLock()
        sr = stems.sample_rate
        self.renderer = PreviewRenderer(stems.audio, sr, region_around(0.0, self.preview_seconds, stems.num_samples, sr))
        self._takes: dict[tuple, Take] = {}
        self._masters: dict[tuple, Take] = {}
        self._waveform: dict | None = None

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, song_dir: str | Path, *, reference: str | Path | None = None, model: Any = None,
             out_dir: str | Path | None = None, master_target: str | None = None,
             preview_seconds: float = PREVIEW_SECONDS, sample_rate: int | None = None) -> "StudioSession":
        """Load the stems of ``song_dir``, run the model once and open the session.

        The suggestion gets the headroom trim of ``automix mix`` (every fader down by the same
        amount when the suggested mix would peak above -1 dBFS), so "automix" plays what
        ``automix mix`` writes.

        Raises
        ------
        AudioError
            ``song_dir`` is not a folder of stems.
        """
        from automix import mixing
        from automix.mastering.presets import target_lufs

        song_dir = Path(song_dir)
        if not song_dir.is_dir():
            raise AudioError(f"{song_dir} is not a folder; the studio opens a folder of stems")
        if master_target is not None:
            target_lufs(master_target)  # validate early
        if not (1.0 <= float(preview_seconds) <= 600.0):
            raise SettingsError(f"preview length {preview_seconds:g} s is outside 1 to 600 s")
        stems = mixing.load_stems(song_dir, sample_rate)
        settings, stems = mixing.suggest(stems, model=model, reference=reference)
        values = settings.strip_values()
        mix_audio, _ = mixing.render(stems, values)
        peak = float(mixing.peak_dbfs(mix_audio[None])[0])
        notes = list(stems.notes)
        if peak > mixing.MIX_PEAK_CEILING_DBFS:
            trim = mixing._headroom_trim(settings, mixing.MIX_PEAK_CEILING_DBFS - peak)
            if trim < 0:
                notes.append(f"every suggested fader lowered by {-trim:.1f} dB so the mix peaks at "
                             f"{peak + trim:+.1f} dBFS (balance unchanged)")
            values = settings.strip_values()
        ref_audio = None
        if reference is not None:
            ref_audio = mixing.load_reference(reference, stems.sample_rate).numpy()
        out = Path(out_dir) if out_dir is not None else song_dir / OUTPUT_FOLDER
        from automix.errors import OutputError
        from automix.outputs import check_output_folder

        try:
            check_output_folder(out / "settings.json")
        except OutputError as exc:
            notes.append(f"exports will fail: {exc} (start the studio with --out DIR)")
        return cls(stems, values, song_dir=song_dir, out_dir=out, reference=ref_audio,
                   reference_path=Path(reference) if reference is not None else None,
                   master_target=master_target or "spotify", model_name=settings.model,
                   preview_seconds=preview_seconds, notes=notes)

    # ------------------------------------------------------------------ lookup
    def stem_index(self, name: str) -> int:
        """Position of the stem called ``name`` (its file name)."""
        try:
            return self.stems.files.index(name)
        except ValueError:
            raise UnknownStemError(f"no stem called {name!r} in this song; stems: "
                                   + ", ".join(self.stems.files)) from None

    def versions(self) -> list[str]:
        """The versions this session can play."""
        return [v for v in VERSIONS if v != "reference" or self.reference is not None]

    # ------------------------------------------------------------------ settings
    def edit_values(self) -> torch.Tensor:
        """The edit's strip settings ``[S, P]``: the per-stem edits, then ``amount`` and the group trims."""
        from automix.mixing import apply_amount_and_trims

        return apply_amount_and_trims(self.base, self.stems.roles, self.amount_percent, self.group_trims_db,
                                      silent=self.stems.silent)

    def values_of(self, version: str) -> torch.Tensor:
        """Strip settings ``[S, P]`` a version is rendered with (not for ``reference``)."""
        if version == "raw":
            return STRIP.neutral.repeat(self.stems.num_stems, 1)
        if version == "automix":
            return self.suggested
        if version == "edit":
            return self.edit_values()
        raise SettingsError(f"unknown version {version!r}; versions: {', '.join(self.versions())}")

    def set_strip(self, stem: str, changes: dict[str, Any]) -> dict[str, float]:
        """Change some of a stem's strip settings (``{name: value}`` in the table's units).

        Validated with the same table ``automix render`` uses: an unknown name or a value out
        of range raises :class:`SettingsError` naming the setting, its range and unit, and
        nothing changes. Returns the stem's settings after the change.
        """
        i = self.stem_index(stem)
        if not isinstance(changes, dict) or not changes:
            raise SettingsError("no settings given: send {setting name: value}")
        with self.lock:
            merged = STRIP.to_dict(self.base[i])
            for name in changes:
                STRIP.index(str(name))  # unknown names: SettingsError listing the known ones
            merged.update(changes)
            try:
                row = STRIP.from_dict(merged)
            except SettingsError as exc:
                raise SettingsError(f"stem {stem!r}: {exc}") from None
            self.base[i] = row
            self._changed()
            return STRIP.to_dict(self.base[i])

    def reset_stem(self, stem: str) -> dict[str, float]:
        """Put a stem back to the model's suggestion."""
        i = self.stem_index(stem)
        with self.lock:
            self.base[i] = self.suggested[i]
            self._changed()
            return STRIP.to_dict(self.base[i])

    def set_mix(self, amount_percent: Any = None, group_trims_db: dict[str, Any] | None = None) -> dict:
        """Change the global ``amount`` (%) and/or group trims (dB), validated as ``automix mix`` does.

        Values outside the ranges declared in :data:`automix.dsp.params.MIX_CONTROLS` are refused.
        """
        from automix.mixing import apply_amount_and_trims

        with self.lock:
            amount = self.amount_percent if amount_percent is None else _number(amount_percent, "amount")
            trims = dict(self.group_trims_db)
            for g, v in (group_trims_db or {}).items():
                trims[str(g)] = _number(v, f"{g} trim")
            spec = MIX_CONTROLS.spec("amount_percent")
            if not spec.minimum <= amount <= spec.maximum:
                raise SettingsError(f"amount {amount:g} % is outside {spec.describe_range()}")
            trim_spec = MIX_CONTROLS.spec("group_trim_db")
            for g, v in trims.items():
                if g in GROUPS and not trim_spec.minimum <= v <= trim_spec.maximum:
                    raise SettingsError(f"{g} trim {v:g} dB is outside {trim_spec.describe_range()}")
            apply_amount_and_trims(self.base, self.stems.roles, amount, trims, silent=self.stems.silent)
            self.amount_percent, self.group_trims_db = amount, trims
            self._changed()
            return {"amount_percent": amount, "group_trims_db": trims}

    def set_monitor(self, stem: str, mute: Any = None, solo: Any = None) -> dict:
        """Mute and/or solo a stem for listening (the exports always hold every stem)."""
        i = self.stem_index(stem)
        for what, value in (("mute", mute), ("solo", solo)):
            if value is not None and not isinstance(value, bool):
                raise SettingsError(f"{what} must be true or false, got {value!r}")
        with self.lock:
            if mute is not None:
                self.mute[i] = mute
            if solo is not None:
                self.solo[i] = solo
            self._changed()
            return {"mute": self.mute[i], "solo": self.solo[i]}

    def playing(self) -> list[bool]:
        """Which stems the previews play: the soloed ones if any, else the unmuted ones."""
        if any(self.solo):
            return [s and not m for s, m in zip(self.solo, self.mute)]
        return [not m for m in self.mute]

    def set_region(self, centre_s: Any) -> Region:
        """Move the preview region to be centred on ``centre_s`` (s; kept inside the song)."""
        centre = _number(centre_s, "cursor position")
        duration = self.stems.num_samples / self.stems.sample_rate
        if not 0.0 <= centre <= duration:
            raise SettingsError(f"cursor position {centre:g} s is outside the song (0 to {duration:.2f} s)")
        with self.lock:
            region = region_around(centre, self.preview_seconds, self.stems.num_samples, self.stems.sample_rate)
            if region != self.renderer.region:
                self.renderer.set_region(region)
                self._takes.clear()
                self._masters.clear()
                self._changed()
            return region

    def _changed(self) -> None:
        self.revision += 1

    def settings(self):
        """The edit as :class:`automix.settings_io.MixSettings` (what ``automix render`` reads)."""
        from automix.settings_io import MixSettings

        notes = list(self.notes)
        return MixSettings.from_values(self.stems.files, self.stems.role_names, self.edit_values(),
                                       silent=self.stems.silent, sample_rate=self.stems.sample_rate,
                                       amount_percent=self.amount_percent, group_trims_db=dict(self.group_trims_db),
                                       model=self.model_name, notes=notes)

    # ------------------------------------------------------------------ previews
    def take(self, version: str, master: bool = False) -> Take:
        """The preview region of ``version`` (rendered, or mastered with ``master``), measured."""
        from automix.loudness import integrated_loudness

        if version not in self.versions():
            raise SettingsError(f"unknown version {version!r}; versions: {', '.join(self.versions())}")
        with self.lock:
            region = self.renderer.region
            if version == "reference":
                key: tuple = ("reference", region)
            else:
                key = (version, region, tuple(self.playing()),
                       tuple(float(x) for x in self.values_of(version).flatten().tolist()))
            take = self._takes.get(key)
            if take is None:
                if version == "reference":
                    audio = self._reference_region(region)
                else:
                    audio = self.renderer.render(self.values_of(version), self.playing())
                sr = self.stems.sample_rate
                take = Take(audio, integrated_loudness(audio, sr), self.revision, sr)
                self._takes = {k: v for k, v in self._takes.items() if k[0] != version}
                self._takes[key] = take
            if master and version != "reference":
                return self._mastered(key, take)
            return take

    def _reference_region(self, region: Region) -> np.ndarray:
        """The reference over the region; its loudest stretch of that length when it is shorter than the song."""
        from automix.mastering.preview import loudest_window

        ref = self.reference
        if ref.shape[-1] >= region.stop:
            return np.ascontiguousarray(ref[:, region.start:region.stop])
        start, stop = loudest_window(ref, self.stems.sample_rate, region.length / self.stems.sample_rate)
        out = np.zeros((2, region.length), dtype=np.float32)
        out[:, :stop - start] = ref[:, start:stop]
        return out

    def _mastered(self, key: tuple, take: Take) -> Take:
        from automix.loudness import integrated_loudness
        from automix.mastering.master import MasteringOptions, master_audio

        hit = self._masters.get(key)
        if hit is not None:
            return hit
        sr = self.stems.sample_rate
        if not np.any(take.audio):
            raise AudioError("nothing to master: every stem is muted")
        refs = [(self.reference, sr)] if self.reference is not None else []
        options = MasteringOptions(target=None if refs else self.master_target)
        result = master_audio(np.array(take.audio, dtype=np.float32), sr, refs, options, name=f"{key[0]} preview")
        audio = np.ascontiguousarray(result.samples, dtype=np.float32)
        mastered = Take(audio, integrated_loudness(audio, sr), take.revision, sr, result.true_peak_dbtp)
        self._masters = {k: v for k, v in self._masters.items() if k[0] != key[0]}
        self._masters[key] = mastered
        return mastered

    def levels(self, master: bool = False) -> dict[str, dict]:
        """Loudness (LUFS) and true peak (dBTP) of every version, and the gain (dB) that brings
        each to the level of the quietest (equal-loudness A/B/C)."""
        takes = {v: self.take(v, master) for v in self.versions()}
        finite = [t.loudness_lufs for t in takes.values() if math.isfinite(t.loudness_lufs)]
        common = min(finite) if finite else 0.0
        return {v: {"loudness_lufs": _finite(t.loudness_lufs), "true_peak_dbtp": _finite(t.true_peak_dbtp),
                    "match_gain_db": (common - t.loudness_lufs) if math.isfinite(t.loudness_lufs) else 0.0}
                for v, t in takes.items()}

    def gain_reduction(self) -> dict[str, dict]:
        """Each compressed stem's gain reduction over the region in the edit (dB, <= 0), one value
        per :data:`GAIN_REDUCTION_HOP_S` (the most reduction within the hop).

        The compressor's own gain computer and attack/release smoothing
        (:mod:`automix.dsp.compressor`) run on the stem after its EQ, as in the console.
        """
        from automix.dsp import compressor as comp

        out: dict[str, dict] = {}
        sr = self.stems.sample_rate
        hop = max(1, int(round(GAIN_REDUCTION_HOP_S * sr)))
        with self.lock:
            values = self.edit_values()
            for i, name in enumerate(self.stems.files):
                v = values[i]
                p = lambda n: v[STRIP.index(n)].double()  # noqa: E731
                if float(p("comp.ratio")) <= 1.0 + 1e-6:
                    out[name] = {"hop_s": GAIN_REDUCTION_HOP_S, "gr_db": [], "max_db": 0.0}
                    continue
                eq_only = v.clone()
                for n in STRIP.names:
                    if n.startswith(("comp.", "sat.")):
                        eq_only[STRIP.index(n)] = STRIP.neutral[STRIP.index(n)]
                x = torch.from_numpy(np.array(self.renderer.render_stems([i], eq_only[None])[0], dtype=np.float64))
                target = comp.gain_computer_db(comp.detector_level_db(x), p("comp.threshold_db"), p("comp.ratio"),
                                               p("comp.knee_db"))
                gr = comp.smooth_gain(target[None], p("comp.attack_ms")[None], p("comp.release_ms")[None], sr)[0]
                n = gr.shape[-1] // hop * hop
                curve = gr[:n].reshape(-1, hop).amin(dim=-1) if n else gr[:0]
                out[name] = {"hop_s": hop / sr, "gr_db": [round(float(g), 2) for g in curve],
                             "max_db": round(float(gr.min()), 2) if gr.numel() else 0.0}
        return out

    def eq_curve(self, stem: str, points: int = 160) -> dict:
        """The stem's channel-EQ response in the edit: ``{"freqs_hz": [...], "db": [...]}``."""
        from automix.dsp.biquad import magnitude_db
        from automix.dsp.eq import eq_response

        i = self.stem_index(stem)
        sr = self.stems.sample_rate
        freqs = np.geomspace(20.0, min(20000.0, 0.45 * sr), points)
        with self.lock:
            v = self.edit_values()[i]
        db = magnitude_db(eq_response(v[None].double(), STRIP, torch.from_numpy(freqs), float(sr)))[0]
        return {"freqs_hz": [round(float(f), 2) for f in freqs], "db": [round(float(d), 3) for d in db]}

    def waveform(self, points: int = WAVEFORM_POINTS) -> dict:
        """Overview of the whole song (plain sum of the stems): min and max per point, and the duration."""
        if self._waveform is None:
            audio = self.stems.audio
            total = audio.shape[-1]
            points = max(1, min(points, total))
            edges = np.linspace(0, total, points + 1).astype(int)
            lo, hi = [], []
            for a, b in zip(edges[:-1], edges[1:]):
                s = audio[:, :, a:max(b, a + 1)].sum(dim=0).mean(dim=0)
                lo.append(round(float(s.min()), 4))
                hi.append(round(float(s.max()), 4))
            self._waveform = {"duration_s": total / self.stems.sample_rate, "min": lo, "max": hi}
        return self._waveform

    # ------------------------------------------------------------------ state for the page
    def state(self) -> dict:
        """Everything the page shows, as plain JSON-able data."""
        from automix.model.roles import group_of_role

        sr = self.stems.sample_rate
        with self.lock:
            region = self.renderer.region
            edit = self.edit_values()
            stems = []
            for i, name in enumerate(self.stems.files):
                role = ROLES[self.stems.roles[i]]
                stems.append({"file": name, "role": role, "group": group_of_role(role), "silent": self.stems.silent[i],
                              "strip": STRIP.to_dict(self.base[i]), "suggested": STRIP.to_dict(self.suggested[i]),
                              "effective": STRIP.to_dict(edit[i]), "mute": self.mute[i], "solo": self.solo[i]})
            return {
                "song": self.song_dir.name, "sample_rate": sr, "duration_s": self.stems.num_samples / sr,
                "stems": stems, "amount_percent": self.amount_percent, "group_trims_db": dict(self.group_trims_db),
                "groups": list(GROUPS), "versions": self.versions(),
                "region": {"start_s": region.start / sr, "stop_s": region.stop / sr},
                "reference": self.reference_path.name if self.reference_path else None,
                "master_target": self.master_target, "out_dir": str(self.out_dir), "revision": self.revision,
                "notes": list(self.notes), "model": self.model_name, "export_items": list(EXPORT_ITEMS),
            }

    # ------------------------------------------------------------------ export
    def export(self, name: str, items: Sequence[str], overwrite: bool = False) -> dict:
        """Write the edit into ``out_dir / name`` with the library's atomic writers.

        ``items`` (any of :data:`EXPORT_ITEMS`): ``settings`` (``settings.json`` and
        ``settings.yaml``, loadable by ``automix render``), ``mix`` (``mix.wav``, 24-bit),
        ``stems`` (``stems/<stem>.wav``, 32-bit float, they sum to the mix), ``session``
        (``session.RPP``: the processed stems when exported too, else the stems with faders and
        pans) and ``master`` (``master.wav``, to the reference or the target). Every audio item
        renders the full song through :func:`automix.mixing.mix`; the mix is written with any of them.
        Existing files are replaced only with ``overwrite``; an input is never written over.

        Returns ``{"folder": ..., "files": [...], "notes": [...]}``.
        """
        wanted = list(dict.fromkeys(items or []))
        unknown = [w for w in wanted if w not in EXPORT_ITEMS]
        if not wanted or unknown:
            raise SettingsError(f"export items must be some of {', '.join(EXPORT_ITEMS)}"
                                + (f"; unknown: {', '.join(map(str, unknown))}" if unknown else ""))
        if not isinstance(overwrite, bool):
            raise SettingsError("overwrite must be true or false")
        from automix.errors import OutputError
        from automix.outputs import check_output_folder

        folder = safe_subpath(self.out_dir, name)
        check_output_folder(folder / "settings.json")  # a read-only or blocked folder: one line, nothing done
        inputs = [p.resolve() for p in self.stems.paths]
        if self.reference_path is not None:
            inputs.append(self.reference_path.resolve())
        planned = [folder / "settings.json", folder / "settings.yaml", folder / "mix.wav", folder / "session.RPP",
                   folder / "master.wav"] + [folder / "stems" / f"{Path(f).stem}.wav" for f in self.stems.files]
        for path in planned:
            if path.resolve() in inputs:
                raise OutputExistsError(f"exporting to {folder} would write over the input {path.name}; "
                                        "choose another export name")
        with self.lock:
            settings = self.settings()
        files: list[Path] = []
        notes: list[str] = []
        if any(self.mute) or any(self.solo):
            notes.append("mute and solo are for listening: the exports hold every stem")
        try:
            self._export(folder, wanted, settings, overwrite, inputs, files, notes)
        except OSError as exc:  # what the writers do not word themselves
            from automix.outputs import os_error_message

            raise OutputError(f"{folder}: cannot be written: {os_error_message(exc)}") from None
        return {"folder": str(folder), "files": [str(f) for f in files], "notes": notes}

    def _export(self, folder: Path, wanted: list[str], settings, overwrite: bool, inputs: list[Path],
                files: list[Path], notes: list[str]) -> None:
        from automix import mixing
        from automix.settings_io import save_settings

        if "settings" in wanted:
            for suffix in (".json", ".yaml"):
                files.append(save_settings(folder / f"settings{suffix}", settings, overwrite=overwrite,
                                           inputs=tuple(inputs)))
        audio_items = [w for w in wanted if w != "settings"]
        if audio_items:
            master = None
            if "master" in wanted:
                master = {"output": folder / "master.wav"}
                if self.reference_path is not None:
                    master["reference"] = self.reference_path
                else:
                    master["target"] = self.master_target
            report = mixing.mix(self.stems, folder / "mix.wav", settings=settings,
                                stems_out=folder / "stems" if "stems" in wanted else None,
                                session_out=folder / "session.RPP" if "session" in wanted else None,
                                master=master, overwrite=overwrite)
            files.append(report.mix_path)
            files += report.stems_out
            files += [p for p in (report.session_path, report.master_path) if p is not None]
            notes += [n for n in report.notes if n not in self.stems.notes]


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise SettingsError(f"{what} must be a number, got {value!r}")
    return float(value)
