"""Differentiable mixing console (see docs/console.md).

* :mod:`automix.dsp.params` -- the single declaration of every parameter (``STRIP``, ``MASTER``).
* :mod:`automix.dsp.biquad` -- RBJ-cookbook biquad design, responses and filtering.
* :mod:`automix.dsp.eq` -- the six-band parametric EQ built from those biquads.
* :mod:`automix.dsp.compressor` -- feed-forward compressor (gain computer + attack/release smoother).
* :mod:`automix.dsp.saturation` -- loudness-compensated soft-clip saturation.
* :mod:`automix.dsp.pan` -- constant-power pan and stereo balance.
* :mod:`automix.dsp.console` -- ``render_mix`` (channel strips + master bus) and block rendering.
"""
