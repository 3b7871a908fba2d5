"""The self-supervised "un-mixing" perturbation, rendered through the console itself.

Well-mixed stems are knocked off balance, per stem, by random channel-strip settings
(fader gain, pan, shelving/peaking EQ, tilt EQ, compression); the mix model then sees
the perturbed stems and must bring them back to the original balance (as in the
FxNorm-automix and DMC training schemes). The perturbation is drawn from a seeded
generator, so an example's perturbation is reproducible, and it is applied by
:func:`automix.dsp.console.render_mix`, so it uses exactly the processors the model
controls.

Two presets: :data:`TRAINING` (+/-12 dB gain, EQ, compression, pan) and
:data:`BENCHMARK` (+/-9 dB gain and tilt EQ only), the protocol of the mix-quality
benchmark and of held-out evaluation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
from torch import Tensor

from automix.dsp.params import STRIP


@dataclass
class Perturbation:
    """Ranges of the random per-stem settings; every draw is uniform.

    Parameters
    ----------
    gain_db : float
        Fader gain drawn in [-gain_db, +gain_db] dB.
    pan : float
        Pan / balance drawn in [-pan, +pan] (-1 = hard left).
    eq_gain_db : float
        Low-shelf, high-shelf and mid peak (band 2, log-uniform centre, Q 0.7) gains
        drawn in [-eq_gain_db, +eq_gain_db] dB.
    tilt_db : float
        Tilt drawn in [-tilt_db, +tilt_db] dB: the high shelf (1 kHz) gets +tilt/2
        and the low shelf (500 Hz) -tilt/2, a brightness change pivoting near 700 Hz.
    compression_probability : float
        Chance that a stem is compressed.
    compression_depth_db : float
        Threshold drawn between the stem's RMS level and ``compression_depth_db`` below it.
    ratio_range : tuple of float
        Compression ratio range (log-uniform), :1.
    attack_ms_range, release_ms_range : tuple of float
        Compressor time constants (log-uniform), ms.
    mono_probability : float
        Chance that a stem reaches the model folded to mono (both channels ``(L + R) / 2``,
        after the rest of the perturbation), as dry mono recordings arrive: the mix's width
        must then come from the pans. No draw is made when 0 (earlier seeds unchanged).
    """

    gain_db: float = 12.0
    pan: float = 0.5
    eq_gain_db: float = 6.0
    tilt_db: float = 0.0
    compression_probability: float = 0.5
    compression_depth_db: float = 12.0
    ratio_range: tuple[float, float] = (1.5, 6.0)
    attack_ms_range: tuple[float, float] = (1.0, 30.0)
    release_ms_range: tuple[float, float] = (50.0, 300.0)
    mono_probability: float = 0.0

    def sample_strip(self, stems: Tensor, generator: torch.Generator) -> Tensor:
        """Random strip settings (B, S, P) for ``stems`` (B, S, C, T), on ``stems.device``.

        Draws happen on the CPU from ``generator`` (same numbers on any device).
        """
        b, s = stems.shape[:2]
        shape = (b, s)

        def uniform(lo: float, hi: float) -> Tensor:
            return lo + (hi - lo) * torch.rand(shape, generator=generator, dtype=torch.float64)

        def log_uniform(lo: float, hi: float) -> Tensor:
            return torch.exp(uniform(math.log(lo), math.log(hi)))

        values = STRIP.neutral_like(b, s, dtype=torch.float64)

        def put(name: str, v: Tensor) -> None:
            values[..., STRIP.index(name)] = v

        put("gain_db", uniform(-self.gain_db, self.gain_db))
        put("pan", uniform(-self.pan, self.pan))
        low = uniform(-self.eq_gain_db, self.eq_gain_db)
        high = uniform(-self.eq_gain_db, self.eq_gain_db)
        tilt = uniform(-self.tilt_db, self.tilt_db)
        if self.tilt_db:
            put("eq.low_shelf.freq_hz", torch.full(shape, 500.0, dtype=torch.float64))
            put("eq.high_shelf.freq_hz", torch.full(shape, 1000.0, dtype=torch.float64))
        put("eq.low_shelf.gain_db", low - tilt / 2)
        put("eq.high_shelf.gain_db", high + tilt / 2)
        peak_spec = STRIP.spec("eq.peak2.freq_hz")
        put("eq.peak2.freq_hz", log_uniform(peak_spec.minimum, peak_spec.maximum))
        put("eq.peak2.gain_db", uniform(-self.eq_gain_db, self.eq_gain_db))

        compress = torch.rand(shape, generator=generator, dtype=torch.float64) < self.compression_probability
        rms_db = 10.0 * torch.log10(stems.detach().double().square().mean(dim=(-2, -1)).cpu() + 1e-12)
        threshold = rms_db - uniform(0.0, self.compression_depth_db)
        neutral = STRIP.neutral.double()
        for name, drawn in (("comp.threshold_db", threshold),
                            ("comp.ratio", log_uniform(*self.ratio_range)),
                            ("comp.attack_ms", log_uniform(*self.attack_ms_range)),
                            ("comp.release_ms", log_uniform(*self.release_ms_range))):
            put(name, torch.where(compress, drawn, neutral[STRIP.index(name)]))
        return STRIP.clamp(values).to(device=stems.device, dtype=torch.float32)

    def apply(self, stems: Tensor, sample_rate: int, generator: torch.Generator,
              stem_mask: Tensor | None = None, mode: str = "fast",
              render: Callable | None = None) -> tuple[Tensor, Tensor]:
        """Perturb ``stems`` (B, S, C, T) through the console.

        ``render`` (default :func:`automix.dsp.console.render_mix` in ``mode``) is called as
        ``render(stems, strip, sample_rate, stem_mask=...)``.

        Returns
        -------
        perturbed : Tensor (B, S, 2, T)
            The processed stems (what the model gets to see).
        strip : Tensor (B, S, P)
            The settings that produced them.
        """
        if render is None:
            from automix.dsp.console import render_mix

            render = partial(render_mix, mode=mode)
        strip = self.sample_strip(stems, generator)
        with torch.no_grad():
            result = render(stems, strip, sample_rate, stem_mask=stem_mask)
            out = result.stems
            if self.mono_probability > 0:
                fold = torch.rand(out.shape[:2], generator=generator) < self.mono_probability
                mid = out.mean(dim=2, keepdim=True).expand_as(out)
                out = torch.where(fold.to(out.device)[..., None, None], mid, out)
        return out, strip


TRAINING = Perturbation()
"""Training preset: +/-12 dB gain, +/-0.5 pan, +/-6 dB shelves and mid peak, 50 % compressed."""

BENCHMARK = Perturbation(gain_db=9.0, pan=0.0, eq_gain_db=0.0, tilt_db=6.0, compression_probability=0.0)
"""Evaluation preset (mix-quality benchmark): +/-9 dB gain and +/-6 dB tilt EQ per stem."""
