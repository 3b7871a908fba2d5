"""Six-band parametric EQ: high-pass, low shelf, three peaking bands, high shelf.

The EQ of a channel strip or of the master bus is a cascade of six RBJ biquads whose
parameters come from the ``eq.*`` entries of a :class:`~automix.dsp.params.ParamTable`.
The high-pass section is blended with its input by ``eq.hpf.mix`` (0 = bypassed); the
blend is itself a biquad, ``b' = (1 - mix) a + mix b``, so the EQ stays one cascade.

Two ways to apply it:

* :func:`apply_eq_exact` -- IIR filtering in the time domain (float64 recursion).
* :func:`apply_eq_fir` -- the "fast" path: the cascade's response sampled on an
  ``fir_length``-point grid (frequency sampling), turned into an FIR and applied by FFT
  convolution. It is a time-invariant approximation (impulse response truncated and
  time-aliased at ``fir_length`` samples) that runs on any torch device.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from automix.dsp import biquad as bq
from automix.dsp.params import HPF_Q, SHELF_Q, ParamTable

EQ_SECTIONS = ("hpf", "low_shelf", "peak1", "peak2", "peak3", "high_shelf")
"""Order of the sections in the cascade."""

DEFAULT_FIR_LENGTH = 16384
"""FIR length of the fast path in samples (0.37 s at 44.1 kHz: long enough for a 40 Hz, Q 10 bell)."""


def eq_sos(values: torch.Tensor, table: ParamTable, sample_rate: float) -> torch.Tensor:
    """Cascade ``(..., 6, 6)`` float64 for settings ``values`` (..., P) of ``table``.

    Parameters
    ----------
    values : Tensor or numpy array (..., P) parameter values (not unit-mapped); a numpy array gives a
        numpy cascade (no torch needed).
    table : ParamTable with the ``eq.*`` parameters (STRIP or MASTER).
    sample_rate : float, Hz.
    """
    ops = bq.array_ops(values)
    v = values.to(ops.torch.float64) if bq._is_torch(values) else np.asarray(values, dtype=np.float64)

    def p(name: str):
        return v[..., table.index(f"eq.{name}")]

    b_hp, a_hp = bq.design_highpass(p("hpf.freq_hz"), HPF_Q, sample_rate)
    mix = ops.unsqueeze(p("hpf.mix"), -1)
    sections = [bq.to_sos((1.0 - mix) * a_hp + mix * b_hp, a_hp),
                bq.to_sos(*bq.design_low_shelf(p("low_shelf.freq_hz"), p("low_shelf.gain_db"), sample_rate, SHELF_Q))]
    for band in ("peak1", "peak2", "peak3"):
        sections.append(bq.to_sos(*bq.design_peaking(p(f"{band}.freq_hz"), p(f"{band}.gain_db"),
                                                     p(f"{band}.q"), sample_rate)))
    sections.append(bq.to_sos(*bq.design_high_shelf(p("high_shelf.freq_hz"), p("high_shelf.gain_db"),
                                                    sample_rate, SHELF_Q)))
    return ops.stack(sections, -2)


def eq_response(values: torch.Tensor, table: ParamTable, freqs_hz, sample_rate: float) -> torch.Tensor:
    """Complex response (..., F) of the EQ described by ``values`` (..., P) at ``freqs_hz`` (Hz)."""
    return bq.sos_response(eq_sos(values, table, sample_rate), freqs_hz, sample_rate)


def apply_eq_exact(x: torch.Tensor, sos: torch.Tensor) -> torch.Tensor:
    """Time-domain EQ: ``x`` (..., C, T), ``sos`` (..., 6, 6) shared by the C channels."""
    return bq.apply_sos(x, sos.unsqueeze(-3))


def eq_fir(sos: torch.Tensor, sample_rate: float, fir_length: int = DEFAULT_FIR_LENGTH) -> torch.Tensor:
    """FIR (..., fir_length) float64 whose DFT equals the cascade's response on the DFT grid."""
    import torch

    return torch.fft.irfft(grid_response(sos, fir_length), n=fir_length)


def grid_response(sos: torch.Tensor, n: int) -> torch.Tensor:
    """Complex response (..., n // 2 + 1) of the cascade ``sos`` (..., K, 6) on the ``n``-point DFT grid.

    On the CPU a compiled kernel with an exact custom backward (:class:`_GridResponse`);
    elsewhere :func:`automix.dsp.biquad.sos_response` (torch operations, the reference).
    """
    import torch

    sos = sos.to(torch.float64)
    if sos.device.type != "cpu":
        freqs = torch.fft.rfftfreq(n, d=1.0, dtype=torch.float64, device=sos.device)
        return bq.sos_response(sos, freqs, 1.0)
    a0 = sos[..., 3:4]
    coef = torch.cat([sos[..., :3] / a0, sos[..., 4:] / a0], dim=-1)
    lead, n_sec = coef.shape[:-2], coef.shape[-2]
    out = _grid_response_function().apply(coef.reshape(-1, n_sec, 5).contiguous(), int(n))
    return torch.view_as_complex(out).reshape(*lead, n // 2 + 1)


def _grid_trig(n: int):
    w = 2.0 * np.pi * np.arange(n // 2 + 1) / n
    return np.cos(w), np.sin(w), np.cos(2.0 * w), np.sin(2.0 * w)


@lru_cache(maxsize=1)
def _grid_response_function():
    """The autograd function of :func:`grid_response` (defined on first use: torch imports then)."""
    import torch

    class _GridResponse(torch.autograd.Function):
        """``coef`` (N, K, 5) -> response (N, n // 2 + 1, 2) (real, imaginary) on the ``n``-point grid."""

        @staticmethod
        def forward(ctx, coef, n):
            from automix.dsp.train_kernels import cascade_response
            trig = _grid_trig(n)
            out = np.empty((coef.shape[0], n // 2 + 1, 2))
            cascade_response(np.ascontiguousarray(coef.detach().numpy()), *trig, out)
            ctx.save_for_backward(coef)
            ctx.n = n
            return torch.from_numpy(out)

        @staticmethod
        def backward(ctx, grad):
            from automix.dsp.train_kernels import cascade_response_backward
            (coef,) = ctx.saved_tensors
            grad_coef = np.empty(tuple(coef.shape))
            cascade_response_backward(np.ascontiguousarray(coef.detach().numpy()), *_grid_trig(ctx.n),
                                      np.ascontiguousarray(grad.detach().to(torch.float64).numpy()), grad_coef)
            return torch.from_numpy(grad_coef), None

    return _GridResponse


def fft_length(n: int) -> int:
    """Smallest ``2^a 3^b 5^c >= n`` (a length the FFT handles at full speed)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def apply_eq_fir(x: torch.Tensor, sos: torch.Tensor, sample_rate: float,
                 fir_length: int = DEFAULT_FIR_LENGTH) -> torch.Tensor:
    """Fast EQ by frequency sampling + FFT convolution (linear, output trimmed to ``T``).

    The cascade's response sampled on the ``fir_length`` grid is the FIR; it is applied by
    one FFT multiply of length :func:`fft_length` ``(T + fir_length - 1)`` (the linear
    convolution, whatever the length).

    Parameters
    ----------
    x : Tensor (..., C, T) float32/float64.
    sos : Tensor (..., 6, 6) one cascade per leading index, shared by the channels.
    """
    import torch

    n_samples = x.shape[-1]
    h = eq_fir(sos, sample_rate, fir_length).to(x.dtype)
    n_fft = fft_length(n_samples + fir_length - 1)
    spec = torch.fft.rfft(x, n=n_fft) * torch.fft.rfft(h, n=n_fft).unsqueeze(-2)
    return torch.fft.irfft(spec, n=n_fft)[..., :n_samples]
