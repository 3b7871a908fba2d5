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
    """

    values: torch.Tensor
    fine_freqs_hz: np.ndarray | None = None
    fine_db: np.ndarray | None = None
    dc_cutoff_hz: float = 0.0

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
    :func:`chain_fir_length`) under a Tukey window (:data:`CHAIN_FIR_SECONDS`).
    """
    from automix.dsp.eq import eq_response
    from automix.mastering.tonal import curve_on_bins, fir_length, zero_phase_fir
    from automix.mastering.width import side_response_db

    taps = int(length or chain_fir_length(sample_rate))
    design = max(fir_length(sample_rate), taps)
    bins = np.fft.rfftfreq(design + 1, 1.0 / sample_rate)
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
    firs = np.stack([zero_phase_fir(10.0 ** (mid_db / 20.0), design),
                     zero_phase_fir(10.0 ** ((mid_db + side_db) / 20.0), design)])
    if taps < design:
        centre, half = design // 2, taps // 2
        firs = firs[:, centre - half: centre + half + 1] * tukey(taps)[None]
    return firs


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
