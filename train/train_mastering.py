"""Train the mastering model self-supervised on a folder of masters (Hydra app over configs/mastering/train.yaml).

    python -m train.train_mastering                                  # /work/data/masters -> models/mastering.pt
    python -m train.train_mastering data.root=~/my_masters out=my_model.pt train.steps=5000

1. Each track gives ``excerpts_per_track`` excerpts; each excerpt is degraded
   ``degradations`` times by a random chain (EQ bands +-max_eq_db, width per region
   +-max_width_db, gain) rendered with :func:`automix.mastering.chain.render_chain`.
2. The profiles of (degraded, original) become one example; held-out tracks form the
   validation set. The dataset is cached in ``run_dir/dataset.pt``.
3. The model is trained with :func:`automix.mastering.model.restored_spectrum_loss`
   (exact differentiable response of its predicted chain), checkpoints in ``run_dir``.
4. Held-out results: tonal error (RMS dB) with no EQ, the model alone, the per-track fit
   alone and model + fit, written to ``run_dir/heldout.json`` and the checkpoint's metadata.
"""
from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs" / "mastering")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff")
log = logging.getLogger("train_mastering")


def find_tracks(root: Path) -> list[Path]:
    from automix.errors import DatasetError

    files = sorted(p for p in Path(root).expanduser().rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise DatasetError(f"{root}: no audio files found (WAV, FLAC, OGG, MP3, AIFF)")
    return files


def random_degradation(rng: np.random.Generator, max_eq_db: float, max_width_db: float):
    """A random MASTERING settings tensor (EQ bands, width) and gain in dB."""
    from automix.dsp.params import MASTERING
    from automix.mastering.chain import ChainSettings
    from automix.mastering.tonal import FITTED

    values = MASTERING.defaults().clone()
    unit = MASTERING.to_unit(values.double())
    for name in FITTED:
        i = MASTERING.index(name)
        if name.endswith("gain_db"):
            values[i] = float(rng.uniform(-max_eq_db, max_eq_db)) * float(rng.random() < 0.8)
        else:
            unit[i] = float(rng.uniform(0.1, 0.9))
            values[i] = float(MASTERING.from_unit(unit)[i])
    for region in ("low", "mid", "high"):
        values[MASTERING.index(f"width.{region}_side_db")] = float(rng.uniform(-max_width_db, 0.6 * max_width_db))
    return ChainSettings(values=values), float(rng.uniform(-12.0, 0.0))


def build_dataset(cfg: DictConfig, cache: Path) -> dict:
    """Profiles of (degraded, original) excerpts; cached in ``cache``."""
    if cache.is_file():
        return torch.load(cache, weights_only=True)
    import soundfile as sf

    from automix.audio import resample
    from automix.mastering.chain import render_chain
    from automix.mastering.model import profile_features
    from automix.mastering.profile import analyze_profile

    rng = np.random.default_rng(int(cfg.data.seed))
    heldout = set(cfg.data.heldout)
    rows: dict[str, list] = {k: [] for k in ("features", "mix_mid", "mix_side", "ref_total", "ref_side_mid",
                                             "heldout")}
    sr = int(cfg.data.sample_rate)
    tracks = find_tracks(Path(cfg.data.root))
    started = time.time()
    for t_i, path in enumerate(tracks):
        info = sf.info(str(path))
        length = float(cfg.data.excerpt_s)
        if info.duration < length + 2:
            continue
        for e in range(int(cfg.data.excerpts_per_track)):
            start = int(rng.uniform(0.1, 0.9) * (info.frames - length * info.samplerate))
            x, rate = sf.read(str(path), start=start, frames=int(length * info.samplerate), dtype="float32",
                              always_2d=True)
            x = np.ascontiguousarray(x.T)
            if x.shape[0] == 1:
                x = np.repeat(x, 2, axis=0)
            if x.shape[0] != 2 or not np.all(np.isfinite(x)):
                continue
            x = resample(x, rate, sr)
            peak = float(np.abs(x).max())
            if peak < 1e-3:
                continue
            x = x / max(peak, 1.0)
            ref = analyze_profile(x, sr)
            if not math.isfinite(ref.integrated_lufs):
                continue
            for _ in range(int(cfg.data.degradations)):
                settings, gain_db = random_degradation(rng, float(cfg.data.max_eq_db), float(cfg.data.max_width_db))
                y = render_chain(x, sr, settings) * np.float32(10 ** (gain_db / 20))
                mix = analyze_profile(y, sr)
                rows["features"].append(profile_features(mix, ref))
                n = len(ref.freqs_hz)
                rows["mix_mid"].append(torch.from_numpy(mix.mid_db[:n].copy()))
                rows["mix_side"].append(torch.from_numpy(mix.side_db[:n].copy()))
                rows["ref_total"].append(torch.from_numpy(ref.total_db[:n].copy()))
                rows["ref_side_mid"].append(torch.from_numpy(np.clip(ref.side_db[:n] - ref.mid_db[:n], -30, 10)))
                rows["heldout"].append(path.stem in heldout)
        log.info("track %d/%d %s (%.0f s)", t_i + 1, len(tracks), path.name, time.time() - started)
    data = {k: (torch.stack(v) if k != "heldout" else torch.tensor(v)) for k, v in rows.items()}
    data["freqs_hz"] = torch.from_numpy(ref.freqs_hz.copy())
    data["sample_rate"] = sr
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, cache)
    return data


def _band_mask(freqs: torch.Tensor) -> torch.Tensor:
    from automix.mastering.model import FEATURE_RANGE_HZ
    return (freqs >= FEATURE_RANGE_HZ[0]) & (freqs <= FEATURE_RANGE_HZ[1])


def batch_loss(values, data, idx, mask, sr):
    from automix.mastering.model import restored_spectrum_loss
    f = data["freqs_hz"][mask]
    return restored_spectrum_loss(values, data["mix_mid"][idx][:, mask], data["mix_side"][idx][:, mask],
                                  data["ref_total"][idx][:, mask], data["ref_side_mid"][idx][:, mask], f, sr)


def heldout_report(model, data, mask, sr) -> dict:
    """Tonal+width error (RMS, dB) on held-out examples: no EQ, model, per-track fit, model + fit."""
    from automix.dsp.params import MASTERING
    from automix.mastering.tonal import fit_parametric_eq

    idx = torch.nonzero(data["heldout"]).flatten()
    if len(idx) == 0:
        return {}
    idx = idx[:: max(1, len(idx) // 48)]  # the fits are slower: a spread-out subset
    f = data["freqs_hz"][mask]
    out = {"examples": int(len(idx))}
    with torch.no_grad():
        neutral = MASTERING.neutral.expand(len(idx), -1).clone()
        predicted = model(data["features"][idx])
        out["no_eq_rms_db"] = float(batch_loss(neutral, data, idx, mask, sr).mean().sqrt())
        out["model_rms_db"] = float(batch_loss(predicted, data, idx, mask, sr).mean().sqrt())
    fitted = {"fit_rms_db": [], "model_fit_rms_db": []}
    for j, i in enumerate(idx.tolist()):
        for key, base in (("fit_rms_db", None), ("model_fit_rms_db", predicted[j])):
            # the fit follows the tone; width comes from the base (model or neutral)
            mix_total = 10 * torch.log10(10 ** (data["mix_mid"][i] / 10) + 10 ** (data["mix_side"][i] / 10))
            target = (data["ref_total"][i] - data["ref_total"][i][mask].mean()) - (mix_total - mix_total[mask].mean())
            match = fit_parametric_eq(f.numpy(), target[mask].numpy(), sr, base=base)
            v = match.values.clone()
            if base is not None:
                for n in ("width.low_side_db", "width.mid_side_db", "width.high_side_db"):
                    v[MASTERING.index(n)] = base[MASTERING.index(n)]
            fitted[key].append(float(batch_loss(v[None], data, torch.tensor([i]), mask, sr)[0]))
    for key, vals in fitted.items():
        out[key] = float(math.sqrt(np.mean(vals)))
    return out


def run(cfg: DictConfig) -> dict:
    from automix.mastering.model import MasteringNet, save_model

    torch.set_num_threads(int(cfg.train.threads))
    torch.manual_seed(int(cfg.train.seed))
    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    data = build_dataset(cfg, run_dir / "dataset.pt")
    sr = int(data["sample_rate"])
    mask = _band_mask(data["freqs_hz"])
    train_idx = torch.nonzero(~data["heldout"]).flatten()
    valid_idx = torch.nonzero(data["heldout"]).flatten()
    log.info("%d training and %d held-out examples", len(train_idx), len(valid_idx))
    model = MasteringNet(data["features"].shape[1], int(cfg.train.hidden))
    opt = torch.optim.Adam(model.parameters(), lr=float(cfg.train.learning_rate))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, int(cfg.train.steps))
    best = math.inf
    with open(run_dir / "train.csv", "w") as csv:
        csv.write("step,train_loss,valid_loss\n")
        for step in range(1, int(cfg.train.steps) + 1):
            batch = train_idx[torch.randint(len(train_idx), (int(cfg.train.batch_size),))]
            loss = batch_loss(model(data["features"][batch]), data, batch, mask, sr).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            if step % int(cfg.train.log_every) == 0 or step == int(cfg.train.steps):
                with torch.no_grad():
                    valid = float(batch_loss(model(data["features"][valid_idx]), data, valid_idx, mask, sr).mean()) \
                        if len(valid_idx) else math.nan
                csv.write(f"{step},{float(loss.detach()):.4f},{valid:.4f}\n")
                csv.flush()
                log.info("step %d train %.3f valid %.3f", step, float(loss.detach()), valid)
                if valid < best:
                    best = valid
                    save_model(model, run_dir / "best.pt", {"step": step, "valid_loss": valid})
            if step % int(cfg.train.checkpoint_every) == 0:
                save_model(model, run_dir / "last.pt", {"step": step})
    from automix.mastering.model import load_model
    model = load_model(run_dir / "best.pt") if (run_dir / "best.pt").exists() else model
    report = heldout_report(model, data, mask, sr)
    report.update({"train_examples": int(len(train_idx)), "heldout_examples": int(len(valid_idx)),
                   "tracks_root": str(cfg.data.root), "steps": int(cfg.train.steps)})
    (run_dir / "heldout.json").write_text(json.dumps(report, indent=2))
    save_model(model, Path(cfg.out), {"heldout": report, "data": str(cfg.data.root),
                                      "heldout_tracks": list(cfg.data.heldout)})
    log.info("held-out: %s", report)
    return report


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def _app(cfg: DictConfig) -> None:
    run(cfg)


def main() -> None:
    if not any(a.startswith("hydra.run.dir") for a in sys.argv[1:]):
        # Hydra's own log goes into run_dir (not a dated folder, not the current directory)
        run_dir = next((a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("run_dir=")), "runs/mastering")
        sys.argv.append(f"hydra.run.dir={run_dir}")
        sys.argv.append("hydra.output_subdir=null")
    _app()


if __name__ == "__main__":
    main()
