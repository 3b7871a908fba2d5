"""``python -m train`` / ``automix-train``: train the mix model (Hydra app over ``configs/train.yaml``).

Examples::

    python -m train data.root=/path/to/stems                       # one machine
    python -m train data.root=/path/to/stems run_dir=runs/mine     # resumes if runs/mine/last.pt exists
    torchrun --standalone --nproc_per_node=4 -m train data.root=/path/to/stems run_dir=runs/big
    python -m train --multirun data.root=/path trainer.learning_rate=1e-4,3e-4

Every run writes ``RUN_DIR/config.yaml`` (resolved), ``last.pt``/``best.pt``/``step_*.pt``
checkpoints (usable by ``automix mix --model``), ``train.csv`` and ``valid.csv``.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")
log = logging.getLogger("train")


def run(cfg: DictConfig, run_dir: str | Path):
    """Build everything ``cfg`` describes and train; returns the :class:`Trainer` after ``fit``."""
    from hydra.utils import instantiate

    from train.trainer import Trainer

    import torch

    resolved = OmegaConf.to_container(cfg, resolve=True)
    trainer_cfg = instantiate(cfg.trainer)
    if trainer_cfg.threads:
        torch.set_num_threads(int(trainer_cfg.threads))
    torch.manual_seed(trainer_cfg.seed)  # the initial weights depend on the seed only
    trainer = Trainer(trainer_cfg, data=instantiate(cfg.data), model=instantiate(cfg.model),
                      loss=instantiate(cfg.loss), render=instantiate(cfg.console), run_dir=run_dir,
                      resolved_config=resolved)
    try:
        trainer.fit()
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return trainer


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def _app(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from automix.errors import AutomixError

    try:
        trainer = run(cfg, HydraConfig.get().runtime.output_dir)
    except AutomixError as exc:
        log.error("%s", exc)
        print(f"automix-train: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return trainer.best_valid if trainer.history else None  # the value --multirun sweepers minimise


def main() -> None:
    """Console-script entry point (``automix-train``).

    Ctrl-C (SIGINT) and SIGTERM stop the run where it is: checkpoints are written atomically,
    so the last one stays whole and no temporary file is left; one line is printed and the
    exit status is 130 / 143. Running the same command again resumes from ``last.pt``.
    """
    from automix import interrupts

    if int(os.environ.get("RANK", "0")) > 0:
        # Under torchrun only rank 0 writes the run folder; the trainer broadcasts its path.
        sys.argv += ["hydra.output_subdir=null", "hydra.run.dir=.", "hydra/job_logging=disabled",
                     "hydra/hydra_logging=disabled"]
    try:
        with interrupts.stop_on_signals():
            _app()
    except KeyboardInterrupt as exc:
        print(interrupts.message("automix-train", exc, "the last checkpoint is intact; run the same "
                                 "command again to resume from it"), file=sys.stderr, flush=True)
        raise SystemExit(interrupts.exit_status(exc)) from None


if __name__ == "__main__":
    main()
