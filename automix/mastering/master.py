"""``master()``: a mix in, a release-ready master out (matched to references or a loudness target).

Steps (each stage has an amount and an off switch):

1. check the input and references (silence, too short, NaN/Inf, clipping, mono, other rates),
2. analyse them (:mod:`automix.mastering.profile`), combine several references with weights,
3. plan the chain: width per region from the side-to-mid levels, tonal-match EQ to the
   reference's spectrum (parametric bands + fine curve, :mod:`automix.mastering.tonal`),
   gentle bus compression when the mix is much more dynamic than the reference,
4. render the chain, land the loudness through the true-peak limiter
   (:mod:`automix.mastering.landing`), then correct the remaining tonal error once,
5. write the master, the report (JSON + PNG) and the A/B preview.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from automix.dsp.dc import DC_CUTOFF_HZ, dc_offset
from automix.dsp.params import MASTERING
from automix.errors import AudioError, AutomixError, MasteringError, SettingsError
from automix.loudness import WARN_DC_OFFSET
from automix.mastering.chain import ChainSettings, render_chain
from automix.mastering.clipper import CLIP_DB
from automix.mastering.landing import MAX_DISTORTION_DB, Landing, land_loudness
from automix.mastering.presets import target_lufs as preset_lufs
from automix.mastering.profile import Profile, analyze_profile, combine_profiles, mean_square, normalised
from automix.mastering.tonal import FINE_LIMIT_DB, FITTED, fit_parametric_eq, smooth_curve
from automix.mastering.width import side_response_db

MIN_DURATION_S = 3.0
"""Shortest input or reference accepted (seconds)."""

DEFAULT_TARGET = "spotify"
"""Loudness target when neither a reference nor a target is given."""

WIDTH_LIMITS_DB = (-12.0, 6.0)
"""Largest narrowing / widening of a region by width matching (dB of side level)."""

MAX_MATCH_DB = 24.0
"""Largest boost or cut the tonal match asks for at any frequency (dB): beyond it a band is
missing from the mix rather than quiet, and boosting it would only raise noise."""

LOUD_TARGET_LUFS = -12.0
"""Targets at least this loud (LUFS) get the bass-boost limit of :attr:`MasteringOptions.bass_tone_db`."""

LOUD_BASS_HZ = 300.0
"""Upper edge (Hz) of the region whose boost is limited on loud targets."""

LOUD_BASS_FLOOR_DB = 6.0
"""The bass limit never cuts a boost below this (dB): it trims the large boosts only (cutting a moderate
bass boost loses loudness the drive must then make up: measured worse on a -10 LUFS case)."""

FINE_LOW_END = "below LOUD_BASS_HZ on targets quieter than LOUD_TARGET_LUFS"
"""Where the fine tonal match (:func:`fine_tonal_target`, 1/12 octave) and the low-end filter design for the
mix's own spectrum (:func:`automix.mastering.chain.refine_low_end`) also run below :data:`LOUD_BASS_HZ`.
On loud targets the low end keeps the 1/6-octave target and the plain cut filter: delivering the bass
curve more exactly cut the mix's strongest bass bands by the 2-3 dB their targets ask (where the plain
4095-tap cut blurs the cut away), which cost loudness the clipper then had to make up -- measured on a
real -17 LUFS mix mastered to -8 LUFS: tonal distance 1.83 -> 1.00 dB, non-linear residual -22.7 ->
-20.3 dB. At -14 LUFS the same mix: 1.74 -> 0.89 dB of tonal distance for a residual still near -40 dB."""

MONO_SIDE_DB = -40.0
"""A side-to-mid level below this counts as mono (dB)."""

LONG_FILE_FRAMES = 1 << 24
"""Files longer than this (frames; 6.3 min at 44.1 kHz) are mastered in place: the chain and the
limiter overwrite the loaded mix, so one whole-file array is held (a second render, rare, reads
the file again)."""


@dataclass
class MasteringOptions:
    """What to do, in units a person reads.

    Attributes
    ----------
    target : str, float or None
        Delivery preset ("spotify", "apple", "ebu", "cd"...) or LUFS; None: the reference's
        loudness (or "spotify" without a reference).
    ceiling_dbtp : float
        True-peak ceiling (dBTP).
    eq_amount, width_amount, dynamics_amount : float
        Strength of tonal matching, width matching and bus compression, 0..1 (1 = full).
    eq, fine_eq, width, dynamics, clipper, limiter : bool
        Stage switches; ``limiter=False`` gives an unlimited (float) master. The bus compressor
        (``dynamics``) is off by default: its gain changes cost more distortion per LU than the
        clipper (see ``clipper``); ``clipper`` puts the soft clipper of
        :mod:`automix.mastering.clipper` ahead of the limiter (the loudness stage for loud targets).
    max_limiting_db : float
        Largest limiter gain reduction allowed to reach the target (dB).
    bass_tone_db : float or None
        Tonal budget of the bass limit on loud targets (dB; None: the full tonal match always). On
        targets at least :data:`LOUD_TARGET_LUFS` loud, the boost the tonal match asks below
        :data:`LOUD_BASS_HZ` is limited to the lowest level whose tonal cost stays within this budget
        (RMS dB of the change to the level-normalised target curve, 31.5 Hz - 16 kHz, 1/6-octave points:
        :func:`bass_limit`). A bass the mix lacks by 10-15 dB, boosted to the reference's, becomes the
        loudest peaks, and the clipper that reaches the loudness distorts everything riding on them;
        the budget keeps the tone close while taking the peaks off the largest boosts.
    max_distortion_db : float or None
        Distortion budget: the loudness stage's non-linear residual in the loudest 10 % of the
        master, relative to it (dB, :data:`automix.mastering.landing.MAX_DISTORTION_DB`); a target
        that needs more stops short with a warning that says what the rest would cost. None: no budget.
    reference_weights : sequence of float or None
        One weight per reference.
    lookahead_ms, release_ms : float or None
        Limiter look-ahead and release (ms); None (default): 1.5 ms and 30 ms behind the clipper
        (:data:`automix.mastering.clipper.LIMITER_LOOKAHEAD_MS`: it only catches the clipped peaks'
        inter-sample overshoot), 5 ms and 150 ms for the limiter alone (``clipper=False``).
    correction_passes : int
        Measure-and-correct passes of the fine EQ after limiting.
    model : path, "auto" or None
        Mastering model whose prediction starts the per-track EQ fit ("auto": the shipped
        ``models/mastering.pt`` when present; None: start from flat).
    """

    target: str | float | None = None
    ceiling_dbtp: float = -1.0
    eq_amount: float = 1.0
    width_amount: float = 1.0
    dynamics_amount: float = 1.0
    eq: bool = True
    fine_eq: bool = True
    width: bool = True
    dynamics: bool = False
    clipper: bool = True
    limiter: bool = True
    max_limiting_db: float = 12.0
    bass_tone_db: float | None = 1.0
    max_distortion_db: float | None = MAX_DISTORTION_DB
    reference_weights: Sequence[float] | None = None
    lookahead_ms: float | None = None
    release_ms: float | None = None
    correction_passes: int = 0
    model: str | os.PathLike | None = "auto"

    def limiter_times(self) -> tuple[float, float]:
        """``(look-ahead, release)`` of the limiter (ms): the options, or the defaults for the stage it is in."""
        from automix.mastering.clipper import LIMITER_LOOKAHEAD_MS, LIMITER_RELEASE_MS

        lookahead, release = (LIMITER_LOOKAHEAD_MS, LIMITER_RELEASE_MS) if self.clipper else (5.0, 150.0)
        return (lookahead if self.lookahead_ms is None else float(self.lookahead_ms),
                release if self.release_ms is None else float(self.release_ms))

    def validate(self) -> None:
        """Raise SettingsError for values out of range."""
        for name in ("eq_amount", "width_amount", "dynamics_amount"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and 0.0 <= v <= 2.0):
                raise SettingsError(f"{name.replace('_', '-')} must be between 0% and 200%, got {v!r}")
        spec = MASTERING.spec("limiter.ceiling_dbtp")
        if not spec.minimum <= self.ceiling_dbtp <= spec.maximum:
            raise SettingsError(f"ceiling {self.ceiling_dbtp:g} dBTP is outside {spec.describe_range()}")
        if not 0.0 <= self.max_limiting_db <= 30.0:
            raise SettingsError(f"max limiting {self.max_limiting_db:g} dB must be between 0 and 30 dB")
        if self.bass_tone_db is not None and not 0.0 <= self.bass_tone_db <= 24.0:
            raise SettingsError(f"bass tone budget {self.bass_tone_db:g} dB must be between 0 and 24 dB")
        if self.max_distortion_db is not None and not -60.0 <= self.max_distortion_db <= 0.0:
            raise SettingsError(f"max distortion {self.max_distortion_db:g} dB must be between -60 and 0 dB")
        for name in ("lookahead_ms", "release_ms"):
            spec = MASTERING.spec(f"limiter.{name}")
            v = getattr(self, name)
            if v is not None and not spec.minimum <= v <= spec.maximum:
                raise SettingsError(f"limiter {name} {v:g} is outside {spec.describe_range()}")


@dataclass
class MasterResult:
    """What :func:`master_audio` / :func:`master` produced.

    Attributes
    ----------
    samples : np.ndarray
        ``(channels, T)`` float32 master.
    sample_rate : int
    settings : ChainSettings
        The chain that was used (readable with :func:`describe_settings`).
    target_lufs : float
    landing : Landing
    input_profile, output_profile : Profile
    reference : Profile or None
    warnings : list of str
    output_path, report_paths, preview_paths : file outputs (when written)
    """

    samples: np.ndarray
    sample_rate: int
    settings: ChainSettings
    target_lufs: float
    landing: Landing
    input_profile: Profile
    reference: Profile | None
    warnings: list[str] = field(default_factory=list)
    input_samples: np.ndarray | None = field(default=None, repr=False)
    input_path: Path | None = None
    output_path: Path | None = None
    report_paths: list[Path] = field(default_factory=list)
    preview_paths: list[Path] = field(default_factory=list)

    _output_profile: Profile | None = field(default=None, repr=False)

    @property
    def output_profile(self) -> Profile:
        """Profile of the master (measured on first use)."""
        if self._output_profile is None:
            self._output_profile = analyze_profile(self.samples, self.sample_rate, name="output")
        return self._output_profile

    @property
    def integrated_lufs(self) -> float:
        return self.landing.integrated_lufs

    @property
    def true_peak_dbtp(self) -> float:
        return self.landing.true_peak_dbtp


# ----------------------------------------------------------------------------- input checks
def check_signal(samples: np.ndarray, sample_rate: int, what: str) -> list[str]:
    """Raise for unusable audio (NaN/Inf, silent, shorter than 3 s); return warnings (clipping).

    Parameters
    ----------
    samples : np.ndarray ``(channels, T)``
    what : str  name used in messages ("input", a file name...).
    """
    from automix.audio import check_not_silent
    from automix.loudness import CLIP_LEVEL

    x = np.asarray(samples)
    if x.ndim != 2 or x.shape[0] not in (1, 2):
        raise AudioError(f"{what}: expected mono or stereo audio shaped (channels, samples), got {x.shape}")
    from automix.mastering import profile

    block = profile.BLOCK_FRAMES  # counts block by block: no whole-file temporaries
    bad = sum(int(np.count_nonzero(~np.isfinite(x[:, i: i + block]))) for i in range(0, x.shape[-1], block))
    if bad:
        raise AudioError(f"{what}: contains {bad} NaN or infinite sample values (damaged file or broken export)")
    duration = x.shape[-1] / float(sample_rate)
    if duration < MIN_DURATION_S:
        raise AudioError(f"{what}: is only {duration:.2f} s long; mastering needs at least {MIN_DURATION_S:g} s "
                         "to measure loudness and tone")
    check_not_silent(x, what)
    warnings = []
    clipped = sum(int(np.count_nonzero(np.abs(x[:, i: i + block]) >= CLIP_LEVEL)) for i in range(0, x.shape[-1], block))
    if clipped > 8:
        warnings.append(f"{what}: {clipped} samples are clipped at full scale; the distortion is already in the "
                        "file and mastering cannot remove it (export the mix with more headroom if you can)")
    return warnings


def _stereo(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return np.repeat(x, 2, axis=0) if x.shape[0] == 1 else x


# ----------------------------------------------------------------------------- planning
def _width_plan(mix: Profile, ref: Profile, amount: float) -> tuple[float, float, float]:
    out = []
    for m, r in zip(mix.width_db, ref.width_db):
        if m < MONO_SIDE_DB:  # nothing to widen
            out.append(0.0)
            continue
        out.append(float(np.clip((r - m) * amount, *WIDTH_LIMITS_DB)))
    return out[0], out[1], out[2]


def _dynamics_plan(settings: ChainSettings, mix: Profile, ref_crest_db: float, amount: float,
                   rms_dbfs: float) -> None:
    excess = mix.crest_db - ref_crest_db
    if amount <= 0 or not math.isfinite(excess) or excess <= 1.0:
        return
    ratio = 1.0 + min(1.0, excess / 8.0) * amount
    settings.set("comp.ratio", ratio)
    settings.set("comp.threshold_db", rms_dbfs + 4.0)
    settings.set("comp.knee_db", 6.0)
    settings.set("comp.attack_ms", 20.0)
    settings.set("comp.release_ms", 200.0)


def _common(a: Profile, b: Profile) -> int:
    return min(len(a.freqs_hz), len(b.freqs_hz))


def tonal_target(mix: Profile, ref: Profile, width_values, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """EQ (dB per band) that moves the mix's stereo spectrum, after the width change, onto the reference's.

    Both spectra are level-normalised (mean over 31.5 Hz - 16 kHz), so the EQ changes tone, not level.
    """
    n = _common(mix, ref)
    freqs = mix.freqs_hz[:n]
    from automix.mastering.chain import settings_array

    side_gain = side_response_db(settings_array(width_values), freqs, sample_rate)
    mix_total = 10 * np.log10(10 ** (mix.mid_db[:n] / 10) + 10 ** ((mix.side_db[:n] + side_gain) / 10) + 1e-30)
    target = normalised(ref.total_db[:n], freqs) - normalised(mix_total, freqs)
    target = np.clip(target, -MAX_MATCH_DB, MAX_MATCH_DB)
    # no boost where the mix has nothing (a band 60 dB below its neighbours is empty, not quiet)
    empty = mix_total < np.max(mix_total) - 90.0
    target[empty] = np.minimum(target[empty], 0.0)
    return freqs, target


def fine_tonal_target(mix: Profile, ref: Profile, width_values,
                      sample_rate: int) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`tonal_target` on the 1/12-octave bands of :func:`automix.mastering.profile.fine_grid`, summed from
    the profiles' per-bin spectra: ``(centres_hz, target_db)``, or None when either profile has none.

    The 1/6-octave target is what the readable bands are fitted to; on real music (a bass line's notes, a
    pad's partials) the power inside one 1/6-octave band is rarely spread evenly, so a curve that matches
    the 1/6-octave levels can miss the levels of bands cut elsewhere (the base-2 1/3-octave bands straddle
    two 1/6-octave bands) by 2-4 dB. The fine curve follows the 1/12-octave target instead, whose bands both
    coarser grids are made of."""
    from automix.mastering.chain import settings_array
    from automix.mastering.profile import FINE_BANDS_PER_OCTAVE, band_power, fine_grid

    if mix.mid_power is None or ref.mid_power is None:
        return None
    centres = fine_grid(min(mix.sample_rate, ref.sample_rate))
    k = FINE_BANDS_PER_OCTAVE
    side_gain = 10.0 ** (side_response_db(settings_array(width_values), centres, sample_rate) / 10.0)
    mix_total = 10 * np.log10(band_power(mix.bin_freqs_hz, mix.mid_power, centres, k)
                              + band_power(mix.bin_freqs_hz, mix.side_power, centres, k) * side_gain + 1e-30)
    ref_total = 10 * np.log10(band_power(ref.bin_freqs_hz, ref.mid_power + ref.side_power, centres, k) + 1e-30)
    target = np.clip(normalised(ref_total, centres) - normalised(mix_total, centres), -MAX_MATCH_DB, MAX_MATCH_DB)
    empty = mix_total < np.max(mix_total) - 90.0
    target[empty] = np.minimum(target[empty], 0.0)
    return centres, target


_MODELS: dict[str, Any] = {}


def _model_prediction(model: Any, mix: Profile, ref: Profile) -> np.ndarray | None:
    """MASTERING values the mastering model proposes (numpy, the model run without torch), or None (no
    model, or features it cannot read)."""
    from automix.mastering.model import DEFAULT_MODEL, feature_array, load_predictor, predict_values

    if model is None:
        return None
    path = DEFAULT_MODEL if str(model) == "auto" else Path(model)
    if str(model) == "auto" and not path.is_file():
        return None
    key = str(path)
    if key not in _MODELS:
        _MODELS[key] = load_predictor(path)
    net = _MODELS[key]
    if feature_array(mix, ref).shape[0] != net.n_features:
        return None  # e.g. a low sample rate whose spectrum stops below the model's top band
    return predict_values(net, mix, ref)


def bass_limit(freqs_hz: np.ndarray, target_db: np.ndarray, budget_db: float) -> tuple[float, float]:
    """``(cap, cost)``: the lowest boost ``cap`` (dB, at least :data:`LOUD_BASS_FLOOR_DB`) below
    :data:`LOUD_BASS_HZ` whose tonal cost stays within ``budget_db``, and that cost.

    The cost of a cap is the RMS (dB) over the target's points in 31.5 Hz - 16 kHz (1/6-octave:
    each octave counts alike) of the change ``min(target, cap) - target`` after removing its mean
    (the tonal distance is measured on level-normalised spectra). The cost falls as the cap rises,
    so the cap is found by bisection.
    """
    f = np.asarray(freqs_hz, dtype=np.float64)
    t = np.asarray(target_db, dtype=np.float64)
    bass = f < LOUD_BASS_HZ
    band = (f >= 31.5) & (f <= 16000.0)
    top = float(np.max(t[bass], initial=0.0))

    def cost(cap: float) -> float:
        d = np.where(bass, np.minimum(t, cap) - t, 0.0)[band]
        return float(np.sqrt(np.mean((d - d.mean()) ** 2))) if d.size else 0.0

    floor = LOUD_BASS_FLOOR_DB
    if top <= floor:
        return top, 0.0
    if cost(floor) <= budget_db:
        return floor, cost(floor)
    lo, hi = floor, top  # cost(lo) > budget >= cost(hi) = 0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if cost(mid) > budget_db:
            lo = mid
        else:
            hi = mid
    return hi, cost(hi)


def plan_chain(mix: Profile, ref: Profile | None, sample_rate: int, options: MasteringOptions,
               rms_dbfs: float, target_lufs: float | None = None,
               notes: list[str] | None = None) -> tuple[ChainSettings, Any]:
    """Choose the chain's settings for ``mix`` towards ``ref`` (or a plain loudness target).

    ``target_lufs`` (when known) at least :data:`LOUD_TARGET_LUFS` loud limits the bass boost within
    the tonal budget :attr:`MasteringOptions.bass_tone_db` (:func:`bass_limit`); ``notes`` then receives
    a line saying so when the limit cut the match by more than 1 dB."""
    settings = ChainSettings(values=MASTERING.defaults(dtype=np.float32))
    settings.set("limiter.ceiling_dbtp", options.ceiling_dbtp)
    lookahead, release = options.limiter_times()
    settings.set("limiter.lookahead_ms", lookahead)
    settings.set("limiter.release_ms", release)
    match = None
    if ref is not None and options.width and options.width_amount > 0:
        low, mid, high = _width_plan(mix, ref, options.width_amount)
        settings.set("width.low_side_db", low)
        settings.set("width.mid_side_db", mid)
        settings.set("width.high_side_db", high)
    if ref is not None and options.eq and options.eq_amount > 0:
        freqs, target = tonal_target(mix, ref, settings.values, sample_rate)
        budget = options.bass_tone_db
        cap = None
        if budget is not None and target_lufs is not None and target_lufs >= LOUD_TARGET_LUFS:
            asked = target * options.eq_amount
            cap, cost = bass_limit(freqs, asked, budget)
            bass = freqs < LOUD_BASS_HZ
            most = float(np.max(asked[bass], initial=0.0))
            if cap >= most - 1.0:
                cap = None
            else:
                target = target.copy()
                target[bass] = np.minimum(target[bass], cap / max(options.eq_amount, 1e-6))
                if notes is not None:
                    notes.append(f"bass boost held at +{cap:.1f} dB below {LOUD_BASS_HZ:g} Hz (the reference asked up "
                                 f"to +{most:.1f} dB; {cost:.1f} dB of tonal distance): at {target_lufs:.1f} LUFS the "
                                 f"boosted bass peaks would cost clipping (--bass-tone none keeps the full match)")
        base = settings.values
        predicted = _model_prediction(options.model, mix, ref)
        if predicted is not None and options.eq_amount == 1.0:
            base = base.copy()
            for name in FITTED:
                base[MASTERING.index(name)] = predicted[MASTERING.index(name)]
        match = fit_parametric_eq(freqs, target * options.eq_amount, sample_rate, base=base)
        eq_idx = [i for i, n in enumerate(MASTERING.names) if n.startswith("eq.")]
        settings.values[eq_idx] = match.values[eq_idx]
        if options.fine_eq:
            settings.fine_freqs_hz = freqs
            settings.fine_db = match.fine_db.copy()
            from automix.dsp.eq import eq_response
            from automix.mastering.chain import settings_array

            loud = target_lufs is not None and target_lufs >= LOUD_TARGET_LUFS
            fine = fine_tonal_target(mix, ref, settings.values, sample_rate)
            if fine is not None:  # the fine curve on 1/12-octave bands, from the spectra's bins
                fine_freqs, fine_target = fine
                low = fine_freqs < LOUD_BASS_HZ
                if loud:  # the low end keeps the 1/6-octave target (see FINE_LOW_END)
                    fine_target[low] = np.interp(np.log(fine_freqs[low]), np.log(freqs), target)
                if cap is not None:
                    fine_target[low] = np.minimum(fine_target[low], cap / max(options.eq_amount, 1e-6))
                bands = 20.0 * np.log10(np.maximum(np.abs(eq_response(settings_array(settings.values), MASTERING,
                                                                      fine_freqs, sample_rate)), 1e-9))
                settings.fine_freqs_hz = fine_freqs
                settings.fine_db = np.clip(fine_target * options.eq_amount - bands, -FINE_LIMIT_DB, FINE_LIMIT_DB)
            if mix.mid_power is not None and not loud:
                settings.mix_spectrum = (mix.bin_freqs_hz, mix.mid_power, mix.side_power)
    if options.dynamics and options.dynamics_amount > 0:
        ref_crest = ref.crest_db if ref is not None else 16.0
        _dynamics_plan(settings, mix, ref_crest, options.dynamics_amount, rms_dbfs)
    return settings, match


# ----------------------------------------------------------------------------- the API on arrays
def reference_profile_of(samples: np.ndarray, sample_rate: int, label: str) -> tuple[Profile, list[str]]:
    """Check and measure one reference track: its :class:`Profile` and warnings.

    A mono reference (or one with no side signal) gets no width (NaN): the mix keeps its own.
    Raises :class:`AudioError` like :func:`check_signal`.
    """
    warnings = check_signal(samples, sample_rate, label)
    p = analyze_profile(_stereo(samples), sample_rate, name=label)
    if np.asarray(samples).shape[0] == 1 or max(p.width_db) < MONO_SIDE_DB:
        warnings.append(f"{label} is mono: its stereo width is not matched")
        p.width_db = (math.nan, math.nan, math.nan)
    return p, warnings


def _load_reference(path: Path, label: str) -> tuple[Profile, list[str]]:
    samples, rate = _load(path)
    return reference_profile_of(samples, rate, label)


def master_audio(samples: np.ndarray, sample_rate: int,
                 references: Sequence[tuple[np.ndarray, int]] | Sequence[Profile] = (),
                 options: MasteringOptions | None = None, *, name: str = "input",
                 reference_profile: Profile | None = None,
                 progress: Callable[[str], None] | None = None,
                 reload: Callable[[np.ndarray], None] | None = None) -> MasterResult:
    """Master ``samples`` ``(channels, T)`` at ``sample_rate`` (kept: no resampling).

    Parameters
    ----------
    samples : np.ndarray
        Mono or stereo mix, full scale +-1.
    sample_rate : int
        Hz.
    references : sequence of ``(samples, sample_rate)`` or of :class:`Profile`
        Tracks to match (any rate, mono or stereo); empty for a plain loudness target.
    options : MasteringOptions
    reference_profile : Profile, optional
        An already combined target profile (album mode); overrides ``references``.
    progress : callable, optional
        Called with the name of each stage as it starts.
    reload : callable, optional
        Master in place: ``samples`` (float32 stereo, C-contiguous, given up by the caller) is
        overwritten by the master, and ``reload(samples)`` fills it with the input again when a
        second render is needed. The result then has no ``input_samples``.

    Returns
    -------
    MasterResult
    """
    import sys

    torch = sys.modules.get("torch")  # mastering runs without torch; a caller that imported it keeps its threads
    threads = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(1)  # any torch work here is tiny ops: threads only add waiting
    try:
        return _master_audio(samples, sample_rate, references, options, name=name,
                             reference_profile=reference_profile, progress=progress, reload=reload)
    finally:
        if torch is not None:
            torch.set_num_threads(threads)


def _master_audio(samples, sample_rate, references, options, *, name, reference_profile, progress,
                  reload=None) -> MasterResult:
    options = options or MasteringOptions()
    options.validate()
    step = progress or (lambda _stage: None)
    step("analysing")
    warnings = check_signal(samples, sample_rate, name)
    x = _stereo(samples)
    renderer = _Renderer(x, sample_rate, in_place=reload is not None, reload=reload)

    ref = reference_profile
    if ref is None and references:
        profiles = []
        for i, item in enumerate(references):
            if isinstance(item, Profile):
                profiles.append(item)
                continue
            p, notes = reference_profile_of(*item, label=f"reference {i + 1}")
            warnings += notes
            profiles.append(p)
        ref = combine_profiles(profiles, options.reference_weights)
    mix = analyze_profile(x, sample_rate, name=name)
    if ref is not None and any(math.isnan(w) for w in ref.width_db):
        ref.width_db = mix.width_db  # mono reference: keep the mix's width
    if options.target is not None:
        target = preset_lufs(options.target)
    elif ref is not None:
        target = float(ref.integrated_lufs)
    else:
        target = preset_lufs(DEFAULT_TARGET)

    rms_dbfs = 10 * math.log10(max(mean_square(x), 1e-20))
    step("planning")
    settings, _ = plan_chain(mix, ref, sample_rate, options, rms_dbfs, target_lufs=target, notes=warnings)
    dc = dc_offset(x)
    if dc > WARN_DC_OFFSET:  # -60 dBFS, where analyze warns
        settings.dc_cutoff_hz = DC_CUTOFF_HZ
        warnings.append(f"{name} has a DC offset of {100 * dc:.2f}% of full scale: removed "
                        f"({DC_CUTOFF_HZ:g} Hz high-pass)")
    step("rendering")
    step("limiting")
    landing = _land(renderer, settings, target, options)

    passes = options.correction_passes if (ref is not None and options.eq and options.fine_eq
                                           and options.eq_amount > 0) else 0
    for _ in range(passes):
        step("correcting")
        out_profile = analyze_profile(landing.samples, sample_rate, name="output")
        n = _common(out_profile, ref)
        freqs = out_profile.freqs_hz[:n]
        err = normalised(ref.total_db[:n], freqs) - normalised(out_profile.total_db[:n], freqs)
        err = smooth_curve(err, 1) * options.eq_amount
        from automix.mastering.tonal import curve_on_bins

        current = curve_on_bins(settings.fine_freqs_hz, settings.fine_db, freqs)  # onto the profile's grid
        settings.fine_db = np.clip(current + err, -FINE_LIMIT_DB, FINE_LIMIT_DB)
        settings.fine_freqs_hz = freqs
        landing = None  # the former master is freed before the next one is rendered
        landing = _land(renderer, settings, target, options)

    settings.set("output_gain_db", landing.drive_db)
    warnings += landing.warnings
    if math.isfinite(mix.integrated_lufs) and mix.integrated_lufs > target + 0.1:
        warnings.append(f"{name} ({mix.integrated_lufs:.1f} LUFS) is louder than the target {target:.1f} LUFS: "
                        "turned down")
    return MasterResult(samples=landing.samples, sample_rate=sample_rate, settings=settings, target_lufs=target,
                        landing=landing, input_profile=mix, reference=ref,
                        warnings=warnings, input_samples=None if renderer.in_place else x)


class _Renderer:
    """Renders the chain on the mix ``x``: into a new array, or (``in_place``) over ``x`` itself, refilled
    with the input by ``reload(x)`` before every render after the first (no reload: ``x`` is ours to
    overwrite once, a later render is refused)."""

    def __init__(self, x: np.ndarray, sample_rate: int, in_place: bool, reload: Callable[[np.ndarray], None] | None):
        self.x, self.sample_rate, self.reload = x, sample_rate, reload
        self.in_place = in_place and x.dtype == np.float32 and x.flags.c_contiguous and x.flags.writeable
        self.dirty = False

    @property
    def can_render(self) -> bool:
        return not (self.in_place and self.dirty and self.reload is None)

    def __call__(self, settings: ChainSettings) -> np.ndarray:
        if not self.in_place:
            y = render_chain(self.x, self.sample_rate, settings)
            return y.copy() if np.shares_memory(y, self.x) else y  # a neutral chain returns the input itself
        if self.dirty:
            if self.reload is None:
                raise MasteringError("internal: the mix was already overwritten by its master")
            self.reload(self.x)
        self.dirty = True
        return render_chain(self.x, self.sample_rate, settings, in_place=True)


def _land(renderer: _Renderer, settings: ChainSettings, target: float, options: MasteringOptions) -> Landing:
    """Render the chain and land its loudness. Long files (the renderer works in place) get the master
    written over the rendered chain output (no array besides the input); shorter ones keep the chain
    output beside the master, so the loudness stage's distortion is measured and its budget applied."""
    def render() -> np.ndarray:
        return renderer(settings)

    return land_loudness(render(), renderer.sample_rate, target, ceiling_dbtp=options.ceiling_dbtp,
                         limiter=options.limiter, max_limiting_db=options.max_limiting_db,
                         clip_db=CLIP_DB if options.clipper else None, max_distortion_db=options.max_distortion_db,
                         lookahead_ms=options.limiter_times()[0], release_ms=options.limiter_times()[1],
                         in_place=renderer.in_place, render=render if renderer.can_render else None)


# ----------------------------------------------------------------------------- the API on files
SUBTYPES = {"16": "PCM_16", "24": "PCM_24", "32f": "FLOAT", "float": "FLOAT",
            "PCM_16": "PCM_16", "PCM_24": "PCM_24", "FLOAT": "FLOAT"}


def _options_from_kwargs(options: MasteringOptions | None, kwargs: dict) -> MasteringOptions:
    opts = options or MasteringOptions()
    for key, value in kwargs.items():
        if not hasattr(opts, key):
            raise SettingsError(f"unknown mastering option {key!r}")
        setattr(opts, key, value)
    return opts


def _as_paths(reference: Any) -> list[Path]:
    if reference is None:
        return []
    if isinstance(reference, (str, os.PathLike)):
        return [Path(reference)]
    return [Path(r) for r in reference]


def _load(path: Path) -> tuple[np.ndarray, int]:
    from automix.audio import load_audio

    audio = load_audio(path, mono_to_stereo=False, downmix=True)
    return audio.samples, audio.sample_rate


def read_into(path: Path, out: np.ndarray, start: int = 0, block: int = 1 << 16) -> np.ndarray:
    """Read ``out.shape[-1]`` frames of ``path`` from frame ``start`` into ``out`` ``(2, frames)`` float32
    (more than two channels folded to stereo, mono doubled), block by block: the same values as
    :func:`_load` then :func:`_stereo`, without another whole-file array."""
    import soundfile as sf

    from automix.audio import downmix_to_stereo

    pos = 0
    with sf.SoundFile(str(path)) as f:
        f.seek(start)
        while pos < out.shape[-1]:
            part = f.read(min(block, out.shape[-1] - pos), dtype="float32", always_2d=True).T
            if part.shape[-1] == 0:
                raise AudioError(f"{path.name}: ended early while being read again")
            if part.shape[0] > 2:
                part = downmix_to_stereo(part)
            out[:, pos: pos + part.shape[-1]] = part  # a mono row is broadcast to both channels
            pos += part.shape[-1]
    return out


def master(mix: str | os.PathLike, output: str | os.PathLike, *, reference: Any = None,
           options: MasteringOptions | None = None, bit_depth: str = "24", dither: bool = True,
           report_dir: str | os.PathLike | None = None, preview_dir: str | os.PathLike | None = None,
           overwrite: bool = False, progress: bool = False, **kwargs: Any) -> MasterResult:
    """Master the file ``mix`` into ``output`` (WAV/FLAC/AIFF), matching ``reference`` or a target.

    Parameters
    ----------
    mix, output : path
        Input mix and output file (format from the extension; never overwrites an input,
        an existing output only with ``overwrite``).
    reference : path or list of paths, optional
        Reference track(s) (any rate, mono or stereo); weights in ``reference_weights``.
    options : MasteringOptions, optional
        Or pass its fields as keyword arguments (``target="apple"``, ``eq_amount=0.7``...).
    bit_depth : {"16", "24", "32f"}
        Output encoding (16 bit gets TPDF dither). ``limiter=False`` forces 32-bit float
        unless the master stays below full scale.
    report_dir : path, optional
        Write ``<name>.report.json`` and ``<name>.report.png`` there.
    preview_dir : path, optional
        Write the loudness-matched A/B preview of the loudest 30 s there.
    progress : bool
        Show a progress bar on stderr.

    Returns
    -------
    MasterResult (with ``output_path``, ``report_paths``, ``preview_paths``).
    """
    from automix.audio import check_output_path
    from automix.memory import check_master_fits

    opts = _options_from_kwargs(options, kwargs)
    opts.validate()
    subtype = SUBTYPES.get(str(bit_depth))
    if subtype is None:
        raise SettingsError(f"bit depth {bit_depth!r} is not one of 16, 24, 32f")
    mix_path = Path(mix)
    ref_paths = _as_paths(reference)
    output = check_output_path(output, overwrite=overwrite, inputs=[mix_path, *ref_paths])
    check_master_fits(mix_path)  # a file too long for this machine's memory is refused before it is read
    if opts.reference_weights is not None and len(opts.reference_weights) != len(ref_paths):
        raise SettingsError(f"{len(opts.reference_weights)} reference weights given for {len(ref_paths)} references")
    bar = _progress_bar(progress, total=6, desc=mix_path.name)
    try:
        # the references are read and measured on a second thread while the mix is read
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(lambda: [_load_reference(p, f"reference {i + 1}") for i, p in enumerate(ref_paths)])
            samples, rate = _load(mix_path)
            try:
                measured = pending.result()
            except AutomixError as exc:  # name the file, not its place in the list
                text = str(exc)
                for i, p in enumerate(ref_paths):
                    text = text.replace(f"reference {i + 1}:", f"{p}:")
                raise type(exc)(text) from None
        refs = [p for p, _ in measured]
        ref_warnings = [w for _, notes in measured for w in notes]
        reload = None
        if samples.shape[-1] > LONG_FILE_FRAMES:  # long: master in place, no second whole-file array
            samples = _stereo(samples)
            reload = (lambda arr: read_into(mix_path, arr))
        result = master_audio(samples, rate, refs, opts, name=mix_path.name,
                              progress=(lambda s: _advance(bar, s)), reload=reload)
        samples = None
        result.warnings = ref_warnings + result.warnings
        result.input_path = mix_path
        for i, p in enumerate(ref_paths):
            result.warnings = [w.replace(f"reference {i + 1}", p.name) for w in result.warnings]
        _advance(bar, "writing")
        result.output_path = _write_master(result, output, subtype, dither, opts, overwrite, [mix_path, *ref_paths])
        if report_dir is not None:
            from automix.mastering.report import write_report
            result.report_paths = write_report(result, report_dir, stem=output.stem, input_path=mix_path,
                                               reference_paths=ref_paths, overwrite=overwrite)
        if preview_dir is not None:
            from automix.mastering.preview import write_preview
            result.preview_paths = write_preview(result, preview_dir, stem=output.stem, overwrite=overwrite)
    finally:
        if bar is not None:
            bar.close()
    return result


def _write_master(result: MasterResult, output: Path, subtype: str, dither: bool, opts: MasteringOptions,
                  overwrite: bool, inputs: Sequence[Path]) -> Path:
    from automix.loudness import sample_peak

    if subtype != "FLOAT" and sample_peak(result.samples) >= 1.0:
        if output.suffix.lower() in (".wav", ".aif", ".aiff"):
            result.warnings.append("the unlimited master goes above full scale: written as 32-bit float")
            subtype = "FLOAT"
        else:
            raise MasteringError(f"{output.name}: the master goes above full scale without the limiter; "
                                 "write a WAV (32-bit float) or keep the limiter on")
    return write_blocks(output, result.samples, result.sample_rate, subtype=subtype, dither=dither,
                        overwrite=overwrite, inputs=inputs)


WRITE_BLOCK_FRAMES = 1 << 18
"""Frames encoded per block by :func:`write_blocks`."""


def write_blocks(path: Path, samples: np.ndarray, sample_rate: int, *, subtype: str, dither: bool = True,
                 overwrite: bool = False, inputs: Sequence[Path] = (), block: int = WRITE_BLOCK_FRAMES,
                 rng: np.random.Generator | None = None) -> Path:
    """:func:`automix.audio.write_audio` for long masters: encodes ``samples`` ``(channels, T)`` block by block
    (quantisation and dither of one block at a time instead of float64 copies of the whole file), into a
    temporary file in the output folder that then replaces ``path`` in one step.

    Same rules as ``write_audio`` (formats, never an input, ``overwrite``); anything it would refuse
    is passed to it for its message.
    """
    import soundfile as sf

    from automix.audio import (PCM_BITS, WRITE_FORMATS, WRITE_SUBTYPES, atomic_audio_file, check_output_path,
                               interleaved_codes, write_audio)

    path = check_output_path(path, overwrite=overwrite, inputs=inputs)
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    subtype = subtype.upper()
    x = np.asarray(samples)
    if fmt is None or subtype not in WRITE_SUBTYPES[fmt] or x.ndim != 2 or x.shape[-1] == 0:
        return write_audio(path, x, sample_rate, subtype=subtype, dither=dither, overwrite=overwrite,
                           inputs=inputs, rng=rng)
    bits = PCM_BITS.get(subtype)
    rng = np.random.default_rng() if rng is None else rng
    with atomic_audio_file(path) as tmp:
        with sf.SoundFile(str(tmp), "w", int(sample_rate), x.shape[0], subtype=subtype, format=fmt) as out:
            for start in range(0, x.shape[-1], block):
                part = np.asarray(x[:, start: start + block], dtype=np.float32)
                if not np.all(np.isfinite(part)):
                    raise AudioError(f"{path.name}: the master contains NaN or infinite values (not written)")
                if bits is not None:
                    out.write(interleaved_codes(part, bits, dither=dither and bits <= 16, rng=rng)[0])
                else:
                    out.write(np.ascontiguousarray(part.T))
    return path


def _progress_bar(enabled: bool, total: int, desc: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", leave=False)


def _advance(bar, stage: str) -> None:
    if bar is not None:
        bar.set_postfix_str(stage)
        bar.update(1)


def describe_settings(settings: ChainSettings) -> list[str]:
    """Readable lines: "+2.1 dB high shelf at 8.2 kHz", width per region, compressor, gain, limiter."""
    s = settings.get
    lines = []

    def hz(f: float) -> str:
        return f"{f / 1000:.1f} kHz" if f >= 1000 else f"{f:.0f} Hz"

    if abs(s("eq.low_shelf.gain_db")) >= 0.05:
        lines.append(f"{s('eq.low_shelf.gain_db'):+.1f} dB low shelf at {hz(s('eq.low_shelf.freq_hz'))}")
    for band in ("peak1", "peak2", "peak3"):
        if abs(s(f"eq.{band}.gain_db")) >= 0.05:
            lines.append(f"{s(f'eq.{band}.gain_db'):+.1f} dB bell at {hz(s(f'eq.{band}.freq_hz'))}, "
                         f"Q {s(f'eq.{band}.q'):.2f}")
    if abs(s("eq.high_shelf.gain_db")) >= 0.05:
        lines.append(f"{s('eq.high_shelf.gain_db'):+.1f} dB high shelf at {hz(s('eq.high_shelf.freq_hz'))}")
    if settings.fine_db is not None and np.any(np.abs(settings.fine_db) > 0.05):
        lines.append(f"fine correction curve: up to {np.max(np.abs(settings.fine_db)):.1f} dB")
    for region, key, f in (("below", "low", "low_freq_hz"), ("between crossovers", "mid", None),
                           ("above", "high", "high_freq_hz")):
        v = s(f"width.{key}_side_db")
        if abs(v) >= 0.05:
            where = f"{region} {hz(s('width.' + f))}" if f else region
            lines.append(f"stereo width {where}: side {v:+.1f} dB")
    if settings.comp_active:
        lines.append(f"bus compressor {s('comp.ratio'):.2f}:1 above {s('comp.threshold_db'):.1f} dBFS "
                     f"(attack {s('comp.attack_ms'):.0f} ms, release {s('comp.release_ms'):.0f} ms)")
    lines.append(f"gain into limiter {s('output_gain_db'):+.1f} dB, ceiling {s('limiter.ceiling_dbtp'):.1f} dBTP")
    return lines
