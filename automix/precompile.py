"""First run after install: compile the mix's late kernels in a helper process (issue 17).

Numba compiles a kernel the first time a process calls it and caches the machine code on
disk; every later run loads it in milliseconds. The fused console strip (the render) takes
about 7 s of CPU to compile, the loudness meter and the PCM writer a second or two more,
and compiling is Python work that holds the GIL -- in the mixing process it would queue
behind the stem reading and analysis, one after the other.

So when ``automix mix`` finds no cached console kernel, it starts ``python -m
automix.precompile`` at once: a second process (no torch import: numpy arrays only) that
compiles those kernels into the same cache on the other CPU core while the mixing process
reads and analyses the stems (a mix imports no torch either). The mix waits for it just before rendering
(:func:`wait_for_helper`) and then loads the kernels from the cache. Warm runs start no
helper (one index-file read decides). If the helper fails, the mix compiles for itself.

**Off by default** (``AUTOMIX_PRECOMPILE=1`` turns it on): measured on the 2-core machine,
first runs took longer with it than without (12.3 vs 9.3 s and 9.2 vs 8.3 s on a nearly
idle machine, 95 vs 102 s and 91 vs 84 s on a loaded one: ``benchmarks/mix_speed.py
--matrix``): the helper's own start-up and the parent's work share the same two cores, and
the render waits for all three kernels. It may pay with more idle cores; that is unmeasured.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

#: Environment variable: ``1`` starts the helper on a first run (off by default: see above).
SWITCH = "AUTOMIX_PRECOMPILE"
#: The helper process of this run, if one was started.
_HELPER: list[subprocess.Popen] = []


def console_kernel_cached() -> bool:
    """Whether numba's on-disk cache holds a compiled fused console strip for this source.

    Reads the kernel's cache index (no compilation, no numba start-up). True when caching
    is off or the cache cannot be read: then there is nothing a helper could do.
    """
    try:
        from automix.dsp.kernels import _strip_groups

        cache_file = _strip_groups._cache._cache_file  # numba's IndexDataCacheFile
        return bool(cache_file._load_index())
    except Exception:  # noqa: BLE001 - a numba without these internals, or no cache: no helper
        return True


def start_helper_if_cold() -> bool:
    """Start the helper process when ``AUTOMIX_PRECOMPILE=1`` and the console kernel is not
    cached; returns whether it started."""
    if _HELPER or os.environ.get(SWITCH, "0") != "1" or console_kernel_cached():
        return False
    try:
        _HELPER.append(subprocess.Popen([sys.executable, "-m", "automix.precompile"], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    except OSError:
        return False
    return True


def wait_for_helper() -> None:
    """Wait for this run's helper (no-op when none was started), so that the kernels it
    compiled are loaded from the cache rather than compiled a second time here."""
    while _HELPER:
        proc = _HELPER.pop()
        try:
            proc.wait()
        except BaseException:  # Ctrl-C while waiting: do not leave it running
            proc.kill()
            raise


def compile_late_kernels(sample_rate: int = 48000) -> None:
    """Call every kernel a mix uses after its analysis once, on tiny arrays of the types a
    mix passes (float32 stereo stems and mix), so that numba compiles and caches them."""
    from automix.audio import interleaved_codes
    from automix.dsp.kernels import channel_strip, slp_vectorisation
    from automix.loudness import integrated_loudness

    stems, channels, frames = 2, 2, 4096
    x = np.zeros((stems, channels, frames), dtype=np.float32)
    coef = np.zeros((stems, 6, 5))
    coef[:, :, 0] = 1.0  # pass-through sections
    comp = np.tile([0.0, 1.0, 6.0, 0.0, 0.5, 0.5], (stems, 1))  # compressor off
    sat = np.tile([1.0, 1.0, 0.0], (stems, 1))
    out_gain = np.tile(np.eye(2), (stems, 1, 1))
    y = np.empty((stems, 2, frames), dtype=np.float32)
    with slp_vectorisation():
        channel_strip(x, coef, comp, sat, out_gain, np.zeros((stems, channels, 6, 2)), np.zeros(stems), y)
    mix = np.zeros((2, sample_rate), dtype=np.float32)  # one second: the meter's blocks run
    integrated_loudness(mix, sample_rate)
    for bits in (16, 24):
        interleaved_codes(mix, bits, dither=False)


def main() -> int:
    from automix.audio_kernels import warm_up

    warm_up()  # numba's start-up as in the mix (without its scipy BLAS probe)
    compile_late_kernels()
    return 0


if __name__ == "__main__":
    sys.exit(main())
