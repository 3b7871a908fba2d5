"""Will it fit? Memory a job needs against memory the machine can give, checked before reading.

A mix holds every stem decoded at once and a master holds its whole mix (``float32``), so a
3-hour file or a long session with many stems can need more memory than the machine has;
the kernel would then kill the process part-way ("Killed", no message, nothing written).
:func:`check_fits` refuses such a job up front, from the files' headers, with one line that
says how much it needs and how much there is.

The estimates (:func:`mix_bytes`, :func:`master_bytes`) follow peak resident memory measured
with ``benchmarks/mix_long.py`` and ``benchmarks/mastering_memory.py``; the available memory
is the kernel's ``MemAvailable`` (what can be had without swapping), lowered to the room left
under a cgroup (container) limit when there is one.
"""
from __future__ import annotations

from pathlib import Path

from automix.errors import MemoryLimitError

GIB = float(1 << 30)

#: Memory of the runtime itself (Python, torch, numba), bytes: measured 0.56 GiB (mastering).
RUNTIME_BYTES = int(0.6 * GIB)
#: Runtime of ``automix mix`` (the runtime, the mix model and its analysis buffers), bytes: the
#: intercept of peak RSS against session size measured by ``benchmarks/mix_long.py`` (0.99 GiB).
MIX_RUNTIME_BYTES = int(1.0 * GIB)
#: Bytes per decoded sample (``float32``).
SAMPLE_BYTES = 4


def available_bytes() -> int | None:
    """Memory this process can still get (bytes), or None where the system does not say.

    ``MemAvailable`` from ``/proc/meminfo``, capped by the room under the cgroup's memory
    limit (cgroup v2 ``memory.max`` - ``memory.current``, or v1's limit - usage).
    """
    free: int | None = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        return None
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit_text = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit_text.isdigit() and int(limit_text) < (1 << 60):
            room = max(int(limit_text) - usage, 0)
            free = room if free is None else min(free, room)
        break
    return free


def mix_bytes(stems: int, frames: int, stems_out: bool = False) -> int:
    """Peak memory of mixing ``stems`` stems of ``frames`` frames at the working rate (bytes).

    The stems live in one ``(stems, 2, frames)`` float32 array; the render adds the mix and,
    block by block, small buffers; the writer the interleaved codes of the mix; processed
    stems (``stems_out``) are a second array as large as the first. Measured (16 stems, 44.1
    kHz): 2.02 GiB peak for 3 minutes (estimate 2.07), 5.08 GiB for 12 minutes (5.26).
    """
    per_stem = 2 * frames * SAMPLE_BYTES
    arrays = stems * per_stem * (2 if stems_out else 1) + 2 * per_stem  # + the mix and its codes
    return MIX_RUNTIME_BYTES + arrays


def master_bytes(frames: int, channels: int = 2) -> int:
    """Peak memory of mastering a file of ``frames`` frames (bytes).

    Measured: a 3-hour 44.1 kHz file (3.55 GiB as float32 stereo) peaked at 7.85 GiB with the
    clipper + limiter loudness stage (``automix master --target -14``), about twice the file
    on top of the runtime; the estimate keeps that ratio.
    """
    whole = 2 * max(frames, 0) * SAMPLE_BYTES
    return RUNTIME_BYTES + int(2.1 * whole) + int(0.15 * GIB)


def describe(nbytes: float) -> str:
    return f"{nbytes / GIB:.1f} GiB" if nbytes >= 0.1 * GIB else f"{nbytes / (1 << 20):.0f} MiB"


def check_fits(what: str, need: int, advice: str) -> None:
    """Raise :class:`MemoryLimitError` when ``need`` bytes exceed the memory available.

    ``what`` names the job (``"mix.wav: 3.0 h of audio"``); ``advice`` says what to do. Nothing
    is refused where the system does not report its free memory.
    """
    free = available_bytes()
    if free is not None and need > free:
        raise MemoryLimitError(f"{what} needs about {describe(need)} of memory, but only {describe(free)} "
                               f"is available; {advice}")


def duration(frames: int, rate: int) -> str:
    """``"12.0 min"`` / ``"3.0 h"`` / ``"45 s"`` for a length in frames at ``rate`` Hz."""
    seconds = frames / max(rate, 1)
    if seconds >= 5400:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.0f} s"


__all__ = ["MemoryLimitError", "available_bytes", "check_fits", "mix_bytes", "master_bytes", "describe", "duration"]


def check_master_fits(path: str | Path) -> None:
    """Refuse to master ``path`` when :func:`master_bytes` of its length exceeds the memory available
    (a file whose header cannot be read is left to the reader to report)."""
    import soundfile as sf

    from automix.audio import quiet_decoder

    try:
        with quiet_decoder(path):
            info = sf.info(str(path))
    except Exception:  # noqa: BLE001 - unreadable: load_audio names the problem
        return
    frames, rate = max(int(info.frames), 0), int(info.samplerate)
    check_fits(f"{path}: mastering {duration(frames, rate)} of audio", master_bytes(frames),
               "master it in parts (split the file at quiet points) or close other programs")


def check_mix_fits(paths: list[Path], frames: int, rate: int, where: str) -> None:
    """Refuse to mix ``paths`` (the longest ``frames`` frames at ``rate`` Hz) when :func:`mix_bytes`
    exceeds the memory available; ``where`` names the song (its folder)."""
    check_fits(f"{where}: mixing {len(paths)} stems of up to {duration(frames, rate)}",
               mix_bytes(len(paths), frames),
               "bounce related stems to groups, mix the song in sections, or close other programs")
