"""The mastering chain before the limiter: (DC filter) -> parametric EQ -> fine EQ -> mid/side width -> bus compressor.

Settings are a :data:`automix.dsp.params.MASTERING` tensor (readable, validated, the
same names in JSON reports) plus an optional fine correction curve. Two renderers:

* :func:`render_chain` -- numpy in/out for files: exact IIR EQ (float64 recursion),
  zero-phase FIR for the fine curve, M/S width, feed-forward compressor. Stages at
  neutral settings are skipped.
* :func:`render_chain_torch` -- the same chain, differentiable in torch (used for
  per-track refinement by gradient descent and for training the mastering model).

The settings may be a torch tensor or a numpy array; the default file path (linear-phase tonal
filters, no compressor) runs without importing torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from automix.dsp.dc import remove_dc
from automix.dsp.params import MASTERING
from automix.mastering.tonal import apply_fir, fine_correction_fir
from automix.mastering.width import apply_width, is_neutral as width_is_neutral

MAX_BOOST_DB = 24.0
"""Largest total boost of the linear-phase tonal filters at any frequency (dB)."""

EQ_GAINS = ("eq.low_shelf.gain_db", "eq.peak1.gain_db", "eq.peak2.gain_db", "eq.peak3.gain_db",
            "eq.high_shelf.gain_db")


@dataclass
class ChainSettings:
    """Everything the chain needs.

    Attributes
    ----------
    values : torch.Tensor
        ``(P,)`` MASTERING settings (EQ bands, compressor, output gain, width, limiter).
    fine_freqs_hz, fine_db : np.ndarray or None
        Fine correction curve (Hz, dB), or None for none.
    dc_cutoff_hz : float
        Corner (Hz) of the DC-blocking high-pass run first (0: none; used when the mix has
        a DC offset, which would otherwise eat limiter headroom and reach the master).
    mix_spectrum : tuple of np.ndarray or None
        ``(bin_freqs_hz, mid_power, side_power)``: the long-term power spectra of the mix the chain runs
        on (:attr:`automix.mastering.profile.Profile.mid_power`). With them the linear-phase filters'
        low end is designed so that the mix's band levels through the short filter match those through
        the designed curve (:func:`refine_low_end`); None: the plain windowed design.
    """

    values: torch.Tensor
    fine_freqs_hz: np.ndarray | None = None
    fine_db: np.ndarray | None = None
    dc_cutoff_hz: float = 0.0
    mix_spectrum: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def get(self, name: str) -> float:
        """One setting as a float."""
        return float(self.values[MASTERING.index(name)])

    def set(self, name: str, value: float) -> None:
        """Change one setting (clamped into its range)."""
        spec = MASTERING.spec(name)
        self.values[MASTERING.index(name)] = float(min(max(value, spec.minimum), spec.maximum))

    def values_dict(self) -> dict[str, float]:
        """``{name: value}`` of every MASTERING setting (JSON/YAML)."""
        return MASTERING.to_dict(self.values)

    @property
    def eq_active(self) -> bool:
        return any(abs(self.get(n)) > 1e-6 for n in EQ_GAINS) or self.get("eq.hpf.mix") > 0

    @property
    def comp_active(self) -> bool:
        return self.get("comp.ratio") > 1.0 + 1e-6


CHAIN_FIR_SECONDS = 0.09
"""Length of the chain's linear-phase tonal filters (s, rounded up to a power of two minus one: 4095 taps at 44.1 kHz): a few thousand taps, as
long as the linear fit that scores a master's distortion (:data:`automix.mastering.distortion.DEFAULT_TAPS`).
The filters used to be 0.74 s long (32767 taps): the fit could not follow their tails, so a linear EQ
read as distortion (-26 to -38 dB of residual before any limiting on real masters; -41 to -58 dB at
4095 taps). The response is still designed on the long grid (1.3 Hz bins) and only the impulse is cut
to length, with a Tukey window that keeps its centre whole (the bass resolution a Hann window over the
short length would blur away)."""

TUKEY_SHARE = 0.5
"""Share of the chain filter's length over which its Tukey window tapers (half at each end)."""


def chain_fir_length(sample_rate: int) -> int:
    """Odd tap count of the chain's tonal filters (:data:`CHAIN_FIR_SECONDS` rounded up to a power of two, minus one)."""
    return int(2 ** math.ceil(math.log2(sample_rate * CHAIN_FIR_SECONDS))) - 1


def tukey(length: int, share: float = TUKEY_SHARE) -> np.ndarray:
    """Tukey (tapered cosine) window of ``length`` points: flat in the middle, cosine tapers over ``share``
    of the length (``scipy.signal.windows.tukey``'s definition)."""
    n = np.arange(length, dtype=np.float64)
    w = np.ones(length)
    width = share * (length - 1) / 2.0
    if width <= 0:
        return w
    lo = n < width
    hi = n > (length - 1) - width
    w[lo] = 0.5 * (1 + np.cos(np.pi * (n[lo] / width - 1)))
    w[hi] = 0.5 * (1 + np.cos(np.pi * ((n[hi] - (length - 1)) / width + 1)))
    return w


def linear_phase_firs(settings: ChainSettings, sample_rate: int, length: int | None = None) -> np.ndarray:
    """Mid and side FIRs ``(2, L)`` with the magnitude of EQ bands x fine curve (mid) and x width (side).

    The whole tonal and width part of the chain as one linear-phase filter pair, designed by
    frequency sampling of the exact biquad responses (:func:`automix.dsp.eq.eq_response`,
    :func:`automix.mastering.width.side_response_db`) on the grid of
    :func:`automix.mastering.tonal.fir_length`, then cut to ``length`` taps (odd; default
    :func:`chain_fir_length`) under a Tukey window (:data:`CHAIN_FIR_SECONDS`). With the mix's spectrum
    (:attr:`ChainSettings.mix_spectrum`) the cut filters' low end is then refined on it
    (:func:`refine_low_end`).
    """
    from automix.mastering.tonal import zero_phase_fir

    taps = int(length or chain_fir_length(sample_rate))
    from automix.mastering.tonal import fir_length

    design = max(fir_length(sample_rate), taps)
    bins = np.fft.rfftfreq(design + 1, 1.0 / sample_rate)
    mid_db, side_db = _chain_curves(settings, sample_rate, bins)
    firs = np.stack([zero_phase_fir(10.0 ** (mid_db / 20.0), design),
                     zero_phase_fir(10.0 ** ((mid_db + side_db) / 20.0), design)])
    if taps < design:
        centre, half = design // 2, taps // 2
        firs = firs[:, centre - half: centre + half + 1] * tukey(taps)[None]
        if settings.mix_spectrum is not None:
            freqs, p_mid, p_side = settings.mix_spectrum
            if len(freqs) > 2 and 2 * (len(freqs) - 1) >= taps and abs(freqs[-1] - sample_rate / 2.0) < 1e-6 * sample_rate:
                curve_mid, curve_side = _chain_curves(settings, sample_rate, freqs)
                firs = refine_low_end(firs, freqs, curve_mid, curve_side, p_mid, p_side,
                                      gain_at=lambda f: _chain_curves(settings, sample_rate, f)[0])
    return firs


def _chain_curves(settings: ChainSettings, sample_rate: int, bins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(mid_db, side_db)`` on ``bins`` (Hz): the mid filter's designed gain (EQ bands + fine curve, at most
    :data:`MAX_BOOST_DB`) and the side filter's gain relative to it (width), dB."""
    from automix.dsp.eq import eq_response
    from automix.mastering.tonal import curve_on_bins
    from automix.mastering.width import side_response_db

    v = settings_array(settings.values)
    # biquad responses are smooth on a log axis: evaluate on 512 log-spaced points, interpolate to the bins
    coarse = np.geomspace(5.0, sample_rate / 2.0, 512)
    mid_c = 20.0 * np.log10(np.maximum(np.abs(eq_response(v, MASTERING, coarse, sample_rate)), 1e-9))
    side_c = side_response_db(v, coarse, sample_rate)
    mid_db = curve_on_bins(coarse, mid_c, bins)
    side_db = curve_on_bins(coarse, side_c, bins)
    if settings.fine_db is not None:
        mid_db = mid_db + curve_on_bins(settings.fine_freqs_hz, settings.fine_db, bins)
    mid_db = np.minimum(mid_db, MAX_BOOST_DB)
    side_db = np.minimum(mid_db + side_db, MAX_BOOST_DB) - mid_db
    return mid_db, side_db


LOW_END_HZ = 300.0
"""Top of the region whose filter response :func:`refine_low_end` redesigns (Hz): below it a 4095-tap filter's
resolution (about 11 Hz at 44.1 kHz) is coarse against the bands (a 1/12 octave is 3 Hz at 50 Hz)."""

INFRASONIC_HZ = 2.0
"""Lowest band centre (Hz) of :func:`refine_low_end`'s bands; below it the bins form one band."""

LOW_END_SPACING_HZ = 5.0
"""Spacing (Hz) of the windowed cosines whose weights :func:`refine_low_end` fits."""


def _band_weights(freqs: np.ndarray, centres: np.ndarray, per_octave: float) -> np.ndarray:
    """``(bands, bins)``: the share of each bin (uniform ``freqs``, width ``df``) inside each band
    (edges ``centre * 2**(+-1/(2 per_octave))``)."""
    df = freqs[1] - freqs[0]
    lo = centres * 2 ** (-1 / (2 * per_octave))
    hi = centres * 2 ** (1 / (2 * per_octave))
    overlap = np.minimum(hi[:, None], freqs[None] + df / 2) - np.maximum(lo[:, None], freqs[None] - df / 2)
    return np.clip(overlap, 0.0, None) / df


def refine_low_end(firs: np.ndarray, freqs: np.ndarray, curve_mid_db: np.ndarray, curve_side_db: np.ndarray,
                   p_mid: np.ndarray, p_side: np.ndarray, top_hz: float = LOW_END_HZ,
                   iterations: int = 8, gain_at: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """The centred mid/side FIRs ``firs`` ``(2, L)`` with their low end redesigned for the mix's spectrum.

    Cut to a few thousand taps, a filter blurs the low end of its curve over about ``sample_rate / L``
    (11 Hz at 4095 taps, 44.1 kHz): a 24 dB boost the mix needs at 50 Hz also lands on 31-40 Hz and falls
    short at 50 Hz. What is heard (and measured) is the mix's band levels through the filter, so the low
    end is fitted to those: weights ``c`` of windowed cosines ``w[n] cos(2 pi f_k n / fs)`` (``w`` the cut's
    Tukey window, ``f_k`` every :data:`LOW_END_SPACING_HZ` up to ``top_hz``: the taps stay ``L`` long and
    linear-phase) are added to the mid filter so that, in every 1/12-octave band below ``top_hz``, the
    mix's power through it, ``sum_bins (p_mid + p_side g_side^2) |A|^2`` (``A`` its zero-phase response),
    matches the band's power times the designed gain at the band's centre (``gain_at``; without it, its
    power through the designed curve ``10^(curve_mid_db / 10)``) in dB. The band's own gain, not the
    curve's value at the bins where the mix's power happens to lie: a bass line's note a few Hz off the
    centre of a band on a steep stretch of the curve would otherwise be boosted or cut by several dB more
    than its band asks (measured: 3 dB less power in the strongest bass bands of a real mix) -- least squares,
    Levenberg-Marquardt steps that are kept only when they lower the error, with a small penalty on
    ``c``. The side filter gets the same cosines scaled by the width's side gain at each ``f_k``.

    Parameters
    ----------
    firs : np.ndarray ``(2, L)``
        Centred mid and side taps (odd ``L``).
    freqs : np.ndarray ``(B,)``
        Uniform bins from 0 Hz to Nyquist (``2 (B - 1) >= L``), Hz: the grid of the mix's spectrum.
    curve_mid_db, curve_side_db : np.ndarray ``(B,)``
        The designed mid gain and the side gain relative to it on ``freqs``, dB.
    p_mid, p_side : np.ndarray ``(B,)``
        The mix's mean-square power per bin of mid and side.
    gain_at : callable, optional
        ``gain_at(freqs_hz)``: the designed mid gain (dB) at any frequencies (the bands' targets).

    Returns
    -------
    np.ndarray ``(2, L)``: the refined taps (``firs`` itself when the mix has no power below ``top_hz``).
    """
    from automix.mastering.profile import FINE_BANDS_PER_OCTAVE, fine_grid

    firs = np.asarray(firs, dtype=np.float64)
    length = firs.shape[-1]
    half = length // 2
    n = 2 * (len(freqs) - 1)
    df = float(freqs[1] - freqs[0])
    keep = freqs <= top_hz * 2 ** (1 / FINE_BANDS_PER_OCTAVE)
    f_low = freqs[keep]
    centres = fine_grid(int(round(2 * freqs[-1])), low_hz=INFRASONIC_HZ)
    centres = centres[centres * 2 ** (1 / (2 * FINE_BANDS_PER_OCTAVE)) <= top_hz]
    side_gain = 10.0 ** (curve_side_db[keep] / 10.0)
    power = (p_mid[keep] + p_side[keep] * side_gain).astype(np.float64)
    weights = _band_weights(f_low, centres, FINE_BANDS_PER_OCTAVE)
    # everything below the first band (DC, rumble) as one more band: its power through the filter is held
    # to the designed curve's too, or the fit could boost it freely (a mix's infrasonic content can be louder
    # than its bass, and boosted it becomes peaks)
    edge = centres[0] * 2 ** (-1 / (2 * FINE_BANDS_PER_OCTAVE))
    below = np.clip((edge - (f_low - df / 2)) / df, 0.0, 1.0)[None]
    weights = np.concatenate([below, weights])
    wanted = weights @ (power * 10.0 ** (curve_mid_db[keep] / 10.0))
    if gain_at is not None:  # the fine bands: their power times the designed gain at their centres
        wanted[1:] = (weights[1:] @ power) * 10.0 ** (np.asarray(gain_at(centres), dtype=np.float64) / 10.0)
    used = wanted > 1e-12 * max(float(wanted.max(initial=0.0)), 1e-300)
    if not used.any():
        return firs
    weights, wanted = weights[used], 10.0 * np.log10(wanted[used])
    # zero-phase responses on the bins: of the mid filter now, and of each windowed cosine
    window = tukey(length)
    ring = np.zeros(n)
    ring[: half + 1], ring[n - half:] = window[half:], window[:half]
    window_response = np.fft.rfft(ring).real
    shifts = np.arange(max(1, int(round(LOW_END_SPACING_HZ / df))), int(top_hz / df),
                       max(1, int(round(LOW_END_SPACING_HZ / df))))
    rows = np.arange(len(f_low))
    basis = 0.5 * (window_response[np.abs(rows[:, None] - shifts[None])] + window_response[rows[:, None] + shifts[None]])
    ring[:] = 0.0
    ring[: half + 1], ring[n - half:] = firs[0, half:], firs[0, :half]
    a0 = np.fft.rfft(ring).real[keep]
    c = np.zeros(len(shifts))
    ridge = 1e-3

    def error(coef: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a = a0 + basis @ coef
        band = weights @ (power * a * a) + 1e-300
        return 10.0 * np.log10(band) - wanted, a, band

    r, a, band = error(c)
    cost = float(r @ r)
    damping = 1e-2
    for _ in range(iterations):
        jac = (20.0 / np.log(10.0)) * ((weights * (power * a)[None]) @ basis) / band[:, None]
        normal, grad = jac.T @ jac, jac.T @ r
        scale = float(np.trace(normal)) / len(c) or 1.0
        while damping < 1e4:
            step = -np.linalg.solve(normal + (damping + ridge) * scale * np.eye(len(c)), grad + ridge * scale * c)
            r2, a2, band2 = error(c + step)
            if float(r2 @ r2) < cost:
                c, r, a, band, cost = c + step, r2, a2, band2, float(r2 @ r2)
                damping = max(damping / 3.0, 1e-6)
                break
            damping *= 4.0
        else:
            break
    taps = np.arange(-half, half + 1)
    cosines = window[None] * np.cos(2.0 * np.pi * (shifts[:, None] * df) * taps[None] / sample_rate_of(freqs))
    side_scale = 10.0 ** (np.interp(shifts * df, f_low, curve_side_db[keep]) / 20.0)
    out = firs.copy()
    out[0] += c @ cosines
    out[1] += (c * side_scale) @ cosines
    return out


def sample_rate_of(freqs: np.ndarray) -> float:
    """Sample rate (Hz) of a uniform 0 .. Nyquist bin grid."""
    return 2.0 * float(freqs[-1])


def render_chain(x: np.ndarray, sample_rate: int, settings: ChainSettings, linear_phase: bool = True,
                 in_place: bool = False) -> np.ndarray:
    """Apply EQ, fine EQ, width and compressor to ``x`` ``(channels, T)``; returns float32 ``(channels, T)``.

    ``linear_phase`` (default) renders EQ, fine curve and width as one mid/side linear-phase
    FIR pair (:func:`linear_phase_firs`, one FFT convolution); otherwise the bands run as
    minimum-phase IIR biquads (the console's exact filters), then the fine FIR, then width.
    ``output_gain_db`` and the limiter are applied afterwards by the loudness landing.
    ``in_place`` (linear phase, float32 C-contiguous stereo ``x``): the result overwrites ``x`` and
    is returned -- no second whole-signal array for long files.
    """
    v = settings.values
    has_fine = settings.fine_db is not None and bool(np.any(np.abs(settings.fine_db) > 1e-3))
    tonal = settings.eq_active or has_fine or not width_is_neutral(v)
    in_place = in_place and linear_phase and x.dtype == np.float32 and x.flags.c_contiguous and x.flags.writeable
    if settings.dc_cutoff_hz > 0:
        x = remove_dc(x, sample_rate, settings.dc_cutoff_hz, out=x if in_place else None)
    if linear_phase and tonal and x.shape[0] == 2:
        y = _mid_side_fir(x, linear_phase_firs(settings, sample_rate), out=x if in_place else None)
    elif in_place:
        y = x
    else:
        y = np.ascontiguousarray(x, dtype=np.float32)
        if settings.eq_active or has_fine or not width_is_neutral(v):  # minimum-phase IIR bands (torch kernels)
            import torch

            from automix.dsp.eq import apply_eq_exact, eq_sos

            vt = torch.as_tensor(settings_array(v))
            yt = torch.from_numpy(y)
            with torch.no_grad():
                if settings.eq_active:
                    yt = apply_eq_exact(yt, eq_sos(vt, MASTERING, sample_rate)).to(torch.float32)
                if has_fine:
                    taps = fine_correction_fir(settings.fine_freqs_hz, settings.fine_db, sample_rate)
                    yt = torch.from_numpy(apply_fir(yt.numpy(), taps))
                if not width_is_neutral(v):
                    yt = apply_width(yt, vt, sample_rate)
            y = yt.numpy()
    if settings.comp_active:
        import torch

        own = in_place or not np.shares_memory(y, x)  # compress the chain's own array in place
        yt = torch.from_numpy(np.ascontiguousarray(y))
        with torch.no_grad():
            y = compress_blocks(yt, torch.as_tensor(settings_array(v)), sample_rate, out=yt if own else None).numpy()
    return np.ascontiguousarray(y, dtype=np.float32)


def settings_array(values) -> np.ndarray:
    """MASTERING settings (torch tensor or array) as a float64 numpy array."""
    if not isinstance(values, np.ndarray) and hasattr(values, "detach"):
        return values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64)


def _mid_side_fir(x: np.ndarray, firs: np.ndarray, fft_size: int | None = None,
                  out: np.ndarray | None = None) -> np.ndarray:
    """Stereo ``x`` ``(2, T)`` -> L/R float32 ``(2, T)`` after the centred mid and side FIRs ``firs`` ``(2, L)``.

    Overlap-save with the filters' spectra computed once: each step transforms one stretch of
    mid and side (``fft_size`` frames, default 4x the filter length rounded up to a power of two),
    and the left and right outputs come straight from ``M Hm + S Hs`` and ``M Hm - S Hs`` (two
    inverse transforms). The temporaries stay one stretch long whatever ``T`` is; the result
    equals one whole-signal convolution up to float32 rounding. ``out`` may be ``x`` itself (in
    place: the input just behind each stretch is kept in a small buffer before it is overwritten).
    """
    from scipy import fft as sfft

    from automix.audio import usable_cpus

    frames = x.shape[-1]
    taps = firs.shape[-1]
    half = taps // 2
    n_fft = int(fft_size or 1 << int(math.ceil(math.log2(4 * taps))))
    hop = n_fft - taps + 1
    spectra = sfft.rfft(firs.astype(np.float32), n=n_fft, axis=-1)
    out = np.empty((2, frames), dtype=np.float32) if out is None else out
    same = np.shares_memory(out, x)

    def run(first: int, last: int) -> None:
        """Outputs ``first .. last - 1`` (``first`` a multiple of ``hop``)."""
        behind = np.zeros((2, 0), np.float32)  # in place: the input x[:, start - half: start] before it was overwritten
        seg = np.empty((2, n_fft), dtype=np.float32)
        for start in range(first, last, hop):
            stop = min(last, start + hop)
            lo, hi = start - half, start - half + n_fft  # input read for outputs start .. start + hop - 1
            a, b = max(0, lo), min(frames, hi)
            seg[:] = 0.0
            if same and a < start:
                src = np.concatenate([behind[:, behind.shape[1] - (start - a):], x[:, start:b]], axis=1)
            else:
                src = x[:, a:b]
            np.add(src[0], src[1], out=seg[0, a - lo: b - lo])
            np.subtract(src[0], src[1], out=seg[1, a - lo: b - lo])
            seg *= np.float32(0.5)
            if same:
                behind = np.array(x[:, max(0, stop - half): stop])
            spec = sfft.rfft(seg, axis=-1)
            spec *= spectra
            lr = np.stack([spec[0] + spec[1], spec[0] - spec[1]])
            y = sfft.irfft(lr, n=n_fft, axis=-1)
            out[:, start:stop] = y[:, taps - 1: taps - 1 + stop - start]

    steps = -(-frames // hop)
    if same or steps < 8 or usable_cpus() < 2:  # in place the stretches must run in order
        run(0, frames)
    else:  # separate output ranges, read-only input: two threads (the FFTs release the GIL)
        from concurrent.futures import ThreadPoolExecutor

        middle = min(frames, (steps // 2) * hop)
        with ThreadPoolExecutor(max_workers=1) as pool:
            later = pool.submit(run, middle, frames)
            run(0, middle)
            later.result()
    return out


def compress_blocks(y: torch.Tensor, v: torch.Tensor, sample_rate: int, block: int | None = None,
                    out: torch.Tensor | None = None) -> torch.Tensor:
    """The bus compressor of :func:`_compress` on ``y`` ``(channels, T)`` block by block (no gradients).

    The detector and gain computer are per sample and the attack/release smoother carries its
    state from block to block (:func:`automix.dsp.compressor.smooth_gain`), so the result equals
    one-piece compression while the float64 gain temporaries stay one block long
    (``block`` frames, default :data:`automix.mastering.profile.BLOCK_FRAMES`). ``out`` (may be ``y``
    itself: in place) receives the result; default a new tensor.
    """
    import torch

    from automix.dsp.compressor import detector_level_db, gain_computer_db, smooth_gain
    from automix.mastering import profile

    def p(name: str) -> torch.Tensor:
        return v[..., MASTERING.index(f"comp.{name}")].to(y.dtype)

    block = int(block or profile.BLOCK_FRAMES)
    out = torch.empty_like(y) if out is None else out
    state = None
    for start in range(0, y.shape[-1], block):
        seg = y[..., start: start + block]
        target = gain_computer_db(detector_level_db(seg), p("threshold_db").unsqueeze(-1), p("ratio").unsqueeze(-1),
                                  p("knee_db").unsqueeze(-1))
        smoothed, state = smooth_gain(target, p("attack_ms"), p("release_ms"), sample_rate, state=state,
                                      return_state=True)
        gain = torch.pow(10.0, (smoothed + p("makeup_db").unsqueeze(-1)) / 20.0)
        out[..., start: start + block] = seg * gain.unsqueeze(-2)
    return out


def _compress(y: torch.Tensor, v: torch.Tensor, sample_rate: int) -> torch.Tensor:
    from automix.dsp.compressor import compress

    def p(name: str) -> torch.Tensor:
        return v[..., MASTERING.index(f"comp.{name}")].to(y.dtype)

    return compress(y, p("threshold_db"), p("ratio"), p("attack_ms"), p("release_ms"), p("knee_db"),
                    p("makeup_db"), sample_rate)


def render_chain_torch(x: torch.Tensor, values: torch.Tensor, sample_rate: int,
                       fine_fir: torch.Tensor | None = None) -> torch.Tensor:
    """Differentiable chain (EQ -> optional fine FIR -> width -> compressor -> output gain).

    Parameters
    ----------
    x : Tensor (..., 2, T)
    values : Tensor (..., P) MASTERING settings (gradients flow to every one).
    fine_fir : Tensor (..., L) or None, centred FIR taps (odd length).

    Returns
    -------
    Tensor (..., 2, T) (no limiter: the loss looks at tone and loudness before it).
    """
    import torch

    from automix.dsp.eq import apply_eq_exact, eq_sos

    y = apply_eq_exact(x, eq_sos(values, MASTERING, sample_rate)).to(x.dtype)
    if fine_fir is not None:
        n, taps = y.shape[-1], fine_fir.shape[-1]
        n_fft = 1 << (n + taps - 2).bit_length()
        spec = torch.fft.rfft(y, n=n_fft) * torch.fft.rfft(fine_fir.to(y.dtype), n=n_fft).unsqueeze(-2)
        y = torch.fft.irfft(spec, n=n_fft)[..., taps // 2: taps // 2 + n]
    y = apply_width(y, values, sample_rate)
    y = _compress(y, values, sample_rate)
    gain = torch.pow(10.0, values[..., MASTERING.index("output_gain_db")].to(y.dtype) / 20.0)
    return y * gain[..., None, None]
