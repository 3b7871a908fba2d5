"""Training throughput on CPU, what a step costs next to a render, and how much of it waits for data.

Builds a synthetic multitrack set (or uses ``--data DIR``), then, in the same run:

0. per training sample rate, one training step side by side with the console's forward
   render of the same batch: ``render_mix`` of the step's input stems with the settings
   the model predicts for them, no gradient, the training config's console mode (fast).
   Steps and renders alternate, the medians are compared: the ratio ``step / render``
   (target <= 3) and the examples per second of the step alone. A step is everything
   ``train.trainer.Trainer`` does for one batch: the perturbation (rendered through the
   console), the model, the render with gradient, every loss term, backward, clipping and
   the optimiser;
1. trains a few steps per configuration (training sample rate x DataLoader workers) and
   prints examples per second and the fraction of step time spent waiting for the next
   batch (target: under 10 %);
2. times reading one training example from the decoded memory-mapped cache against
   decoding the stem files for it (what a loader without the cache would do): the ratio
   is what the cache saves;
3. the cost of ``trainer.deterministic`` (on by default on CPU): steps per second with it
   off over with it on, same data and settings.

Usage::

    python benchmarks/train_speed.py                 # synthetic songs, several minutes
    python benchmarks/train_speed.py --ratio-only    # part 0 only: step / render ratio, examples/s
    python benchmarks/train_speed.py --deterministic-only  # part 3 only: cost of trainer.deterministic
    python benchmarks/train_speed.py --data /work/data/midi_mt --steps 10
"""
from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def synthetic_dataset(folder: Path, n_songs: int, seconds: float) -> Path:
    from multitrack_synth import write_dataset

    return write_dataset(folder, n_songs=n_songs, seconds=seconds, sample_rate=44100, subtype="PCM_24")


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return hydra_compose("train", overrides=overrides)


def train_run(data: Path, cache: Path, run_dir: Path, sample_rate: int, workers: int, steps: int,
              batch_size: int, excerpt_seconds: float, extra: list[str] = ()) -> tuple[float, float]:
    """(examples/s, data-wait fraction) over the steps after the first two (warm-up)."""
    from train.__main__ import run

    warmup = 2
    overrides = [f"data.root={data}", f"data.cache_dir={cache}", f"run_dir={run_dir}",
                 f"data.sample_rate={sample_rate}", f"data.excerpt_seconds={excerpt_seconds}",
                 f"data.excerpts_per_epoch={(steps + warmup) * batch_size}", "data.valid_fraction=0",
                 f"trainer.max_steps={steps + warmup}", f"trainer.batch_size={batch_size}",
                 f"trainer.num_workers={workers}", "trainer.device=cpu", "trainer.progress=false",
                 "trainer.validate=false", f"trainer.log_every={warmup}", "trainer.checkpoint_every=100000",
                 "trainer.keep_checkpoints=0", f"trainer.warmup_steps={warmup}", *extra]
    run(compose(overrides), run_dir)
    with open(run_dir / "train.csv", newline="") as f:
        rows = list(csv.DictReader(f))[1:]  # drop the warm-up window
    seconds = sum(warmup * batch_size / float(r["examples_per_s"]) for r in rows)
    wait = sum(warmup * batch_size / float(r["examples_per_s"]) * float(r["data_wait_fraction"]) for r in rows)
    return len(rows) * warmup * batch_size / seconds, wait / seconds


def step_vs_render(data: Path, cache: Path, sample_rate: int, batch_size: int, excerpt_seconds: float,
                   repeats: int, overrides: list[str] = ()) -> tuple[float, float]:
    """Median seconds of (one training step, one forward render of the same batch), measured alternately."""
    import statistics

    from hydra.utils import instantiate

    from automix.data import ExcerptSampler, collate_excerpts
    from automix.dsp.kernels import pin_threads
    from train.step import forward_batch, step_generator

    cfg = compose([f"data.root={data}", f"data.cache_dir={cache}", f"data.sample_rate={sample_rate}",
                   f"data.excerpt_seconds={excerpt_seconds}", "data.valid_fraction=0", *overrides])
    pin_threads(torch.get_num_threads())
    dataset = instantiate(cfg.data)
    songs = dataset.prepare(("train",))["train"]
    items = dataset.dataset(songs)
    positions = list(ExcerptSampler(songs, dataset.excerpt_samples, batch_size, seed=0))
    batch = collate_excerpts([items[p] for p in positions])
    torch.manual_seed(0)
    model, loss_fn, render = instantiate(cfg.model), instantiate(cfg.loss), instantiate(cfg.console)
    trainer_cfg = instantiate(cfg.trainer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    seen: dict[str, torch.Tensor] = {}

    def step(index: int) -> None:
        pred, inputs = forward_batch(model, batch, sample_rate=sample_rate, render=render,
                                     perturbation=dataset.perturbation, generator=step_generator(0, index, 0),
                                     target_is_sum=dataset.target_is_sum,
                                     scramble=getattr(dataset, "scramble", None),
                                     scramble_probability=getattr(dataset, "scramble_probability", 0.0))
        loss, _ = loss_fn(pred)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), trainer_cfg.grad_clip)
        optimizer.step()
        seen["inputs"], seen["strip"] = inputs.detach(), pred.strip.detach()

    def forward_render() -> None:
        with torch.no_grad():
            render(seen["inputs"], seen["strip"], sample_rate, stem_mask=batch["mask"])

    step(0)
    forward_render()  # compiled, warm
    steps, renders = [], []
    for i in range(repeats):
        t0 = time.perf_counter()
        forward_render()
        t1 = time.perf_counter()
        step(i + 1)
        t2 = time.perf_counter()
        renders.append(t1 - t0)
        steps.append(t2 - t1)
    return statistics.median(steps), statistics.median(renders)


def read_speed(data: Path, cache: Path, sample_rate: int, excerpt_seconds: float, n: int = 20) -> tuple[float, float]:
    """Seconds per example: from the memory-mapped cache, and by decoding the files."""
    from automix.audio import load_audio
    from automix.data import AudioCache, ExcerptDataset, ExcerptSampler, scan_folder

    songs = scan_folder(data)
    cached = AudioCache(cache, sample_rate).prepare(songs)
    length = int(excerpt_seconds * sample_rate)
    positions = list(ExcerptSampler(cached, length, n, seed=1))
    ds = ExcerptDataset(cached, length)
    t0 = time.perf_counter()
    for index in positions:
        ds[index]
    t_cache = (time.perf_counter() - t0) / n
    by_name = {s.name: s for s in songs}
    t0 = time.perf_counter()
    for song_index, start in positions[: max(3, n // 4)]:
        song = by_name[cached[song_index].name]
        stems = [load_audio(p, sample_rate=sample_rate).samples[:, start:start + length] for p in song.stems]
        np.stack([s for s in stems if s.shape[-1] == length] or stems[:1])
    t_decode = (time.perf_counter() - t0) / max(3, n // 4)
    return t_cache, t_decode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="multitrack folder (default: synthetic songs)")
    parser.add_argument("--songs", type=int, default=6, help="synthetic songs (default 6)")
    parser.add_argument("--steps", type=int, default=8, help="measured steps per configuration (default 8)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--excerpt-seconds", type=float, default=3.0)
    parser.add_argument("--sample-rates", type=int, nargs="+", default=[24000, 44100])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--repeats", type=int, default=7, help="side-by-side step/render pairs (default 7)")
    parser.add_argument("--ratio-only", action="store_true", help="only part 0 (step vs render)")
    parser.add_argument("--deterministic-only", action="store_true", help="only part 3 (cost of trainer.deterministic)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    import logging

    logging.getLogger("train").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="automix-train-speed-") as tmp:
        tmp = Path(tmp)
        data = args.data or synthetic_dataset(tmp / "songs", args.songs, seconds=20.0)
        cache = tmp / "cache"
        print(f"data: {data}  batch {args.batch_size} x {args.excerpt_seconds:g} s excerpts, "
              f"{args.steps} measured steps, {args.threads} torch threads, CPU")
        for sr in ([] if args.deterministic_only else args.sample_rates):
            t_step, t_render = step_vs_render(data, cache, sr, args.batch_size, args.excerpt_seconds, args.repeats)
            print(f"step vs render @ {sr:5d} Hz: step {1000 * t_step:7.0f} ms, forward render {1000 * t_render:6.0f} ms, "
                  f"ratio {t_step / t_render:5.2f} (target <= 3); {args.batch_size / t_step:6.2f} examples/s")
        if args.ratio_only:
            return 0
        results = {}
        for sr in ([] if args.deterministic_only else args.sample_rates):
            for workers in args.workers:
                eps, wait = train_run(data, cache, tmp / f"run-{sr}-{workers}", sr, workers, args.steps,
                                      args.batch_size, args.excerpt_seconds)
                results[sr, workers] = eps
                print(f"train @ {sr:5d} Hz, {workers} workers: {eps:6.2f} examples/s, "
                      f"waiting for data {100 * wait:5.1f} % of step time (target < 10 %)")
        if len(args.sample_rates) > 1 and not args.deterministic_only:
            lo, hi = min(args.sample_rates), max(args.sample_rates)
            w = args.workers[0]
            print(f"speed-up of training at {lo} Hz over {hi} Hz ({w} workers): "
                  f"{results[lo, w] / results[hi, w]:.2f}x")
        if not args.deterministic_only:
            t_cache, t_decode = read_speed(data, cache, args.sample_rates[0], args.excerpt_seconds)
            print(f"one example: {1000 * t_cache:.2f} ms from the memory-mapped cache, "
                  f"{1000 * t_decode:.1f} ms decoding the files: cache {t_decode / t_cache:.0f}x faster")
        sr = args.sample_rates[0]
        speeds = {}
        for flag in ("true", "false", "true", "false"):  # interleaved: the machine's load drifts
            eps, _ = train_run(data, cache, tmp / f"run-det-{flag}-{len(speeds)}", sr, 0, args.steps,
                               args.batch_size, args.excerpt_seconds, [f"trainer.deterministic={flag}"])
            speeds.setdefault(flag, []).append(eps)
        on, off = (sum(speeds[f]) / len(speeds[f]) for f in ("true", "false"))
        print(f"trainer.deterministic @ {sr} Hz: {on:.2f} examples/s on, {off:.2f} off: "
              f"determinism costs {100 * (off / on - 1):+.1f} % of step time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
