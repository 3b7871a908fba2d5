"""Raw-like stems: take a mix engineer's per-stem decisions back out of finished stems.

The FxNorm idea (Martinez-Ramirez et al., ISMIR 2022): the mix model learns more from
stems whose mix decisions have been normalised away than from randomly damaged ones,
because every decision it must put back is then a real one. :func:`make_raw_like`
normalises one song's stems, per stem, in this order (each stage is deterministic and
has no latency: gains are computed from centred windows, the EQ is a linear-phase FIR
whose delay is compensated, so the output lines up sample for sample with the input):

0. **DC** — the stem's DC offset is removed first, with a zero-phase (forward-backward)
   version of the 5 Hz Butterworth high-pass ``automix mix`` applies to stems at load
   (:func:`automix.dsp.dc.remove_dc`), so the output stays aligned: the gains below lift quiet
   passages and would otherwise lift an inaudible offset with them (a rendered synth's
   0.04 x RMS offset became 0.5 x RMS), and the mixer would then take it out, so the raw-like
   stem's crest factor and left/right balance would not be the ones the mixer hears. The
   dynamics stage's fast gains can rectify a lopsided transient into a new offset, so the
   high-pass runs again after it.
1. **Tone** — the stem's smoothed long-term spectrum (1/3-octave smoothing, dB against
   log-frequency) is moved by ``tone_amount`` toward one straight line of slope
   ``tone_slope_db_per_octave`` through the stem's own mean level (role-independent), with
   a linear-phase FIR. The fitted spectral tilt moves by the same fraction toward the
   target slope.
2. **Dynamics**, two time scales, both by ``dynamics_amount``:
   *levelling* — the short-term (3 s, K-weighted) loudness is pulled toward the stem's
   median short-term loudness (a zero-phase leveller: quiet passages up, loud passages down,
   deviations beyond ``levelling_range_lu`` treated as that far, readings below the EBU
   loudness-range gate — silence, fades — left alone; refined over a few passes so the
   levelled curve lands where it is aimed), so its short-term loudness spread shrinks; *crest* — a fast zero-phase envelope gain (``crest_window_ms``
   against the 400 ms level) moves the stem's median windowed crest factor toward
   ``crest_db``: a spiky stem is made flatter, an over-compressed one is expanded (within
   ``crest_range_db`` of gain; peaks shorter than the fast window, as in noise-like
   transients, stay, so such stems move part of the way).
3. **Placement** — the stem's principal left/right direction is rotated to the centre: a
   stem whose two channels are one source scaled (the orthogonal part ``mono_threshold_db``
   below it) is panned mono and becomes that source, centred; a genuinely stereo stem keeps
   its image (the part across its main direction stays as side) but loses its placement:
   both channels end with equal energy.
4. **Loudness** — integrated loudness (BS.1770, :mod:`automix.loudness`) to ``stem_lufs``.

The returned :class:`RawLikeStem` records say what was taken out (for analysis and for
losses that want the real decision): gain, pan/balance, levelling and crest gains, the
tone correction curve.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from automix.dsp.dc import DC_CUTOFF_HZ
from automix.errors import AudioError
from automix.loudness import HOP_S, SHORT_TERM_S, hop_energies, integrated_loudness, long_term_power_spectrum

#: Version of the algorithm; part of the decoded-cache key, so a change re-normalises the songs.
RAW_LIKE_VERSION: int = 4
#: Centre frequencies of the tone analysis grid: 1/6 octave from 20 Hz, Hz.
TONE_GRID_OCTAVE_STEP: float = 1.0 / 6.0
#: Lowest frequency the tone stage analyses and corrects, Hz.
TONE_LOW_HZ: float = 30.0
#: Highest frequency the tone stage analyses and corrects, Hz (or 0.45 x the sample rate).
TONE_HIGH_HZ: float = 16000.0
#: Bands more than this below the stem's loudest smoothed band are left out of the tilt fit, dB.
TONE_FLOOR_DB: float = 60.0
#: Window of the crest-factor measure (and of the slow reference level), s.
CREST_BLOCK_S: float = 0.4
#: Windows quieter than this below the stem's loudest are left out of the crest measure, dB.
CREST_GATE_DB: float = 30.0


@dataclass
class RawLike:
    """Settings of the raw-like normalisation (see the module docstring).

    Parameters
    ----------
    stem_lufs : float
        Integrated loudness every stem ends at, LUFS.
    dynamics_amount : float
        0 = dynamics untouched; 1 = short-term loudness fully levelled to the median and the
        crest factor fully moved to ``crest_db``.
    levelling_range_lu : float
        Short-term loudness further than this from the median is levelled as if it were this
        far, LU (so at most ``dynamics_amount * levelling_range_lu`` dB of gain).
    crest_db : float
        Role-independent target of the median 400 ms crest factor (peak / RMS), dB.
    crest_window_ms : float
        Window of the fast envelope of the crest stage, ms.
    crest_range_db : float
        Largest fast gain the crest stage applies, either way, dB.
    tone_amount : float
        0 = spectrum untouched; 1 = smoothed spectrum moved fully onto the target line
        (within ``tone_max_db``).
    tone_slope_db_per_octave : float
        Slope of the role-independent target spectrum (power spectral density), dB/octave.
    tone_max_db : float
        Largest boost or cut of the tone correction, dB.
    tone_smoothing_octaves : float
        Width of the spectral smoothing, octaves.
    fir_ms : float
        Length of the linear-phase correction filter, ms (odd number of taps).
    mono_threshold_db : float
        A stereo stem whose part orthogonal to its main direction is this far below it
        (energy, dB) counts as panned mono.
    """

    stem_lufs: float = -23.0
    dynamics_amount: float = 0.5
    levelling_range_lu: float = 15.0
    crest_db: float = 12.0
    crest_window_ms: float = 15.0
    crest_range_db: float = 12.0
    tone_amount: float = 0.5
    tone_slope_db_per_octave: float = -4.5
    tone_max_db: float = 18.0
    tone_smoothing_octaves: float = 1.0 / 3.0
    fir_ms: float = 85.0
    mono_threshold_db: float = -30.0

    def __post_init__(self) -> None:
        for name in ("dynamics_amount", "tone_amount"):
            v = float(getattr(self, name))
            if not 0.0 <= v <= 1.0:
                raise AudioError(f"raw-like {name} must be between 0 and 1, not {v}")
        for name in ("levelling_range_lu", "crest_window_ms", "crest_range_db", "tone_max_db",
                     "tone_smoothing_octaves", "fir_ms"):
            if not float(getattr(self, name)) > 0.0:
                raise AudioError(f"raw-like {name} must be positive, not {getattr(self, name)}")

    def to_dict(self) -> dict[str, float]:
        """Plain settings (cache keys, logs)."""
        return {k: float(v) for k, v in asdict(self).items()}

    def apply(self, stems: Any, sample_rate: int, roles: Sequence[int] | None = None) -> "RawLikeResult":
        """:func:`make_raw_like` with these settings."""
        return make_raw_like(stems, sample_rate, roles, self)


@dataclass
class RawLikeStem:
    """What :func:`make_raw_like` took out of one stem.

    Attributes
    ----------
    role : int
        The stem's role index (:mod:`automix.model.roles`), -1 if not given.
    silent : bool
        The stem had no measurable loudness and was returned unchanged.
    input_lufs : float
        Integrated loudness of the input stem, LUFS.
    gain_db : float
        Final loudness gain applied, dB (so the stem's level in its mix was about
        ``stem_lufs - gain_db`` plus what the other stages changed).
    panned_mono : bool
        The stem was one source panned; it is now centred mono.
    pan : float
        Pan position of the stem's principal direction, removed (-1 left .. 1 right,
        constant-power law of :mod:`automix.dsp.pan`).
    balance_db : float
        Left-minus-right energy balance removed, dB.
    levelling_db : tuple of float
        (min, median, max) of the levelling gain, dB.
    spread_lu : tuple of float
        Short-term loudness spread (:func:`loudness_spread_lu`) before and after the
        levelling, LU.
    crest_db : tuple of float
        Median 400 ms crest factor before and after the crest stage, dB.
    crest_exponent : float
        The crest stage's gain is ``-crest_exponent * (fast level - slow level)`` dB
        (positive: compressing, negative: expanding).
    tilt_db_per_octave : tuple of float
        Fitted spectral tilt before and after the tone stage (as designed), dB/octave.
    tone_freqs_hz, tone_correction_db : np.ndarray
        The tone correction curve applied (grid, Hz; gain, dB).
    """

    role: int = -1
    silent: bool = False
    input_lufs: float = math.nan
    gain_db: float = 0.0
    panned_mono: bool = False
    pan: float = 0.0
    balance_db: float = 0.0
    levelling_db: tuple[float, float, float] = (0.0, 0.0, 0.0)
    spread_lu: tuple[float, float] = (math.nan, math.nan)
    crest_db: tuple[float, float] = (math.nan, math.nan)
    crest_exponent: float = 0.0
    tilt_db_per_octave: tuple[float, float] = (math.nan, math.nan)
    tone_freqs_hz: np.ndarray = field(default_factory=lambda: np.zeros(0))
    tone_correction_db: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["tone_freqs_hz"] = [round(float(v), 2) for v in self.tone_freqs_hz]
        out["tone_correction_db"] = [round(float(v), 3) for v in self.tone_correction_db]
        return out


@dataclass
class RawLikeResult:
    """Raw-like stems (S, 2, T), same type as the input, and one record per stem."""

    stems: Any
    records: list[RawLikeStem]


# --------------------------------------------------------------------------- entry point


def make_raw_like(stems: Any, sample_rate: int, roles: Sequence[int] | None = None,
                  settings: RawLike | None = None) -> RawLikeResult:
    """Normalise one song's stems into raw-like stems (see the module docstring).

    Parameters
    ----------
    stems : np.ndarray or torch.Tensor, (S, C, T) with C = 1 or 2
        The song's stems, full scale +-1, aligned.
    sample_rate : int
        Hz.
    roles : sequence of int, optional
        Role index of each stem (:mod:`automix.model.roles`); only recorded — the targets
        are role-independent.
    settings : RawLike, optional
        Defaults to ``RawLike()``.

    Returns
    -------
    RawLikeResult
        ``stems`` (S, 2, T) float32 (a torch tensor on the input's device when given one),
        time-aligned with the input, and the per-stem records.
    """
    settings = settings or RawLike()
    torch_device = None
    if hasattr(stems, "detach") and hasattr(stems, "cpu"):  # torch tensor
        torch_device = stems.device
        array = stems.detach().cpu().numpy()
    else:
        array = np.asarray(stems)
    if array.ndim != 3 or array.shape[1] not in (1, 2):
        raise AudioError(f"stems must be shaped (stems, channels 1 or 2, samples); got {array.shape}")
    if roles is not None and len(roles) != array.shape[0]:
        raise AudioError(f"{len(roles)} roles for {array.shape[0]} stems")
    sample_rate = int(sample_rate)
    out = np.zeros((array.shape[0], 2, array.shape[-1]), dtype=np.float32)
    records = []
    for i in range(array.shape[0]):
        x = np.asarray(array[i], dtype=np.float64)
        if x.shape[0] == 1:
            x = np.repeat(x, 2, axis=0)
        y, record = _normalise_stem(x, sample_rate, settings)
        record.role = int(roles[i]) if roles is not None else -1
        out[i] = y
        records.append(record)
    if torch_device is not None:
        import torch

        return RawLikeResult(torch.from_numpy(out).to(torch_device), records)
    return RawLikeResult(out, records)


def _normalise_stem(x: np.ndarray, sample_rate: int, s: RawLike) -> tuple[np.ndarray, RawLikeStem]:
    record = RawLikeStem()
    record.input_lufs = integrated_loudness(x, sample_rate)
    if not np.isfinite(record.input_lufs) or not np.all(np.isfinite(x)):
        record.silent = True
        return x.astype(np.float32), record
    x = _remove_dc(x, sample_rate)
    if s.tone_amount > 0:
        x = _tone_stage(x, sample_rate, s, record)
    if s.dynamics_amount > 0:
        x = _levelling_stage(x, sample_rate, s, record)
        x = _crest_stage(x, sample_rate, s, record)
    x = _placement_stage(x, s, record)
    if s.dynamics_amount > 0:  # the fast gains can rectify a lopsided transient into an offset
        x = _remove_dc(x, sample_rate)
    lufs = integrated_loudness(x, sample_rate)
    if np.isfinite(lufs):
        record.gain_db = float(s.stem_lufs - lufs)
        x = x * 10.0 ** (record.gain_db / 20.0)
    return x.astype(np.float32), record


# --------------------------------------------------------------------------- DC


def _remove_dc(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """``x`` (C, T) float64 without its DC offset: the 2nd-order Butterworth high-pass at
    :data:`~automix.dsp.dc.DC_CUTOFF_HZ` (Hz) run forward and backward (zero phase, no delay)."""
    from scipy.signal import butter, sosfiltfilt

    if x.shape[-1] < 64:
        return x - x.mean(axis=-1, keepdims=True)
    sos = butter(2, DC_CUTOFF_HZ, btype="highpass", fs=sample_rate, output="sos")
    return sosfiltfilt(sos, x, axis=-1)


# --------------------------------------------------------------------------- tone


def smoothed_spectrum_db(x: np.ndarray, sample_rate: int, smoothing_octaves: float = 1.0 / 3.0
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Long-term power spectrum of ``x`` (C, T), smoothed in fractional octaves.

    :func:`automix.loudness.long_term_power_spectrum` (Hann segments of 0.5-1 s, averaged
    over channels), then averaged in power over ``smoothing_octaves`` around each point of
    the 1/6-octave grid :func:`tone_grid_hz`.

    Returns
    -------
    freqs_hz : np.ndarray (F,)
    level_db : np.ndarray (F,)
        Power per bin in dB (``-inf`` where the band is empty).
    """
    freqs, power = long_term_power_spectrum(np.atleast_2d(x), sample_rate)
    grid = tone_grid_hz(sample_rate)
    half = 2.0 ** (smoothing_octaves / 2.0)
    cumulative = np.concatenate([[0.0], np.cumsum(power)])
    lo = np.searchsorted(freqs, grid / half, side="left")
    hi = np.maximum(np.searchsorted(freqs, grid * half, side="right"), lo + 1)
    mean = (cumulative[hi] - cumulative[lo]) / (hi - lo)
    with np.errstate(divide="ignore"):
        return grid, 10.0 * np.log10(mean)


def tone_grid_hz(sample_rate: int) -> np.ndarray:
    """The tone stage's analysis grid (1/6 octave), Hz."""
    top = min(TONE_HIGH_HZ, 0.45 * sample_rate)
    n = int(math.floor(math.log2(top / TONE_LOW_HZ) / TONE_GRID_OCTAVE_STEP)) + 1
    return TONE_LOW_HZ * 2.0 ** (np.arange(n) * TONE_GRID_OCTAVE_STEP)


def fit_tilt(freqs_hz: np.ndarray, level_db: np.ndarray, floor_db: float = TONE_FLOOR_DB
             ) -> tuple[float, float, np.ndarray]:
    """Least-squares line through ``level_db`` against octaves, on the bands within ``floor_db`` of the loudest.

    Returns
    -------
    slope_db_per_octave : float
    mean_db : float
        The line's value at the mean octave of the fitted bands.
    used : np.ndarray of bool
        The bands that took part.
    """
    finite = np.isfinite(level_db)
    if not np.any(finite):
        return math.nan, math.nan, finite
    used = finite & (level_db >= np.max(level_db[finite]) - floor_db)
    octaves = np.log2(freqs_hz / 1000.0)
    if used.sum() < 2:
        return 0.0, float(np.mean(level_db[used])), used
    slope, intercept = np.polyfit(octaves[used], level_db[used], 1)
    return float(slope), float(intercept + slope * np.mean(octaves[used])), used


def _tone_stage(x: np.ndarray, sample_rate: int, s: RawLike, record: RawLikeStem) -> np.ndarray:
    from scipy.signal import firwin2, oaconvolve

    freqs, level = smoothed_spectrum_db(x, sample_rate, s.tone_smoothing_octaves)
    slope, mean_db, used = fit_tilt(freqs, level)
    if not np.isfinite(slope) or used.sum() < 2:
        return x
    octaves = np.log2(freqs / 1000.0)
    centre = float(np.mean(octaves[used]))
    target = mean_db + s.tone_slope_db_per_octave * (octaves - centre)
    correction = np.zeros(freqs.size)
    correction[used] = np.clip(s.tone_amount * (target[used] - level[used]), -s.tone_max_db, s.tone_max_db)
    # Outside the fitted bands: hold the nearest fitted band's cut, never boost empty bands.
    idx = np.flatnonzero(used)
    for k in range(freqs.size):
        if not used[k]:
            nearest = idx[np.argmin(np.abs(idx - k))]
            correction[k] = min(0.0, correction[nearest])
    record.tone_freqs_hz, record.tone_correction_db = freqs, correction
    after = level + correction
    record.tilt_db_per_octave = (slope, fit_tilt(freqs, np.where(used, after, -np.inf))[0])
    taps = int(round(s.fir_ms * 1e-3 * sample_rate)) | 1
    nyquist = sample_rate / 2.0
    grid = np.concatenate([[0.0], freqs, [nyquist]])
    gains_db = np.concatenate([[correction[0]], correction, [correction[-1]]])
    fir = firwin2(taps, grid, 10.0 ** (gains_db / 20.0), fs=sample_rate, window="hann")
    delay = (taps - 1) // 2
    y = oaconvolve(x, fir[None, :], mode="full", axes=-1)
    return y[:, delay:delay + x.shape[-1]]


# --------------------------------------------------------------------------- dynamics


def _centred_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of ``values`` (N,) over a centred window of ``window`` samples (edges replicated)."""
    from scipy.ndimage import uniform_filter1d

    return uniform_filter1d(np.asarray(values, dtype=np.float64), max(1, int(window)), mode="nearest")


def loudness_curve(x: np.ndarray, sample_rate: int, window_s: float = SHORT_TERM_S
                   ) -> tuple[np.ndarray, np.ndarray]:
    """K-weighted loudness of ``window_s`` windows (default short-term, 3 s), one per 100 ms.

    Returns
    -------
    centres : np.ndarray (N,)
        Centre sample of each window.
    lufs : np.ndarray (N,)
    """
    energies, hop = hop_energies(x, sample_rate)
    n = max(1, int(round(window_s / HOP_S)))
    if energies.size < n:
        return np.zeros(0), np.zeros(0)
    cumulative = np.concatenate([[0.0], np.cumsum(energies)])
    mean_square = (cumulative[n:] - cumulative[:-n]) / (n * hop)
    with np.errstate(divide="ignore"):
        lufs = -0.691 + 10.0 * np.log10(mean_square)
    centres = (np.arange(lufs.size) * hop + n * hop / 2.0)
    return centres, lufs


def gate_lufs(lufs: np.ndarray) -> float:
    """Gate of the loudness readings ``lufs``: -70 LUFS and -20 LU below their power mean
    (EBU Tech 3342), LUFS; ``inf`` when nothing is above -70 LUFS."""
    values = lufs[lufs > -70.0]
    if values.size == 0:
        return math.inf
    return max(-70.0, 10.0 * math.log10(np.mean(10.0 ** (values / 10.0))) - 20.0)


def gated(lufs: np.ndarray) -> np.ndarray:
    """Readings at or above :func:`gate_lufs`."""
    return lufs[lufs >= gate_lufs(lufs)]


#: Readings more than this below the median are left out of the loudness spread, LU.
SPREAD_GATE_LU: float = 20.0


def spread_of_readings(lufs: np.ndarray) -> float:
    """Standard deviation of the loudness readings above -70 LUFS and at most
    :data:`SPREAD_GATE_LU` below their median, LU (a gate that levelling does not move,
    unlike the power-mean gate of EBU Tech 3342); ``nan`` for fewer than two."""
    values = lufs[lufs > -70.0]
    if values.size == 0:
        return math.nan
    values = values[values >= np.median(values) - SPREAD_GATE_LU]
    return float(np.std(values)) if values.size > 1 else math.nan


def loudness_spread_lu(x: np.ndarray, sample_rate: int) -> float:
    """Short-term loudness spread of ``x`` (C, T): :func:`spread_of_readings` of its
    short-term (3 s, K-weighted, every 100 ms) loudness, LU."""
    return spread_of_readings(loudness_curve(x, sample_rate)[1])


#: Passes of the leveller (each corrects what the window's smoothing of the previous gain missed).
LEVELLING_PASSES: int = 3


def _levelling_stage(x: np.ndarray, sample_rate: int, s: RawLike, record: RawLikeStem) -> np.ndarray:
    centres, lufs = loudness_curve(x, sample_rate)
    active = gated(lufs)
    if active.size < 2:
        return x
    median = float(np.median(active))
    playing = lufs >= gate_lufs(lufs)  # silence, fades and tails below the gate get no gain
    deviation = np.clip(np.where(playing, lufs - median, 0.0), -s.levelling_range_lu, s.levelling_range_lu)
    wanted = median + (1.0 - s.dynamics_amount) * deviation  # the curve the leveller aims at
    reach = s.dynamics_amount * s.levelling_range_lu
    gain_db = -s.dynamics_amount * deviation
    for _ in range(LEVELLING_PASSES - 1):
        y = x * 10.0 ** (np.interp(np.arange(x.shape[-1]), centres, gain_db) / 20.0)
        now = loudness_curve(y, sample_rate)[1]
        miss = np.where(playing & np.isfinite(now), wanted - now, 0.0)
        gain_db = np.clip(gain_db + miss, -reach, reach)
    y = x * 10.0 ** (np.interp(np.arange(x.shape[-1]), centres, gain_db) / 20.0)
    record.levelling_db = (float(gain_db.min()), float(np.median(gain_db)), float(gain_db.max()))
    record.spread_lu = (spread_of_readings(lufs), loudness_spread_lu(y, sample_rate))
    return y


def crest_factor_db(x: np.ndarray, sample_rate: int, block_s: float = CREST_BLOCK_S) -> float:
    """Median crest factor (sample peak / RMS, over both channels) of the active 400 ms blocks, dB.

    Blocks more than :data:`CREST_GATE_DB` below the loudest block are left out; ``nan``
    when nothing is active.
    """
    x = np.atleast_2d(x)
    return _block_crest_db(np.abs(x).max(axis=0), np.square(x).mean(axis=0), sample_rate, block_s)


def _block_crest_db(peak: np.ndarray, power: np.ndarray, sample_rate: int, block_s: float = CREST_BLOCK_S) -> float:
    """:func:`crest_factor_db` from the per-sample channel peak and mean power."""
    block = max(1, int(round(block_s * sample_rate)))
    n = peak.size // block
    if n == 0:
        block, n = peak.size, 1
    block_power = power[: n * block].reshape(n, block).mean(axis=1, dtype=np.float64)
    block_peak = peak[: n * block].reshape(n, block).max(axis=1).astype(np.float64)
    if not np.any(block_power > 0):
        return math.nan
    keep = block_power >= block_power.max() * 10.0 ** (-CREST_GATE_DB / 10.0)
    return float(np.median(10.0 * np.log10(np.square(block_peak[keep]) / block_power[keep])))


def _crest_stage(x: np.ndarray, sample_rate: int, s: RawLike, record: RawLikeStem) -> np.ndarray:
    peak = np.abs(x).max(axis=0).astype(np.float32)
    power = np.square(x).mean(axis=0)
    before = _block_crest_db(peak, power, sample_rate)
    if not np.isfinite(before):
        return x
    fast = _centred_mean(power, s.crest_window_ms * 1e-3 * sample_rate)
    slow = _centred_mean(power, CREST_BLOCK_S * sample_rate)
    floor = max(float(slow.max()) * 1e-9, 1e-20)
    deviation = np.clip(10.0 * np.log10((fast + floor) / (slow + floor)), -3.0 * s.crest_range_db,
                        3.0 * s.crest_range_db).astype(np.float32)
    power = power.astype(np.float32)
    goal = s.crest_db + (1.0 - s.dynamics_amount) * (before - s.crest_db)
    to_neper = np.float32(math.log(10.0) / 20.0)

    def gain(k: float) -> np.ndarray:  # linear amplitude gain
        return np.exp(np.clip(np.float32(-k) * deviation, -s.crest_range_db, s.crest_range_db) * to_neper)

    def crest(k: float) -> float:
        g = gain(k)
        return _block_crest_db(peak * g, power * np.square(g), sample_rate)

    lo, hi = -1.5, 0.95  # the crest factor falls as k rises
    if abs(goal - before) > 0.05:
        for _ in range(9):
            k = 0.5 * (lo + hi)
            value = crest(k)
            if not np.isfinite(value):
                break
            if value > goal:
                lo = k
            else:
                hi = k
        record.crest_exponent = 0.5 * (lo + hi)
        g = gain(record.crest_exponent)
        record.crest_db = (before, _block_crest_db(peak * g, power * np.square(g), sample_rate))
        return x * g
    record.crest_db = (before, before)
    return x


# --------------------------------------------------------------------------- placement


def _placement_stage(x: np.ndarray, s: RawLike, record: RawLikeStem) -> np.ndarray:
    """Rotate the stem's principal left/right direction to the centre (energy kept).

    With ``s = u.x`` along the principal direction ``u`` and ``r = v.x`` across it
    (``v = (-u_R, u_L)``), the output is ``L = (s - r)/sqrt2, R = (s + r)/sqrt2``: a centred
    stem is unchanged, a panned one is centred with its ambience (``r``) kept as side, and
    both channels end with equal energy. Panned mono stems (``r`` below
    ``mono_threshold_db``) become exactly centred mono.
    """
    cov = x @ x.T
    energy_l, energy_r = float(cov[0, 0]), float(cov[1, 1])
    if energy_l + energy_r <= 0:
        return x
    eigvals, eigvecs = np.linalg.eigh(cov)
    major, minor = float(eigvals[1]), max(float(eigvals[0]), 0.0)
    u = eigvecs[:, 1]
    if u.sum() < 0:
        u = -u
    theta = math.atan2(float(u[1]), float(u[0]))
    record.pan = float(np.clip(4.0 * theta / math.pi - 1.0, -1.0, 1.0))
    record.balance_db = float(10.0 * math.log10(max(energy_l, 1e-30) / max(energy_r, 1e-30)))
    source = u @ x
    if minor <= major * 10.0 ** (s.mono_threshold_db / 10.0):
        record.panned_mono = True
        return np.stack([source, source]) / math.sqrt(2.0)
    across = np.array([-u[1], u[0]]) @ x
    return np.stack([source - across, source + across]) / math.sqrt(2.0)
