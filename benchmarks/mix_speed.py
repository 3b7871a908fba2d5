"""Speed of ``automix mix``: wall time as a ratio to the I/O floor, measured in the same run.

Workload (issue 6): 8 stereo stems of 3.5 minutes at 44.1 kHz (24-bit WAV; synthesised:
drum-like bursts, bass and chord tones, noise pads, so the compressor and EQ really work).

* **I/O floor** -- read the 8 stems and write one mix (their sum), nothing a mixer could
  skip, measured two ways: as a command (a fresh Python process that reads the stems with
  soundfile, sums them and writes the mix: start-up and the I/O libraries' imports are part
  of any command's floor), and inside this process with automix's own audio I/O.
* **automix mix** -- the command as a user runs it (a fresh ``python -m automix mix``
  process: start-up, imports, loading, analysis, model, full-length exact console render,
  writing the mix), compared with the command floor; and the same work through the Python
  API in this process, compared with the in-process floor.

Prints both ratios (target: ``automix mix`` / I/O floor <= 3). The machine is shared and
noisy, so each measurement is repeated (interleaved) and the best time is kept.

Usage: ``python benchmarks/mix_speed.py [--minutes 3.5] [--stems 8] [--repeats 2] [--model PATH]``;
``--long [--minutes 12 3] [--stems 16]``: peak RSS of long, large sessions (``benchmarks/mix_long.py``).

``--matrix`` (issue 17) times the command over the formats, rates, stem counts and options a
user meets instead (:data:`MATRIX`: a covering design -- every level of every factor appears
-- plus the 13-stem, 60-s, 48 kHz float session with ``--stems-out`` of the report): 44.1,
48 and 96 kHz; 16-bit, 24-bit and float WAV, 16- and 24-bit FLAC; 4, 13, 16 and 32 stems;
with and without ``--stems-out``; warm (Numba's compiled kernels cached, as after any first
run) and, for two cells, cold (an empty ``NUMBA_CACHE_DIR``: the first run after install).
Every second stem plays only in sections, digital silence between and a float-export tail
(as DAWs export them). Each cell is timed against its own command floor in the same run: a
fresh Python that reads the same files, sums them and writes the same outputs (the mix, and
with ``--stems-out`` one float WAV per stem). Printed per cell: best wall and CPU times,
ratios, the start-up every mix pays before its first sample (:data:`START_UP_COMMAND`, timed
beside it) and what the mix costs beyond it, and the peak memory (RSS) of each child process;
cold cells as a first run does them by default (no compiling: :mod:`automix.precompile`'s
first-run paths, then a background compile at ``nice 19`` once the outputs are written, waited
for before the next timing and reported in CPU seconds) and compiling in process
(``AUTOMIX_PRECOMPILE=0``, as before).
``--quick``: stems of at most 20 s (but the 60-s session), one repeat; ``--cells 0,3``: only
those cells.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROLES = ("kick", "snare", "hihat", "bass", "guitar", "piano", "pad", "vocals", "strings", "synth")


#: The command floor: read the stems with soundfile, sum them, write the mix (24-bit WAV).
FLOOR_COMMAND = """
import sys
import numpy as np
import soundfile as sf
files, out = sys.argv[1:-1], sys.argv[-1]
total = None
for f in files:
    x, sr = sf.read(f, dtype="float32", always_2d=True)
    total = x if total is None else total + x
sf.write(out, total / len(files), sr, subtype="PCM_24")
"""

#: The matrix's command floor: the same, plus (when a folder is given) every stem written
#: back as a float WAV, as ``--stems-out`` writes them. Argv: mix, stems folder or "-", files.
FLOOR_STEMS_COMMAND = """
import sys
from pathlib import Path
import numpy as np
import soundfile as sf
out, stems_dir, files = sys.argv[1], sys.argv[2], sys.argv[3:]
total = None
for f in files:
    x, sr = sf.read(f, dtype="float32", always_2d=True)
    if stems_dir != "-":
        sf.write(Path(stems_dir) / (Path(f).stem + ".wav"), x, sr, subtype="FLOAT")
    total = x if total is None else total + x
sf.write(out, total / len(files), sr, subtype="PCM_24")
"""


@dataclass(frozen=True)
class Cell:
    """One workload of the matrix."""

    rate: int  # Hz
    fmt: str  # "wav16", "wav24", "float" (32-bit float WAV), "flac16", "flac24"
    stems: int
    seconds: float
    stems_out: bool
    cold: bool = False  # also time a first run with empty compile caches

    @property
    def label(self) -> str:
        return (f"{self.rate / 1000:g}k {self.fmt:6s} {self.stems:2d}x{self.seconds:g}s"
                f"{' +stems-out' if self.stems_out else ''}")


#: Format name -> (extension, libsndfile subtype).
FORMATS = {"wav16": (".wav", "PCM_16"), "wav24": (".wav", "PCM_24"), "float": (".wav", "FLOAT"),
           "flac16": (".flac", "PCM_16"), "flac24": (".flac", "PCM_24")}

#: What any command that mixes with automix's model and console starts with: Python, numpy,
#: soundfile, numba's start-up with one cached kernel (no torch: a mix runs its model in numpy).
#: Timed beside every cell so that the table can show what a mix costs beyond it.
START_UP_COMMAND = """
import numpy, soundfile
from automix.precompile import enable_first_run
from automix.audio_kernels import warm_up
enable_first_run()  # as automix mix does: a cached kernel loaded without Numba's compile-time registries
warm_up()
"""

#: A covering design: every rate, format, stem count, stems-out and cache level appears;
#: the first cell is the 13-stem, 60-s, 48 kHz float session with --stems-out of issue 17.
MATRIX = (
    Cell(48000, "float", 13, 60.0, True, cold=True),
    Cell(44100, "wav24", 16, 30.0, False, cold=True),
    Cell(44100, "wav16", 4, 30.0, True),
    Cell(44100, "float", 32, 30.0, False),
    Cell(48000, "flac24", 32, 30.0, True),
    Cell(48000, "wav24", 4, 30.0, False),
    Cell(96000, "flac16", 16, 30.0, False),
    Cell(96000, "float", 4, 30.0, True),
    Cell(96000, "wav24", 16, 20.0, True),
)


def synth_stem(role: str, seconds: float, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A stereo stem ``[2, T]`` with the envelope and spectrum typical of ``role``."""
    n = int(seconds * sr)
    t = np.arange(n) / sr
    beat = (t * 2.0) % 1.0  # 120 bpm quarter notes
    if role in ("kick", "snare", "hihat"):
        decay = {"kick": 25.0, "snare": 18.0, "hihat": 60.0}[role]
        env = np.exp(-decay * beat)
        body = np.sin(2 * np.pi * 55 * t) if role == "kick" else rng.standard_normal(n)
        if role == "hihat":
            body = np.diff(body, prepend=0.0)
        mono = 0.2 * env * body
    elif role == "bass":
        mono = 0.3 * np.sin(2 * np.pi * 55 * (1 + (np.floor(t / 2) % 4) / 4) * t)
    elif role == "pad":
        mono = 0.05 * np.convolve(rng.standard_normal(n), np.ones(64) / 64, mode="same")
    else:
        f0 = {"guitar": 196.0, "piano": 261.6, "vocals": 330.0, "strings": 392.0, "synth": 523.0}[role]
        mono = sum(0.15 / k * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6)) for k in range(1, 6))
        mono = mono * (0.6 + 0.4 * np.sin(2 * np.pi * 0.25 * t))
    spread = rng.uniform(0.7, 1.0)
    return np.stack([mono, spread * mono + (1 - spread) * np.roll(mono, 17)]).astype(np.float32)


def best_of(repeats: int, fn) -> tuple[float, float]:
    """Best wall time and best CPU time (this process and its children, all threads) of ``fn``."""
    walls, cpus = [], []
    for _ in range(repeats):
        c0 = _cpu()
        t0 = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(_cpu() - c0)
    return min(walls), min(cpus)


def _cpu() -> float:
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def long_sessions(argv: list[str]) -> int:
    """``--long``: peak RSS of 12-minute, 16-stem sessions (``benchmarks/mix_long.py``, its options)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from mix_long import main as mix_long_main

    mix_long_main([a for a in argv if a != "--long"])
    return 0


def sparse(stem: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """``stem`` playing in two sections only, digital silence between, each section ending in
    a float export's release tail (exponential, down into the subnormal range)."""
    n = stem.shape[-1]
    gate = np.zeros(n)
    section = max(1, n // 6)
    for start in rng.choice(np.arange(0, n - section, max(1, section // 2)), size=2, replace=False):
        gate[start: start + section] = 1.0
    release = np.exp(-np.arange(n) / (0.05 * sr))  # -174 dB per second
    for end in np.flatnonzero(np.diff(gate) < 0):
        gate[end + 1:] = np.maximum(gate[end + 1:], release[: n - end - 1])
    return (stem * gate).astype(np.float32)


def write_session(cell: Cell, folder: Path, seed: int = 0) -> list[Path]:
    """The cell's stems in ``folder``: the roles cycle, every second stem plays in sections."""
    import soundfile as sf

    ext, subtype = FORMATS[cell.fmt]
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(cell.stems):
        role = ROLES[i % len(ROLES)]
        x = synth_stem(role, cell.seconds, cell.rate, rng)
        if i % 2:
            x = sparse(x, cell.rate, rng)
        path = folder / f"{i:02d}_{role}{ext}"
        sf.write(path, x.T, cell.rate, subtype=subtype)
        paths.append(path)
    return paths


def timed_child(cmd: list[str], env: dict | None = None) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MB) of a child process running ``cmd`` (its own rusage, from wait4)."""
    import shutil

    # the peak RSS comes from /usr/bin/time where there is one: a child's own ru_maxrss
    # counts this (large) process's pages from before its exec
    gnu_time = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    full = [gnu_time, "-f", "@@maxrss_kb %M", *cmd] if gnu_time else cmd
    t0 = time.perf_counter()
    proc = subprocess.Popen(full, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    err = proc.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:5])} ... failed ({proc.returncode}): {err[-500:]}")
    peak_kb = usage.ru_maxrss
    for line in err.splitlines():
        if line.startswith("@@maxrss_kb "):
            peak_kb = int(line.split()[1])
    return wall, usage.ru_utime + usage.ru_stime, peak_kb / 1024.0


def wait_for_background_compiles(cache: Path, timeout_s: float = 600.0) -> dict:
    """Wait for the background compile a first run started in the Numba cache ``cache``
    (:mod:`automix.precompile`), so that it neither shares the CPUs with the next timing nor
    finds its cache deleted; returns its status (``cpu_s``, ``wall_s``; zeros when none ran)."""
    import json

    from automix.precompile import PID_FILE, STATUS_FILE, running_pid

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(running_pid(p.parent) is not None for p in cache.rglob(PID_FILE)):
        time.sleep(0.05)
    status = {"cpu_s": 0.0, "wall_s": 0.0}
    for path in cache.rglob(STATUS_FILE):
        found = json.loads(path.read_text())
        status = {key: status[key] + float(found.get(key, 0.0)) for key in ("cpu_s", "wall_s")}
        path.unlink()
    return status


def run_matrix(cells: tuple[Cell, ...], repeats: int, model: str | None, quick: bool) -> int:
    """Time every cell against its own command floor and print the table."""
    import shutil

    rows = []
    with tempfile.TemporaryDirectory(prefix="mix_matrix_") as tmp:
        tmp = Path(tmp)
        warm_cache = tmp / "numba_warm"
        for k, cell in enumerate(cells):
            if quick and cell != MATRIX[0]:  # issue 17's session keeps its 60 s
                cell = Cell(cell.rate, cell.fmt, cell.stems, min(cell.seconds, 20.0), cell.stems_out, cell.cold)
            folder = tmp / f"cell{k}"
            files = write_session(cell, folder / "in", seed=k)
            out = folder / "out"
            out.mkdir()
            floor_cmd = [sys.executable, "-c", FLOOR_STEMS_COMMAND, str(out / "floor.wav"),
                         str(out / "floor_stems") if cell.stems_out else "-", *map(str, files)]
            if cell.stems_out:
                (out / "floor_stems").mkdir()
            cli = [sys.executable, "-m", "automix", "mix", str(folder / "in"), "-o", str(out / "mix.wav"),
                   "--overwrite", "-q"] + (["--stems-out", str(out / "stems")] if cell.stems_out else []) \
                + (["--model", model] if model else [])
            env_warm = dict(os.environ, NUMBA_CACHE_DIR=str(warm_cache))
            start_cmd = [sys.executable, "-c", START_UP_COMMAND]
            cold = cold_alone = background = None
            timed_child(floor_cmd)  # the stems in the page cache, as for any run
            if cell.cold:  # the first run after install: no compiled kernel cached anywhere
                cold_cache = tmp / f"numba_cold{k}"
                cold = timed_child(cli, dict(os.environ, NUMBA_CACHE_DIR=str(cold_cache)))
                background = wait_for_background_compiles(cold_cache)  # its kernels, compiled for later
                shutil.rmtree(cold_cache, ignore_errors=True)
                # the same compiling in process (AUTOMIX_PRECOMPILE=0: no first-run paths)
                cold_alone = timed_child(cli, dict(os.environ, NUMBA_CACHE_DIR=str(cold_cache),
                                                   AUTOMIX_PRECOMPILE="0"))
                shutil.rmtree(cold_cache, ignore_errors=True)
            timed_child(cli, env_warm)  # fills the warm cache (first cell), as after any first run
            wait_for_background_compiles(warm_cache)
            floors, mixes, starts = [], [], []
            for _ in range(repeats):  # interleaved: a noisy spell hits all alike
                floors.append(timed_child(floor_cmd))
                mixes.append(timed_child(cli, env_warm))
                starts.append(timed_child(start_cmd, env_warm))
            stray = wait_for_background_compiles(warm_cache)
            if stray["cpu_s"]:  # a kernel signature the background compile does not cover
                print(f"  warning: a warm run of {cell.label} compiled in the background ({stray['cpu_s']:.1f} s CPU)")
            best = [(min(r[0] for r in runs), min(r[1] for r in runs), max(r[2] for r in runs))
                    for runs in (floors, mixes, starts)]
            (floor_s, floor_cpu, floor_mb), (mix_s, mix_cpu, mix_mb), (start_s, start_cpu, _) = best
            rows.append((cell, floor_s, floor_cpu, floor_mb, mix_s, mix_cpu, mix_mb, cold, cold_alone,
                         start_s, start_cpu, background))
            print(f"  {cell.label}: floor {floor_s:.2f} s, automix {mix_s:.2f} s, start-up {start_s:.2f} s"
                  + (f", cold {cold[0]:.2f} s (compiling in process {cold_alone[0]:.2f} s; background "
                     f"compile afterwards {background['cpu_s']:.2f} s CPU)" if cold else ""),
                  flush=True)
            shutil.rmtree(folder, ignore_errors=True)
    import torch

    print(f"\nautomix mix vs its command floor (fresh process: read + sum + write the same outputs), "
          f"best of {repeats}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}")
    print("wall: seconds on the clock; CPU: user + system seconds of the child, all threads (less "
          "sensitive to other jobs on a shared machine)")
    print("start-up: a fresh Python importing numpy and soundfile and starting numba (what any "
          "mix costs before its first sample); beyond: mix - start-up")
    print(f"{'cell':32s} {'floor s':>7s} {'mix s':>7s} {'ratio':>6s} | {'CPU fl':>6s} {'CPU mix':>7s} {'ratio':>6s} |"
          f" {'start s':>7s} {'beyond':>6s} {'CPU st':>6s} {'beyond':>6s} | {'peak MB':>7s} {'floor MB':>8s} | {'cold s':>7s} {'cold/warm':>9s}"
          f" {'in-proc':>9s}")
    warm_ok, cold_ok = True, True
    warm_cpu, cold_cpu = [], []  # the same in CPU time (steadier on a shared machine)
    for cell, floor_s, floor_cpu, floor_mb, mix_s, mix_cpu, mix_mb, cold, cold_alone, start_s, start_cpu, bg in rows:
        ratio = mix_s / floor_s
        warm_ok &= ratio <= 3.0
        warm_cpu.append(mix_cpu / floor_cpu <= 3.0)
        cold_txt = ""
        if cold is not None:
            cold_ok &= cold[0] / mix_s <= 2.0
            cold_cpu.append(cold[1] / mix_cpu <= 2.0)
            cold_txt = (f" | {cold[0]:7.2f} {cold[0] / mix_s:9.2f} {cold_alone[0]:9.2f}"
                        f" (CPU {cold[1] / mix_cpu:.2f}, in process {cold_alone[1] / mix_cpu:.2f};"
                        f" then {bg['cpu_s']:.1f} s CPU at nice 19 in the background)")
        print(f"{cell.label:32s} {floor_s:7.2f} {mix_s:7.2f} {ratio:6.2f} | {floor_cpu:6.2f} {mix_cpu:7.2f}"
              f" {mix_cpu / floor_cpu:6.2f} | {start_s:7.2f} {mix_s - start_s:6.2f} {start_cpu:6.2f} {mix_cpu - start_cpu:6.2f} |"
              f" {mix_mb:7.0f} {floor_mb:8.0f}"
              f"{cold_txt}")
    print(f"every warm cell <= 3x its floor: {'met' if warm_ok else 'not met'}; "
          f"cold <= 2x warm: {'met' if cold_ok else 'not met'} (in CPU time: {sum(warm_cpu)} of {len(warm_cpu)} "
          f"warm cells within 3x, {sum(cold_cpu)} of {len(cold_cpu)} cold runs within 2x)")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--long" in argv:
        return long_sessions(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.5)
    parser.add_argument("--stems", type=int, default=8)
    parser.add_argument("--sample-rate", type=int, default=44100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default=None, help="checkpoint (default: models/mixer.pt, else an untrained model)")
    parser.add_argument("--matrix", action="store_true", help="time the matrix of formats, rates and stem counts")
    parser.add_argument("--quick", action="store_true", help="with --matrix: stems of at most 20 s, one repeat")
    parser.add_argument("--cells", default=None, help="with --matrix: comma-separated cell numbers (0 = issue 17's)")
    args = parser.parse_args(argv)
    if args.matrix:
        cells = MATRIX if args.cells is None else tuple(MATRIX[int(i)] for i in args.cells.split(","))
        return run_matrix(cells, 1 if args.quick else min(args.repeats, 2), args.model, args.quick)

    import torch

    from automix.audio import load_audio, write_audio
    from automix.mixing import mix
    from automix.model.checkpoint import DEFAULT_MODEL_PATH, save_checkpoint
    from automix.model.mixnet import MixModel

    sr = args.sample_rate
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="mix_speed_") as tmp:
        tmp = Path(tmp)
        stems_dir = tmp / "stems"
        stems_dir.mkdir()
        for i in range(args.stems):
            role = ROLES[i % len(ROLES)]
            write_audio(stems_dir / f"{i:02d}_{role}.wav", synth_stem(role, args.minutes * 60, sr, rng), sr,
                        subtype="PCM_24")
        model = args.model
        if model is None:
            if DEFAULT_MODEL_PATH.is_file():
                model = str(DEFAULT_MODEL_PATH)
            else:
                model = str(save_checkpoint(tmp / "untrained.pt", MixModel(), {"sample_rate": 22050}))
                print("note: no shipped weights; timing an untrained model of the default size")
        files = sorted(stems_dir.iterdir())

        def floor_command() -> None:
            subprocess.run([sys.executable, "-c", FLOOR_COMMAND, *map(str, files), str(tmp / "floor_cmd.wav")],
                           check=True)

        def io_floor() -> None:
            total = load_audio(files[0]).samples
            for f in files[1:]:
                total += load_audio(f).samples
            write_audio(tmp / "floor.wav", total / len(files), sr, subtype="PCM_24", overwrite=True)

        def cli() -> None:
            subprocess.run([sys.executable, "-m", "automix", "mix", str(stems_dir), "-o", str(tmp / "cli.wav"),
                            "--model", model, "--overwrite", "-q"], check=True, stdout=subprocess.DEVNULL)

        def api() -> None:
            mix(stems_dir, tmp / "api.wav", model=model, overwrite=True)

        io_floor()  # warm the page cache for everyone
        cli()  # and numba's on-disk cache of compiled kernels (as after any first run)
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in ("cmd_floor", "cli", "floor", "api")}
        for _ in range(args.repeats):  # interleaved, so a noisy spell hits every measurement alike
            for key, fn in (("cmd_floor", floor_command), ("cli", cli), ("floor", io_floor), ("api", api)):
                times[key].append(best_of(1, fn))
    best = {k: (min(w for w, _ in v), min(c for _, c in v)) for k, v in times.items()}
    print(f"workload: {args.stems} stereo stems x {args.minutes:g} min at {sr} Hz, torch threads {torch.get_num_threads()}, "
          f"best of {args.repeats}")
    print("                                             wall s   ratio |  CPU s   ratio (CPU: less sensitive to other jobs)")
    rows = (("I/O floor, command (fresh process)", "cmd_floor", "cmd_floor"),
            ("automix mix (command, fresh process)", "cli", "cmd_floor"),
            ("I/O floor, in this process", "floor", "floor"),
            ("automix.mixing.mix (Python API)", "api", "floor"))
    for label, key, ref in rows:
        (wall, cpu), (ref_wall, ref_cpu) = best[key], best[ref]
        print(f"{label:43s} {wall:7.2f} {wall / ref_wall:7.2f} | {cpu:6.2f} {cpu / ref_cpu:7.2f}")
    ratio = best["cli"][0] / best["cmd_floor"][0]
    print(f"automix mix / I/O floor (commands): {ratio:.2f} (target <= 3: {'met' if ratio <= 3 else 'not met'})")
    print(f"Python API / I/O floor (in process): {best['api'][0] / best['floor'][0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
