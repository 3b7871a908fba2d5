"""First run after install: mix without compiling, compile for later in the background (issue 17).

Numba compiles a kernel the first time a process calls it and caches the machine code on
disk; every later run loads it in milliseconds. On a machine's first ``automix mix`` that
compiling costs more than the mix: about 3 s of CPU for the fused console strip, 0.3-0.6 s
each for the decoders, the loudness meter and the PCM writer, Python work that holds the
GIL, while a short session mixes in about 1 s.

So ``automix mix`` runs its **first-run paths** (:func:`enable_first_run`): before a kernel
is called, :func:`ready` checks whether it is compiled in this process or can be loaded from
the cache (then loads it). If not, the caller takes its path without compiled code -- the
same results, from numpy and scipy's C filters (:mod:`automix.dsp.strip_uncompiled`, the
``_numpy`` paths of :mod:`automix.audio` and :mod:`automix.loudness`) -- and the kernel is
noted. Once the command has written its outputs, :func:`compile_in_background` starts
``python -m automix.precompile`` as a detached process at the lowest CPU priority (``nice
19``): it compiles every kernel a mix uses into the cache and exits, and the next run loads
them. Only one such process runs at a time (a pid file in the cache folder); a run that
finds one still compiling takes the first-run paths again without starting another.

``AUTOMIX_PRECOMPILE=0`` turns the first-run paths off: the command then compiles in
process, as every other caller does (the Python API, training, the tests).

(Earlier, an opt-in helper process compiled the kernels *while* the mix read its stems and
the mix waited for it before rendering; on 2 cores that was slower than compiling in
process, 12.3 vs 9.3 s, because both shared the cores and the render waited.)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

#: Environment variable: ``0`` turns the first-run paths off (kernels compile in process).
SWITCH = "AUTOMIX_PRECOMPILE"
#: Name of the pid file (in the console kernel's cache folder) of a running background compile.
PID_FILE = "automix-precompile.pid"
#: What the last background compile measured (``{"cpu_s": ..., "wall_s": ..., "ok": ...}``), beside it.
STATUS_FILE = "automix-precompile.json"

_STATE = {"first_run": False}
#: Kernels a first-run path stood in for during this process (qualified names).
MISSED: set[str] = set()


def enable_first_run() -> bool:
    """Let :func:`ready` send callers to their first-run paths (unless ``AUTOMIX_PRECOMPILE=0``);
    returns whether it did. Called by the ``mix`` command before it reads the stems."""
    _STATE["first_run"] = os.environ.get(SWITCH, "1") != "0"
    return _STATE["first_run"]


def ready(kernel, *args) -> bool:
    """Whether ``kernel`` (a Numba dispatcher) may be called on ``args``.

    Always True unless :func:`enable_first_run` was called. Then True when ``kernel`` is
    compiled for these argument types in this process or its compiled code is in Numba's
    cache (it is loaded now, nothing compiles); False otherwise: the caller runs its
    first-run path and ``kernel`` is noted in :data:`MISSED` for :func:`compile_in_background`.
    True too when this Numba's internals are not what is expected (it then just compiles).
    """
    if not _STATE["first_run"]:
        return True
    try:
        from numba.core import sigutils
        from numba.core.caching import NullCache
        from numba.core.compiler_lock import global_compiler_lock

        if isinstance(kernel._cache, NullCache):  # nothing would be cached: no point in waiting for it
            return True
        sig = tuple(kernel.typeof_pyval(a) for a in args)
        with global_compiler_lock:
            argtypes, _ = sigutils.normalize_signature(sig)
            if kernel.overloads.get(tuple(argtypes)) is not None:
                return True
            cres = _load_cached(kernel, sig)
            if cres is None:
                MISSED.add(f"{kernel.py_func.__module__}.{kernel.py_func.__qualname__}")
                return False
            kernel._cache_hits[sig] += 1  # as Dispatcher.compile does on a cache hit
            if not cres.objectmode:
                kernel.targetctx.insert_user_function(cres.entry_point, cres.fndesc, [cres.library])
            kernel.add_overload(cres)
            return True
    except Exception:  # noqa: BLE001 - another numba: compile as usual
        return True


def _load_cached(kernel, sig):
    """``kernel``'s compiled code for ``sig`` from Numba's cache (its CompileResult), or None.

    What ``kernel._cache.load_overload`` does, without first refreshing Numba's target context:
    that refresh imports and installs every typing and lowering registry Numba has (numpy
    support, typed containers, random, ...), about 0.2 s of CPU a process pays before its first
    kernel, which only compiling needs -- loading machine code from the cache needs Numba's
    runtime (initialised here) and the code generator. A compile later in the process (a
    kernel not in the cache) refreshes the context itself.
    """
    from numba.core.runtime import rtsys

    ctx = kernel.targetctx
    rtsys.initialize(ctx)  # the runtime (NRT) the cached code links against
    cache = kernel._cache
    with cache._guard_against_spurious_io_errors():
        return cache._load_overload(sig, ctx)
    return None  # the guard swallowed an I/O error


def _cache_folder() -> Path | None:
    """The folder Numba caches the fused console strip in (where the pid file goes), or None."""
    try:
        from automix.dsp.kernels import _strip_groups

        return Path(_strip_groups._cache._cache_path)
    except Exception:  # noqa: BLE001 - caching off, or another numba
        return None


def console_kernel_cached() -> bool:
    """Whether numba's on-disk cache holds a compiled fused console strip for this source.

    Reads the kernel's cache index (no compilation, no numba start-up). True when caching
    is off or the cache cannot be read: then there is nothing a background compile could do.
    """
    try:
        from automix.dsp.kernels import _strip_groups

        cache_file = _strip_groups._cache._cache_file  # numba's IndexDataCacheFile
        return bool(cache_file._load_index())
    except Exception:  # noqa: BLE001 - a numba without these internals, or no cache: no helper
        return True


def running_pid(folder: Path) -> int | None:
    """The pid of a background compile still running for ``folder``'s cache, else None
    (a pid file left by one that died is removed)."""
    path = folder / PID_FILE
    try:
        pid = int(path.read_text().strip() or "0")
        if pid == 0 and time.time() - path.stat().st_mtime < 30.0:
            return -1  # just created: its starter is about to write the pid
    except (OSError, ValueError):
        return None
    if pid > 0 and os.name == "nt":  # os.kill would end it there: trust a recent file
        try:
            return pid if time.time() - path.stat().st_mtime < 600.0 else None
        except OSError:
            return None
    if pid > 0:
        try:
            os.kill(pid, 0)  # signal 0: only asks whether it exists
            return pid
        except ProcessLookupError:
            pass
        except PermissionError:
            return pid
    try:
        path.unlink()
    except OSError:
        pass
    return None


def compile_in_background() -> int | None:
    """Start ``python -m automix.precompile`` detached at ``nice 19`` when a first-run path was
    taken in this process (:data:`MISSED`) and no background compile is running; returns its
    pid, or None when none was started. Call it once the command's outputs are written."""
    if not MISSED or not _STATE["first_run"]:
        return None
    folder = _cache_folder()
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if running_pid(folder) is not None:
            return None
        fd = os.open(folder / PID_FILE, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)  # one at a time
    except OSError:
        return None
    try:
        proc = subprocess.Popen([sys.executable, "-m", "automix.precompile", "--background"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)  # not in the terminal's job: Ctrl-C there leaves it be
    except OSError:
        os.close(fd)
        (folder / PID_FILE).unlink(missing_ok=True)
        return None
    os.write(fd, str(proc.pid).encode())
    os.close(fd)
    return proc.pid


def wait_for_background(folder: Path, timeout_s: float = 600.0) -> dict | None:
    """Wait until no background compile runs for ``folder``; returns its status
    (:data:`STATUS_FILE`) or None. For benchmarks, which time runs one after another."""
    deadline = time.monotonic() + timeout_s
    while running_pid(folder) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        return json.loads((folder / STATUS_FILE).read_text())
    except (OSError, ValueError):
        return None


def compile_kernels(sample_rate: int = 48000) -> None:
    """Call every kernel a mix uses once, on tiny arrays of the types a mix passes (float32
    stereo and mono stems and mix, every decoder), so that numba compiles and caches them."""
    from automix.audio import interleaved_codes
    from automix.audio_kernels import float_block_to_planar, int_block_to_planar, pcm24_block_to_planar
    from automix.dsp.kernels import _smooth_chunk, channel_strip, slp_vectorisation
    from automix.loudness import integrated_loudness

    frames = 4096
    for channels in (2, 1):
        stems = 2
        x = np.zeros((stems, channels, frames), dtype=np.float32)
        coef = np.zeros((stems, 6, 5))
        coef[:, :, 0] = 1.0  # pass-through sections
        comp = np.tile([0.0, 1.0, 6.0, 0.0, 0.5, 0.5], (stems, 1))  # compressor off
        sat = np.tile([1.0, 1.0, 0.0], (stems, 1))
        out_gain = np.ones((stems, 2, channels))
        y = np.empty((stems, 2, frames), dtype=np.float32)
        with slp_vectorisation():
            channel_strip(x, coef, comp, sat, out_gain, np.zeros((stems, channels, 6, 2)), np.zeros(stems), y)
    _smooth_chunk(np.zeros(8), 8, 0.5, 0.5, 0.0)  # the first-run strip's smoother, called on its own
    mix = np.zeros((2, sample_rate), dtype=np.float32)  # one second: the meter's blocks run
    integrated_loudness(mix, sample_rate)
    for bits in (16, 24):
        interleaved_codes(mix, bits, dither=False)
    out = np.zeros((2, 4), dtype=np.float32)
    ints = np.zeros((2, 2), dtype=np.int64)
    floats = np.zeros((2, 2), dtype=np.float64)
    int_block_to_planar(np.zeros(8, dtype=np.int16), 2, 4, out, 0, ints, 2.0**-15)
    int_block_to_planar(np.zeros(8, dtype=np.int32), 2, 4, out, 0, ints, 2.0**-31)
    pcm24_block_to_planar(np.zeros(24, dtype=np.uint8), 2, 4, out, 0, ints, 2.0**-31)
    float_block_to_planar(np.zeros(8, dtype=np.float32), 2, 4, out, 0, floats)


#: The former name (the kernels after the analysis; now every kernel).
compile_late_kernels = compile_kernels


def _kernels() -> list:
    """The dispatchers :func:`compile_kernels` calls directly."""
    from automix import audio_kernels as a
    from automix import loudness_kernels as m
    from automix.dsp import kernels as k

    return [k._strip_groups, k._smooth_chunk, m.k_weighted_hop_energies, a.quantize_interleaved,
            a.int_block_to_planar, a.pcm24_block_to_planar, a.float_block_to_planar]


def compiled_here() -> list[str]:
    """Qualified names of the kernels of :func:`_kernels` this process compiled (cache misses)."""
    return [f"{d.py_func.__module__}.{d.py_func.__qualname__}" for d in _kernels() if sum(d.stats.cache_misses.values())]


def main(argv: list[str] | None = None) -> int:
    """``python -m automix.precompile [--background]``: compile every kernel a mix uses.

    ``--background`` (how :func:`compile_in_background` starts it): at ``nice 19``, writing
    :data:`STATUS_FILE` and removing the pid file when done.
    """
    argv = sys.argv[1:] if argv is None else argv
    background = "--background" in argv
    if background:
        try:
            os.nice(19)
        except (AttributeError, OSError):  # no nice on this platform
            pass
    t0, c0 = time.perf_counter(), time.process_time()
    ok = False
    compiled: list[str] = []
    try:
        from automix.audio_kernels import warm_up

        warm_up()  # numba's start-up as in the mix (without its scipy BLAS probe)
        compile_kernels()
        compiled = compiled_here()
        ok = True
    finally:
        if background:
            folder = _cache_folder()
            if folder is not None:
                status = {"ok": ok, "cpu_s": round(time.process_time() - c0, 3),
                          "wall_s": round(time.perf_counter() - t0, 3), "compiled": compiled}
                try:
                    tmp = folder / (STATUS_FILE + ".tmp")
                    tmp.write_text(json.dumps(status))
                    os.replace(tmp, folder / STATUS_FILE)
                except OSError:
                    pass
                try:
                    if (folder / PID_FILE).read_text().strip() == str(os.getpid()):
                        (folder / PID_FILE).unlink()
                except OSError:
                    pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
