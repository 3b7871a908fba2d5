"""Delivery loudness presets (integrated loudness targets in LUFS).

Values are the normalisation targets the platforms and standards publish:
Spotify, YouTube, Tidal, Amazon Music and SoundCloud normalise to -14 LUFS, Apple Music
to -16, Deezer to -15; EBU R 128 broadcast is -23 LUFS; AES TD1008 recommends -16 for
streaming; "cd"/"loud" is a typical loud modern master (-9 LUFS).
"""
from __future__ import annotations

import math

from automix.errors import SettingsError

PRESETS_LUFS: dict[str, float] = {
    "spotify": -14.0,
    "youtube": -14.0,
    "tidal": -14.0,
    "amazon": -14.0,
    "soundcloud": -14.0,
    "apple": -16.0,
    "deezer": -15.0,
    "broadcast": -23.0,
    "ebu": -23.0,
    "aes": -16.0,
    "cd": -9.0,
    "loud": -9.0,
}
"""Preset name -> target integrated loudness (LUFS)."""

#: Sensible range for a numeric target (LUFS).
TARGET_RANGE_LUFS: tuple[float, float] = (-40.0, -3.0)


def target_lufs(target: str | float) -> float:
    """Target loudness in LUFS for a preset name (case-insensitive) or a number ("-14", "-14 LUFS", -14).

    Raises
    ------
    SettingsError
        Unknown name, or a number outside :data:`TARGET_RANGE_LUFS`.
    """
    if isinstance(target, (int, float)) and not isinstance(target, bool):
        value = float(target)
    else:
        text = str(target).strip().lower()
        if text in PRESETS_LUFS:
            return PRESETS_LUFS[text]
        if text.endswith("lufs"):
            text = text[:-4].strip()
        try:
            value = float(text)
        except ValueError:
            raise SettingsError(
                f"unknown loudness target {target!r}; use a number in LUFS (e.g. -14) or one of: "
                + ", ".join(f"{k} ({v:g})" for k, v in PRESETS_LUFS.items())) from None
    lo, hi = TARGET_RANGE_LUFS
    if not math.isfinite(value) or not lo <= value <= hi:
        raise SettingsError(f"loudness target {value:g} LUFS is outside the sensible range {lo:g} to {hi:g} LUFS")
    return value
