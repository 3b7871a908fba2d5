"""Typed errors raised by automix.

Every error carries a message written for a musician: it names the file or setting
and says what is wrong and, where possible, what to do about it. The command line
prints the message on one line and exits with status 2.
"""
from __future__ import annotations


class AutomixError(Exception):
    """Base class of every error automix raises on purpose."""

    exit_code: int = 2


class AudioError(AutomixError):
    """An audio file cannot be read, is unusable (silent, NaN, empty...) or cannot be written."""


class OutputExistsError(AutomixError):
    """An output would overwrite an input or an existing file without ``--overwrite``."""


class OutputError(AutomixError):
    """An output cannot be written where asked: its folder is a file or read-only, the disk is full..."""


class MemoryLimitError(AutomixError):
    """A job would need more memory than the machine has available (refused before reading)."""


class SettingsError(AutomixError):
    """A settings value is unknown, malformed or outside its declared range."""


class ModelError(AutomixError):
    """A model checkpoint is missing, corrupt or incompatible with this version."""


class MasteringError(AutomixError):
    """Mastering cannot meet the request (e.g. the target needs too much limiting)."""


class DatasetError(AutomixError):
    """A training dataset folder is missing, empty or laid out wrongly."""
