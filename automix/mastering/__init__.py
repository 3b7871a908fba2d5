"""Mastering: match a reference's tone, width and loudness (or a platform target), true-peak safe.

Main entry points: :func:`master` (files), :func:`master_audio` (arrays),
:func:`master_album` (several tracks, one loudness and tone), :data:`PRESETS_LUFS`.
"""
from automix.mastering.master import (MasteringOptions, MasterResult, describe_settings, master,  # noqa: F401
                                      master_audio)
from automix.mastering.presets import PRESETS_LUFS, target_lufs  # noqa: F401
