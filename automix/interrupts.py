"""Ctrl-C and ``kill`` (SIGINT, SIGTERM) end a command cleanly: no half-written file, one line.

Python turns SIGINT into :class:`KeyboardInterrupt`; SIGTERM would end the process on the
spot, leaving whatever temporary file a writer had open. :func:`stop_on_signals` makes
SIGTERM raise :class:`Interrupted` (a :class:`KeyboardInterrupt`) too, so that every
``finally`` and ``except BaseException`` on the way out runs: the atomic writers
(:mod:`automix.outputs`) remove their temporary files and no output is moved into place
unfinished. The command then prints :func:`message` and exits with :func:`exit_status`
(130 for SIGINT, 143 for SIGTERM: 128 + the signal's number, as shells report them).
"""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

#: Signal names as a person knows them.
_NAMES = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}


class Interrupted(KeyboardInterrupt):
    """A stop signal arrived (``signum``); raised where the program was, like Ctrl-C."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signum)
        self.signum = int(signum)


def _raise(signum: int, frame) -> None:  # noqa: ARG001 - signal handler signature
    raise Interrupted(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM (and SIGINT) raise :class:`Interrupted` in the main thread.

    The previous handlers come back when the block ends. Outside the main thread (where
    Python cannot install handlers) the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _raise) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def exit_status(exc: BaseException) -> int:
    """128 + the signal's number: 130 for Ctrl-C (a plain KeyboardInterrupt), 143 for SIGTERM."""
    return 128 + (exc.signum if isinstance(exc, Interrupted) else int(signal.SIGINT))


def message(program: str, exc: BaseException, after: str = "no unfinished file was left behind") -> str:
    """The one line a stopped command prints: ``"automix: stopped by Ctrl-C (SIGINT); ..."``."""
    signum = exc.signum if isinstance(exc, Interrupted) else int(signal.SIGINT)
    return f"{program}: stopped by {_NAMES.get(signum, f'signal {signum}')}; {after}"
