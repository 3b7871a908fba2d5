"""The training loop: data, DDP, mixed precision, checkpoints, resume, logs, validation.

One :class:`Trainer` runs in every process. Launched by ``torchrun`` it joins the process
group (gloo on CPU, nccl on GPU), every rank draws its own share of the seeded excerpts and
DistributedDataParallel averages the gradients, so the weights stay identical on every rank.
Rank 0 alone writes: ``RUN_DIR/config.yaml`` (the resolved config), ``last.pt`` every
``checkpoint_every`` steps and at the end, ``step_NNNNNNN.pt`` snapshots (the newest
``keep_checkpoints`` are kept), ``best.pt`` (lowest validation loss), ``train.csv`` and
``valid.csv`` (and TensorBoard events if asked and installed). ``resume="auto"`` continues
from ``RUN_DIR/last.pt`` when it exists, at the exact batch where the run stopped.
"""
from __future__ import annotations

import csv
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from automix.data import ExcerptSampler, FixedExcerpts, MultitrackData, collate_excerpts
from automix.errors import AutomixError, DatasetError
from automix.dsp.kernels import pin_threads
from train.checkpoint import load_training_checkpoint, save_training_checkpoint
from automix.model.checkpoint import load_weights
from train.evaluate import validate
from train.reproducibility import (KeyedSampler, SeededItems, deterministic_algorithms, rng_state,
                                   set_rng_state)
from train.step import forward_batch, step_generator

log = logging.getLogger("train")


@dataclass
class TrainerConfig:
    """How to train (Hydra group ``trainer``).

    Parameters
    ----------
    max_steps : int
        Optimiser steps in total (the run ends there).
    max_epochs : int or None
        Optional cap on epochs (an epoch is ``data.excerpts_per_epoch`` excerpts).
    batch_size : int
        Excerpts per step and process.
    learning_rate, weight_decay : float
        AdamW settings.
    warmup_steps : int
        Linear warm-up, then cosine decay to 5 % at ``max_steps``.
    grad_clip : float
        Gradient-norm clip (0: off).
    amp : bool
        Mixed precision (autocast for the model) on CUDA; ignored on CPU.
    amp_dtype : str
        ``"bfloat16"`` or ``"float16"`` (the latter with a gradient scaler, saved in checkpoints).
    deterministic : bool or None
        Bit-for-bit repeatable runs: ``torch.use_deterministic_algorithms`` during training
        (None: on for CPU, off for CUDA). Every run also keeps one CPU thread count
        throughout and seeds every example's loading from (seed, rank, epoch, position), so a
        killed and resumed CPU run ends with the weights of the uninterrupted one.
    checkpoint_every : int
        Steps between checkpoints.
    keep_checkpoints : int
        ``step_*.pt`` snapshots kept (0: only ``last.pt`` and ``best.pt``).
    log_every : int
        Steps between rows of ``train.csv``.
    validate : bool
        Validate at the end of every epoch (and at the end of the run).
    num_workers : int
        DataLoader worker processes per rank (0: load in the training process).
    device : str
        ``"auto"`` (CUDA if available), ``"cpu"`` or ``"cuda"``.
    seed : int
        Seeds weights, excerpts and perturbations.
    resume : str
        ``"auto"`` (continue from ``RUN_DIR/last.pt`` if present), ``"never"``, or a checkpoint path.
    resume_weights_only : bool
        Take only the model's weights from the ``resume`` checkpoint and start a new run at
        step 0 (fresh optimiser and schedule): fine-tuning a finished run, or continuing after
        the model gained parameters (they start at their initial values).
    progress : bool
        Progress bar on rank 0.
    tensorboard : bool
        Also write TensorBoard events (needs the ``tensorboard`` package).
    threads : int or None
        torch CPU threads per process (None: torch's default).
    """

    max_steps: int = 20000
    max_epochs: int | None = None
    batch_size: int = 8
    learning_rate: float = 3e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    grad_clip: float = 1.0
    amp: bool = True
    amp_dtype: str = "bfloat16"
    deterministic: bool | None = None
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 10
    validate: bool = True
    num_workers: int = 2
    device: str = "auto"
    seed: int = 0
    resume: str = "auto"
    resume_weights_only: bool = False
    progress: bool = True
    tensorboard: bool = False
    threads: int | None = None


# ----------------------------------------------------------------------------- distributed
@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def init_distributed(device_kind: str) -> Distributed:
    """Join the torchrun process group if launched by torchrun (env ``WORLD_SIZE`` > 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_kind == "cuda" else "gloo")
    return Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _broadcast(obj: Any, env: Distributed) -> Any:
    if not env.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# ----------------------------------------------------------------------------- logs
class CsvLog:
    """Append rows to a CSV file, writing the header once (columns fixed by the first row)."""

    def __init__(self, path: Path):
        self.path = path
        self.columns: list[str] | None = None
        if path.exists() and path.stat().st_size:
            with open(path, newline="") as f:
                self.columns = next(csv.reader(f), None)

    def write(self, row: dict[str, Any]) -> None:
        if self.columns is None:
            self.columns = list(row)
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(self.columns)
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([_fmt(row.get(c, "")) for c in self.columns])


def _fmt(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v


def _truncate_csv(path: Path, key: str, limit: int) -> None:
    """Drop rows with ``key`` > ``limit`` (rows a killed run logged after its last checkpoint)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or key not in rows[0]:
        return
    col = rows[0].index(key)
    kept = [rows[0]] + [r for r in rows[1:] if r and int(float(r[col])) <= limit]
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        csv.writer(f).writerows(kept)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- trainer
class Trainer:
    """Trains a mix model on a :class:`MultitrackData` set.

    Parameters
    ----------
    config : TrainerConfig
    data : MultitrackData
    model : nn.Module
        ``forward(stems[B,S,C,T], sample_rate, roles[B,S], mask[B,S]) -> strip [B,S,P]``.
    loss : nn.Module
        ``loss(MixPrediction) -> (total, {term: value})`` (:class:`automix.losses.CompositeLoss`).
    render : callable
        ``render(stems, strip, sample_rate, stem_mask=...) -> MixResult`` (the console).
    run_dir : path
        Where checkpoints, config and logs go (rank 0's is used by every rank).
    resolved_config : dict, optional
        The full resolved config, written to ``config.yaml`` and into checkpoints.
    """

    def __init__(self, config: TrainerConfig, data: MultitrackData, model: nn.Module, loss: nn.Module,
                 render: Callable, run_dir: str | Path, resolved_config: dict | None = None):
        self.config = config
        self.data = data
        self.model = model
        self.loss_fn = loss
        self.render = render
        self.resolved_config = dict(resolved_config or {})
        use_cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
        self.env = init_distributed("cuda" if use_cuda else "cpu")
        if use_cuda:
            self.device = torch.device("cuda", self.env.local_rank)
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device("cpu")
        if config.amp_dtype not in ("bfloat16", "float16"):
            raise AutomixError(f"trainer.amp_dtype must be bfloat16 or float16, not {config.amp_dtype!r}")
        self.amp_dtype = getattr(torch, config.amp_dtype) if (config.amp and self.device.type == "cuda") else None
        # float16 gradients need loss scaling; with it off the scaler passes everything through
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.deterministic = (self.device.type == "cpu") if config.deterministic is None else bool(config.deterministic)
        self.run_dir = Path(_broadcast(str(Path(run_dir).resolve()), self.env))
        # one thread count for the whole run (Numba's first parallel call would reset it)
        self.threads = pin_threads(config.threads)
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.best_valid = math.inf
        self.history: list[dict[str, float]] = []

    # ------------------------------------------------------------------ setup
    def _data(self):
        cfg, env = self.config, self.env
        if env.is_main:  # decode once, then the other ranks read the cache
            songs = self.data.prepare(("train", "valid"), progress=cfg.progress)
        env.barrier()
        if not env.is_main:
            songs = self.data.prepare(("train", "valid"))
        if not songs["train"]:
            raise DatasetError(f"no training songs in {self.data.root}")
        n = self.data.excerpt_samples
        train_set = self.data.dataset(songs["train"])
        self.sampler = ExcerptSampler(songs["train"], n, self.data.excerpts_per_epoch, seed=cfg.seed,
                                      rank=env.rank, world_size=env.world_size)
        loader_args = dict(batch_size=cfg.batch_size, collate_fn=collate_excerpts,
                           num_workers=cfg.num_workers, pin_memory=self.device.type == "cuda")
        if cfg.num_workers > 0:
            loader_args.update(persistent_workers=True, prefetch_factor=4)
        # every example is loaded under generators seeded by its place in the epoch (exact resume,
        # any number of workers); the loader's own generator leaves the global ones alone
        loader_generator = torch.Generator().manual_seed(cfg.seed * 1009 + env.rank)
        self.train_loader = DataLoader(SeededItems(train_set), sampler=KeyedSampler(self.sampler, cfg.seed, env.rank),
                                       drop_last=True, generator=loader_generator, **loader_args)
        if len(self.train_loader) == 0:
            raise DatasetError("batch_size is larger than the excerpts per epoch of one process")
        self.valid_loader = None
        if songs["valid"] and cfg.validate:
            valid_set = self.data.dataset(songs["valid"])
            fixed = FixedExcerpts(songs["valid"], n, self.data.valid_excerpts_per_song, env.rank, env.world_size)
            self.valid_loader = DataLoader(valid_set, sampler=fixed, batch_size=cfg.batch_size,
                                           collate_fn=collate_excerpts, num_workers=0)
        self.songs = songs

    def _optim(self, module: nn.Module):
        cfg = self.config
        self.optimizer = torch.optim.AdamW(module.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)

        def schedule(step: int) -> float:
            if step < cfg.warmup_steps:
                return (step + 1) / cfg.warmup_steps
            progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
            return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress))

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)

    def _resume_path(self) -> Path | None:
        resume = str(self.config.resume)
        if resume == "never":
            return None
        if resume == "auto":
            last = self.run_dir / "last.pt"
            return last if last.exists() else None
        path = Path(resume)
        if not path.exists():
            raise AutomixError(f"cannot resume: checkpoint {path} does not exist")
        return path

    def _load(self, path: Path) -> None:
        payload = load_training_checkpoint(path)
        load_weights(self.model, payload)
        training = payload.get("training")
        if not training or self.config.resume_weights_only:
            log.info("initialised weights from %s (%s: starting at step 0)", path,
                     "trainer.resume_weights_only" if training else "no training state")
            model = getattr(self.model, "module", self.model)
            if not any(k.endswith("spread_weight") for k in payload["state_dict"]) and \
                    hasattr(model, "start_pair_spread"):
                model.start_pair_spread()  # written before the pair-spread head: it starts learning from 0.6 apart
                log.info("%s has no pair-spread head: it starts with pairs 0.6 apart", path)
            return
        try:
            self.optimizer.load_state_dict(training["optimizer"])
        except ValueError as exc:
            raise AutomixError(f"cannot resume from {path}: its optimiser state belongs to a model with other "
                               "parameters (the model changed since it was written); start from its weights "
                               "with trainer.resume_weights_only=true") from exc
        self.scheduler.load_state_dict(training["scheduler"])
        self.step, self.epoch = int(training["step"]), int(training["epoch"])
        self.batch_in_epoch = int(training["batch_in_epoch"])
        self.best_valid = float(training.get("best_valid", math.inf))
        if training.get("scaler"):
            self.scaler.load_state_dict(training["scaler"])
        states = training.get("rng")
        if states and int(training.get("world_size", 1)) == self.env.world_size:
            set_rng_state(states[self.env.rank])
        elif states:
            log.warning("checkpoint written by %s processes, resuming with %d: random generators start afresh",
                        training.get("world_size"), self.env.world_size)
        log.info("resumed from %s at step %d (epoch %d, batch %d)", path, self.step, self.epoch, self.batch_in_epoch)

    # ------------------------------------------------------------------ checkpoints
    def _info(self) -> dict[str, Any]:
        return {"sample_rate": int(self.data.sample_rate), "step": self.step, "epoch": self.epoch,
                "excerpt_seconds": float(self.data.excerpt_seconds), "data_root": str(self.data.root),
                "train_songs": [s.name for s in self.songs["train"]],
                "valid_songs": [s.name for s in self.songs["valid"]],
                "config": self.resolved_config}

    def save(self, name: str = "last.pt") -> Path | None:
        """Rank 0 writes ``RUN_DIR/name`` (atomically); returns its path. Every rank must call it."""
        states = [rng_state()]
        if self.env.active:  # every rank's generators go into rank 0's checkpoint
            states = [None] * self.env.world_size
            dist.all_gather_object(states, rng_state())
        if not self.env.is_main:
            return None
        training = {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                    "best_valid": self.best_valid, "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(), "world_size": self.env.world_size,
                    "scaler": self.scaler.state_dict(), "rng": states}
        path = save_training_checkpoint(self.run_dir / name, self.model, self._info(), training)
        if name == "last.pt" and self.config.keep_checkpoints > 0:
            snapshot = self.run_dir / f"step_{self.step:07d}.pt"
            save_training_checkpoint(snapshot, self.model, self._info(), training)
            snapshots = sorted(self.run_dir.glob("step_*.pt"))
            for old in snapshots[: -self.config.keep_checkpoints]:
                old.unlink(missing_ok=True)
        return path

    # ------------------------------------------------------------------ main loop
    def fit(self) -> list[dict[str, float]]:
        """Train until ``max_steps`` (or ``max_epochs``); returns the validation history."""
        cfg, env = self.config, self.env
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self._data()
        self.model.to(self.device)
        self.loss_fn.to(self.device)
        self._optim(self.model)
        resume = self._resume_path()
        if resume is not None:
            self._load(resume)
        if env.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._write_config()
            if resume is not None:  # drop log rows written after the checkpoint we resume from
                _truncate_csv(self.run_dir / "train.csv", "step", self.step)
                _truncate_csv(self.run_dir / "valid.csv", "step", self.step)
        model = self.model
        if env.active:
            model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)
        train_log = CsvLog(self.run_dir / "train.csv") if env.is_main else None
        valid_log = CsvLog(self.run_dir / "valid.csv") if env.is_main else None
        writer = self._tensorboard() if env.is_main else None
        bar = None
        if env.is_main and cfg.progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.max_steps, initial=self.step, desc="training", unit="step", dynamic_ncols=True)
        target_is_sum = self.data.target_is_sum
        sample_rate = int(self.data.sample_rate)
        wait_total = step_total = 0.0
        window: dict[str, float] = {}
        window_n = 0
        last_saved = self.step
        deterministic = deterministic_algorithms(self.deterministic)
        deterministic.__enter__()
        try:
            while self.step < cfg.max_steps and (cfg.max_epochs is None or self.epoch < cfg.max_epochs):
                self.sampler.set_epoch(self.epoch, skip=self.batch_in_epoch * cfg.batch_size)
                batches = iter(self.train_loader)
                epoch_done = True
                while True:
                    t0 = time.perf_counter()
                    try:
                        batch = next(batches)
                    except StopIteration:
                        break
                    t1 = time.perf_counter()
                    batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
                    if torch.get_num_threads() != self.threads:  # summation order depends on it
                        torch.set_num_threads(self.threads)
                    parts = self._train_step(model, batch, sample_rate, target_is_sum)
                    if self.device.type == "cuda":
                        torch.cuda.synchronize(self.device)
                    t2 = time.perf_counter()
                    wait_total += t1 - t0
                    step_total += t2 - t0
                    self.step += 1
                    self.batch_in_epoch += 1
                    for k, v in parts.items():
                        window[k] = window.get(k, 0.0) + v
                    window_n += 1
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{parts['loss']:.4f}", epoch=self.epoch)
                    if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                        row = {"step": self.step, "epoch": self.epoch,
                               **{k: v / window_n for k, v in window.items()},
                               "lr": self.scheduler.get_last_lr()[0],
                               "data_wait_fraction": wait_total / max(step_total, 1e-9),
                               "examples_per_s": window_n * cfg.batch_size * env.world_size / max(step_total, 1e-9)}
                        if train_log is not None:
                            train_log.write(row)
                        if writer is not None:
                            for k, v in row.items():
                                if k not in ("step", "epoch"):
                                    writer.add_scalar(f"train/{k}", v, self.step)
                        window, window_n, wait_total, step_total = {}, 0, 0.0, 0.0
                    if self.step % cfg.checkpoint_every == 0:
                        self.save()
                        last_saved = self.step
                    if self.step >= cfg.max_steps:
                        epoch_done = self.batch_in_epoch >= len(self.train_loader)
                        break
                # a finished epoch validates and moves on; a run that stops mid-epoch validates once more
                self._end_epoch(valid_log, writer, sample_rate, target_is_sum, complete=epoch_done)
        finally:
            deterministic.__exit__(None, None, None)
            if bar is not None:
                bar.close()
            if writer is not None:
                writer.close()
        if self.step != last_saved or not (self.run_dir / "last.pt").exists():
            self.save()
        env.barrier()
        return self.history

    def _train_step(self, model: nn.Module, batch: dict[str, torch.Tensor], sample_rate: int,
                    target_is_sum: bool) -> dict[str, float]:
        cfg = self.config
        generator = step_generator(cfg.seed, self.step, self.env.rank)
        pred, _ = forward_batch(model, batch, sample_rate=sample_rate, render=self.render,
                                perturbation=self.data.perturbation, generator=generator,
                                target_is_sum=target_is_sum, amp_dtype=self.amp_dtype,
                                reference_probability=self.data.reference_probability,
                                scramble=self.data.scramble, scramble_probability=self.data.scramble_probability)
        loss, parts = self.loss_fn(pred)
        if not torch.isfinite(loss):
            raise AutomixError(f"training diverged at step {self.step} (loss {float(loss)}); "
                               "lower trainer.learning_rate or resume from an earlier checkpoint")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return {"loss": float(loss.detach()), **{f"loss.{k}": v for k, v in parts.items()}}

    def _end_epoch(self, valid_log, writer, sample_rate: int, target_is_sum: bool, complete: bool = True) -> None:
        metrics: dict[str, float] = {}
        if self.valid_loader is not None:
            metrics = validate(self.model, self.valid_loader, loss_fn=self.loss_fn, render=self.render,
                               perturbation=self.data.perturbation, sample_rate=sample_rate,
                               device=self.device, target_is_sum=target_is_sum, seed=self.config.seed,
                               rank=self.env.rank, amp_dtype=self.amp_dtype)
        if complete:
            self.epoch += 1
            self.batch_in_epoch = 0
        if metrics:
            row = {"step": self.step, "epoch": self.epoch, **metrics}
            self.history.append(row)
            if self.env.is_main:
                valid_log.write(row)
                if writer is not None:
                    for k, v in metrics.items():
                        writer.add_scalar(f"valid/{k}", v, self.step)
                log.info("epoch %d (step %d): valid loss %.4f, LSD %.2f dB (sum %.2f, equal %.2f), "
                         "balance %.2f LU (sum %.2f, equal %.2f)", self.epoch, self.step, metrics["loss"],
                         metrics["lsd_db.model"], metrics["lsd_db.sum"], metrics["lsd_db.equal_loudness"],
                         metrics["balance_lu.model"], metrics["balance_lu.sum"],
                         metrics["balance_lu.equal_loudness"])
            if metrics["loss"] < self.best_valid:
                self.best_valid = metrics["loss"]
                self.save("best.pt")

    # ------------------------------------------------------------------ helpers
    def _write_config(self) -> None:
        if not self.resolved_config:
            return
        import yaml

        path = self.run_dir / "config.yaml"
        tmp = path.with_suffix(".yaml.tmp")
        tmp.write_text(yaml.safe_dump(self.resolved_config, sort_keys=False))
        os.replace(tmp, path)

    def _tensorboard(self):
        if not self.config.tensorboard:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.warning("trainer.tensorboard=true but the tensorboard package is not installed; "
                        "CSV logs only (pip install tensorboard)")
            return None
        return SummaryWriter(str(self.run_dir / "tensorboard"))
