"""Console speed and memory, measured side by side in one run (ratios; the machine is shared).

1. Render 8 stereo stems x 3.5 min at 44.1 kHz with every processor active (EQ bands,
   high-pass, compressor, saturation, pan, master EQ + compressor) and compare with the
   I/O floor: reading those 8 stems and writing one mix with soundfile (24-bit WAV).
2. Forward + backward time of a training batch (16 songs x 8 stems x 5 s) on the fast
   path, and on the exact path for comparison.
3. Peak memory (max RSS of a fresh process) of a 10-minute, 16-stem render with
   :class:`automix.dsp.console.BlockRenderer` (stems generated block by block).

Usage: ``python benchmarks/console_speed.py [--minutes 3.5] [--threads 2] [--repeats 3]``.
The last line is ``render/io ratio: X.XX`` (target <= 1.0).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

SR = 44100


def _active_settings(batch: int, n_stems: int, seed: int = 0):
    """Settings with every processor doing something (random within musical ranges)."""
    import torch

    from automix.dsp.params import MASTER, STRIP
    g = torch.Generator().manual_seed(seed)
    u = 0.2 + 0.6 * torch.rand(batch, n_stems, STRIP.size, generator=g, dtype=torch.float64)
    strip = STRIP.from_unit(u)
    for name, value in {"eq.hpf.mix": 1.0, "sat.mix": 0.4, "comp.threshold_db": -25.0, "gain_db": -6.0}.items():
        strip[..., STRIP.index(name)] = value
    master = MASTER.from_unit(0.2 + 0.6 * torch.rand(batch, MASTER.size, generator=g, dtype=torch.float64))
    master[..., MASTER.index("output_gain_db")] = -6.0
    return strip.float(), master.float()


def _synth_stems(n_stems: int, n_samples: int, seed: int = 0) -> np.ndarray:
    """(S, 2, T) float32 noise-and-tone stems at about -18 dBFS RMS."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / SR
    out = np.empty((n_stems, 2, n_samples), dtype=np.float32)
    for s in range(n_stems):
        tone = np.sin(2 * np.pi * (55.0 * (s + 1)) * t).astype(np.float32)
        for c in range(2):
            out[s, c] = 0.1 * rng.standard_normal(n_samples).astype(np.float32) + 0.1 * tone
    return out


def measure_render_vs_io(minutes: float, repeats: int) -> tuple[float, float, float, float]:
    """Best wall times (render, I/O) and the CPU times (all threads) of those runs, seconds."""
    import soundfile as sf
    import torch

    from automix.dsp.console import render_mix
    n = int(minutes * 60 * SR)
    stems = _synth_stems(8, n)
    strip, master = _active_settings(1, 8)
    with tempfile.TemporaryDirectory() as tmp:
        paths = [os.path.join(tmp, f"stem{i}.wav") for i in range(8)]
        for p, s in zip(paths, stems):
            sf.write(p, s.T, SR, subtype="PCM_24")
        x = torch.from_numpy(stems).unsqueeze(0)
        with torch.no_grad():
            render_mix(x[..., :SR], strip, SR, master)  # compile / warm the kernels
        io_times, render_times = [], []
        for r in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            loaded = [sf.read(p, dtype="float32", always_2d=True)[0] for p in paths]
            mix_io = np.sum(loaded, axis=0)
            sf.write(os.path.join(tmp, f"mix{r}.wav"), mix_io, SR, subtype="PCM_24")
            io_times.append((time.perf_counter() - t0, time.process_time() - c0))
            del loaded, mix_io
            t0, c0 = time.perf_counter(), time.process_time()
            with torch.no_grad():
                out = render_mix(x, strip, SR, master)
            render_times.append((time.perf_counter() - t0, time.process_time() - c0))
            assert torch.isfinite(out.mix).all()
            del out
    (render_wall, render_cpu), (io_wall, io_cpu) = min(render_times), min(io_times)
    return render_wall, io_wall, render_cpu, io_cpu


def measure_training_step(mode: str, batch: int = 16, n_stems: int = 8, seconds: float = 5.0) -> float:
    import torch

    from automix.dsp.console import render_mix
    from automix.dsp.params import MASTER, STRIP
    n = int(seconds * SR)
    x = torch.from_numpy(_synth_stems(n_stems, n)).unsqueeze(0).expand(batch, -1, -1, -1).contiguous()
    strip, master = _active_settings(batch, n_stems)
    u = STRIP.to_unit(strip.double()).float().requires_grad_()
    mu = MASTER.to_unit(master.double()).float().requires_grad_()
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        out = render_mix(x, STRIP.from_unit(u), SR, MASTER.from_unit(mu), mode=mode)
        loss = out.mix.pow(2).mean()
        loss.backward()
        times.append(time.perf_counter() - t0)
        assert torch.isfinite(u.grad).all()
        u.grad = None
        mu.grad = None
        del out, loss
    return min(times)


_MEMORY_CHILD = r"""
import resource, sys, torch
torch.set_num_threads(int(sys.argv[3]))
sys.path.insert(0, sys.argv[4])
from console_speed import _active_settings, SR
from automix.dsp.console import BlockRenderer
minutes, n_stems = float(sys.argv[1]), int(sys.argv[2])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
strip, master = _active_settings(1, n_stems)
renderer = BlockRenderer(strip, SR, master)
n_total, block = int(minutes * 60 * SR), SR * 10
g = torch.Generator().manual_seed(0)
done, energy = 0, 0.0
while done < n_total:
    size = min(block, n_total - done)
    stems = 0.1 * torch.randn(1, n_stems, 2, size, generator=g)
    energy += float(renderer.process(stems).mix.pow(2).sum())
    done += size
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(peak * 1024, base * 1024, energy)
"""


def measure_block_memory(minutes: float = 10.0, n_stems: int = 16, threads: int = 2) -> tuple[int, int]:
    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(minutes), str(n_stems), str(threads), here],
                         check=True, capture_output=True, text=True)
    peak, base, _ = out.stdout.split()
    return int(peak), int(base)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=3.5, help="length of the 8 stems (default 3.5)")
    ap.add_argument("--threads", type=int, default=2, help="torch and numba threads (default 2)")
    ap.add_argument("--repeats", type=int, default=3, help="repetitions, best kept (default 3)")
    ap.add_argument("--skip-training", action="store_true", help="skip the forward+backward measurement")
    ap.add_argument("--skip-memory", action="store_true", help="skip the 10-minute memory measurement")
    args = ap.parse_args(argv)
    os.environ.setdefault("NUMBA_NUM_THREADS", str(args.threads))
    import numba
    import torch
    torch.set_num_threads(args.threads)
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))

    if not args.skip_memory:
        peak, base = measure_block_memory(threads=args.threads)
        print(f"10-min 16-stem block render: peak RSS {peak / 2**30:.2f} GiB "
              f"(of which {base / 2**30:.2f} GiB is the Python+torch process before rendering)")
    if not args.skip_training:
        for mode in ("fast", "exact"):
            t = measure_training_step(mode)
            print(f"training batch 16 x 8 stems x 5 s, forward+backward, {mode} path: {t:.2f} s")
    render_s, io_s, render_cpu, io_cpu = measure_render_vs_io(args.minutes, args.repeats)
    print(f"render 8 stereo stems x {args.minutes} min, every processor active: {render_s:.2f} s "
          f"(CPU time {render_cpu:.2f} s over {args.threads} threads)")
    print(f"I/O floor (read 8 stems + write the mix, soundfile, 24-bit WAV): {io_s:.2f} s (CPU time {io_cpu:.2f} s)")
    print(f"CPU-time ratio render/io (less sensitive to other jobs on a shared machine): {render_cpu / io_cpu:.2f}")
    print(f"render/io ratio: {render_s / io_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
