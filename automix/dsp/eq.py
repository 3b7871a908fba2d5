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

import torch

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
    values : Tensor (..., P) parameter values (not unit-mapped).
    table : ParamTable with the ``eq.*`` parameters (STRIP or MASTER).
    sample_rate : float, Hz.
    """
    v = values.to(torch.float64)

    def p(name: str) -> torch.Tensor:
        return v[..., table.index(f"eq.{name}")]

    b_hp, a_hp = bq.design_highpass(p("hpf.freq_hz"), HPF_Q, sample_rate)
    mix = p("hpf.mix").unsqueeze(-1)
    sections = [bq.to_sos((1.0 - mix) * a_hp + mix * b_hp, a_hp),
                bq.to_sos(*bq.design_low_shelf(p("low_shelf.freq_hz"), p("low_shelf.gain_db"), sample_rate, SHELF_Q))]
    for band in ("peak1", "peak2", "peak3"):
        sections.append(bq.to_sos(*bq.design_peaking(p(f"{band}.freq_hz"), p(f"{band}.gain_db"),
                                                     p(f"{band}.q"), sample_rate)))
    sections.append(bq.to_sos(*bq.design_high_shelf(p("high_shelf.freq_hz"), p("high_shelf.gain_db"),
                                                    sample_rate, SHELF_Q)))
    return torch.stack(sections, dim=-2)


def eq_response(values: torch.Tensor, table: ParamTable, freqs_hz, sample_rate: float) -> torch.Tensor:
    """Complex response (..., F) of the EQ described by ``values`` (..., P) at ``freqs_hz`` (Hz)."""
    return bq.sos_response(eq_sos(values, table, sample_rate), freqs_hz, sample_rate)


def apply_eq_exact(x: torch.Tensor, sos: torch.Tensor) -> torch.Tensor:
    """Time-domain EQ: ``x`` (..., C, T), ``sos`` (..., 6, 6) shared by the C channels."""
    return bq.apply_sos(x, sos.unsqueeze(-3))


def eq_fir(sos: torch.Tensor, sample_rate: float, fir_length: int = DEFAULT_FIR_LENGTH) -> torch.Tensor:
    """FIR (..., fir_length) float64 whose DFT equals the cascade's response on the DFT grid."""
    freqs = torch.fft.rfftfreq(fir_length, d=1.0 / sample_rate, dtype=torch.float64, device=sos.device)
    return torch.fft.irfft(bq.sos_response(sos, freqs, sample_rate), n=fir_length)


def apply_eq_fir(x: torch.Tensor, sos: torch.Tensor, sample_rate: float,
                 fir_length: int = DEFAULT_FIR_LENGTH) -> torch.Tensor:
    """Fast EQ by frequency sampling + FFT convolution (linear, output trimmed to ``T``).

    Parameters
    ----------
    x : Tensor (..., C, T) float32/float64.
    sos : Tensor (..., 6, 6) one cascade per leading index, shared by the channels.
    """
    n_samples = x.shape[-1]
    h = eq_fir(sos, sample_rate, fir_length).to(x.dtype)
    n_fft = 1 << (n_samples + fir_length - 2).bit_length()  # power of two >= T + L - 1
    spec = torch.fft.rfft(x, n=n_fft) * torch.fft.rfft(h, n=n_fft).unsqueeze(-2)
    return torch.fft.irfft(spec, n=n_fft)[..., :n_samples]
