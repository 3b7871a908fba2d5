"""The ``automix`` command line: a thin layer over the Python API.

Each sub-command lives in its own module ``automix.cli.<name>`` exposing
``register(subparsers)`` (adds its parser, cheap: no heavy imports at module top)
and ``run(args) -> int``. Library errors (:class:`automix.errors.AutomixError`)
and file-system refusals become one line on stderr and exit status 2, never a traceback;
Ctrl-C and SIGTERM one line and status 130 / 143 (:mod:`automix.interrupts`).
"""
from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from typing import NoReturn

from automix.errors import AutomixError

#: Sub-command modules, in the order ``--help`` lists them.
COMMANDS: tuple[str, ...] = (
    "demo",
    "mix",
    "suggest",
    "render",
    "master",
    "analyze",
    "evaluate",
    "studio",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="automix",
        description=(
            "Machine-learning assisted auto-mixer and mastering assistant.\n"
            "Mix stems into a balanced stereo mix, master a mix to a reference or a\n"
            "platform loudness target, and see every setting it chose."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'automix COMMAND --help' for the options of one command.",
    )
    from automix import __version__

    parser.add_argument("--version", action="version", version=f"automix {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"automix.cli.{name}")
        except ModuleNotFoundError as exc:  # command not built yet
            if exc.name == f"automix.cli.{name}":
                continue
            raise
        p = module.register(sub)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    from automix import interrupts

    try:
        with interrupts.stop_on_signals():
            return int(args._run(args) or 0)
    except AutomixError as exc:
        print(f"automix: error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: every writer has removed its temporary file
        print(interrupts.message("automix", exc), file=sys.stderr)
        return interrupts.exit_status(exc)
    except OSError as exc:  # the file system refused something no writer words itself: still one line
        from automix.outputs import os_error_message

        where = f"{exc.filename}: " if exc.filename else ""
        print(f"automix: error: {where}{os_error_message(exc)}", file=sys.stderr)
        return 2
    except MemoryError:
        print("automix: error: out of memory (close other programs, or work on shorter files or fewer stems)",
              file=sys.stderr)
        return 2


def one_line(exc: BaseException) -> str:
    """``exc``'s message on one line (a parser's multi-line message folded at its line breaks)."""
    return re.sub(r"\s*\n\s*", " ", str(exc)).strip()


def exit_now(code: int) -> NoReturn:
    """End the process with status ``code`` once stdout and stderr are flushed, skipping the
    interpreter's teardown.

    Tearing down torch's and numba's modules at exit takes about half a second, a sizeable
    part of a short command (``automix mix`` of a song takes a few seconds). By the time a
    command returns every output has been written, closed and renamed into place (outputs
    are written atomically) and every worker thread joined, so the teardown has nothing
    left to save.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            pass
    os._exit(code)


def use_small_pages() -> bool:
    """Stop numpy asking the kernel for transparent huge pages for its large arrays (this
    process); returns whether it was asking.

    numpy marks every large array ``MADV_HUGEPAGE``. Where the kernel's defrag policy is
    "madvise" (a common default) and memory is fragmented -- a busy machine with a full page
    cache -- each fresh 2 MB page then waits for the kernel to compact memory: measured here
    on a command holding eight 3.5-minute stems, 2.5-4.2 s of system time against 1.0-1.4 s
    with ordinary pages, and a second or more of wall time. A command touches its arrays
    once, so huge pages save it little even when they come cheaply.
    """
    try:
        from numpy._core.multiarray import _set_madvise_hugepage
    except ImportError:  # numpy 1.x
        try:
            from numpy.core.multiarray import _set_madvise_hugepage
        except ImportError:
            return False
    return bool(_set_madvise_hugepage(False))


def console_main() -> NoReturn:
    """The ``automix`` command: :func:`main` (with :func:`use_small_pages`), then
    :func:`exit_now` with its status.

    An unexpected exception (a bug) propagates with its traceback through the normal exit.
    """
    use_small_pages()
    exit_now(main())


if __name__ == "__main__":  # pragma: no cover
    console_main()
