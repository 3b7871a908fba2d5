"""automix: machine-learning assisted auto-mixer and mastering assistant.

Signal flow (one way): audio I/O (:mod:`automix.audio`) -> analysis
(:mod:`automix.loudness`, :mod:`automix.model.features`) -> model
(:mod:`automix.model`) -> console DSP (:mod:`automix.dsp`) -> mastering
(:mod:`automix.mastering`) -> export (:mod:`automix.audio`).
"""
__version__ = "0.1.0"
