"""Fast fitting of the mix model: learn to undo known perturbations, in feature space.

The end-to-end pipeline (``python -m train``) renders every step through the differentiable
console and back-propagates through it. On a small shared CPU that runs at well under one
example per second, too slow to train the default model in the time we have. This module
trains the same :class:`~automix.model.mixnet.MixModel` on the same un-mixing task much
faster, because the model reads features only:

1. **Examples** (:func:`make_examples`): random excerpts of real multitracks (the training
   cache of :class:`automix.data.MultitrackData`); each stem is knocked off balance by a
   seeded :class:`automix.perturb.Perturbation` (gain and tilt EQ) rendered through the
   console's exact path, and the model's features of the perturbed stems are computed once
   and stored with the perturbation settings. With probability ``reference_probability``
   the unperturbed mix of the excerpt is stored as a reference.
2. **Fitting** (:func:`fit`): the model predicts strip settings from the stored features;
   the loss says how far the model's settings are from undoing the perturbation:

   * balance: per-stem gain error ``gain + perturbation_gain`` after removing the mean over
     the song's stems (a common level change does not alter the balance), plus a small pull
     on the mean itself;
   * tone: the combined EQ response of perturbation and model (console biquad designs,
     30 Hz to 11 kHz) should be flat, up to the same common offset;
   * the shelves' corner frequencies are pulled toward the perturbation's (a shelf at 0 dB
     gives its frequency no gradient, so it could not find them otherwise);
   * everything the perturbation did not touch (compressor, saturation, high-pass, pan)
     is pulled toward neutral.

   So the model undoes balance and tone exactly when it recovers the perturbation, without
   rendering audio in the loop. Compression and pan are not learned by this objective (the
   shipped model leaves them near neutral); the end-to-end pipeline can fine-tune from
   these weights (``trainer.resume=PATH``).

Usage::

    python -m automix.model.fit_inverse make  --root /work/data/midi_mt --out runs/inverse/examples --examples 2000
    python -m automix.model.fit_inverse fit   --examples runs/inverse/examples --out models/mixer.pt --steps 3000
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from automix.dsp.params import STRIP
from automix.model.mixnet import MixFeatures, MixModel, MixModelConfig

#: Frequencies (Hz) at which the combined EQ response must be flat.
TONE_FREQS_HZ = torch.logspace(math.log10(30.0), math.log10(11000.0), 48)
#: Parameters the tone/balance objectives do not constrain; pulled toward neutral.
_FREE = ("comp.threshold_db", "comp.ratio", "comp.makeup_db", "sat.drive_db", "sat.mix", "eq.hpf.mix", "pan")


# ============================================================================ examples
def _excerpt_start(song, length: int, rng: np.random.Generator) -> int:
    """Start of a random excerpt where the stems play (activity within 20 dB of the peak)."""
    total = song.num_samples
    if total <= length:
        return 0
    activity = song.activity_db()
    block = max(1, total // max(1, len(activity)))
    good = np.flatnonzero(activity > activity.max() - 20.0)
    for _ in range(8):
        start = int(rng.integers(0, total - length))
        if good.size == 0 or (start // block) in set(good.tolist()):
            return start
    return int(rng.integers(0, total - length))


def make_examples(songs, out_dir: str | Path, n_examples: int, *, excerpt_seconds: float = 3.0,
                  batch: int = 16, perturbation=None, reference_probability: float = 0.3, seed: int = 0,
                  max_stems: int = 16, gain_draws: int = 4, log=print) -> list[Path]:
    """Perturb random excerpts of ``songs`` (cached songs) and save the model's features.

    Parameters
    ----------
    songs : list of :class:`automix.data.cache.CachedSong`
    out_dir : folder for ``chunk_NNNN.pt`` files (one per batch; plain tensors)
    n_examples : int
    excerpt_seconds : float
    perturbation : :class:`automix.perturb.Perturbation`, default gain +/-12 dB, tilt +/-6 dB
    reference_probability : float
        Share of examples that also carry the features of their unperturbed mix.
    gain_draws : int
        Fader-gain draws per EQ draw (the EQ is run once, then scaled: cheap extra examples).

    The perturbation may only touch gain and EQ (no compression, no pan): its EQ cascade is
    the console's own design (:func:`automix.dsp.eq.eq_sos`) run by ``scipy.signal.sosfilt``
    and its gain the fader, which is what the console's exact path computes for such settings.
    """
    from automix.model.features import audio_features
    from automix.perturb import Perturbation

    perturbation = perturbation or Perturbation(gain_db=12.0, pan=0.0, eq_gain_db=0.0, tilt_db=6.0,
                                                compression_probability=0.0)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    analyser = MixModel(MixModelConfig(d_model=8, n_heads=1, n_layers=1, role_dim=2))
    written = []
    sr = songs[0].sample_rate
    length = int(excerpt_seconds * sr)
    done = 0
    chunk = len(list(out_dir.glob("chunk_*.pt")))
    t0 = time.perf_counter()
    while done < n_examples:
        b = min(batch, n_examples - done)
        stems = torch.zeros(b, max_stems, 2, length)
        mask = torch.zeros(b, max_stems, dtype=torch.bool)
        roles = torch.zeros(b, max_stems, dtype=torch.long)
        for i in range(b):
            song = songs[int(rng.integers(len(songs)))]
            start = _excerpt_start(song, length, rng)
            x = torch.from_numpy(np.asarray(song.stems[:max_stems, :, start:start + length], dtype=np.float32))
            n = x.shape[0]
            stems[i, :n, :, : x.shape[-1]] = x
            peak = x.abs().amax(dim=(-1, -2))
            mask[i, :n] = peak > 10 ** (-60 / 20)  # stems silent in this excerpt are padding here
            roles[i, :n] = torch.tensor(song.roles[:max_stems])
        keep = mask.any(1)
        stems, mask, roles = stems[keep], mask[keep], roles[keep]
        if stems.shape[0] == 0:
            continue
        strip = perturbation.sample_strip(stems, generator)
        tilted = _apply_eq(stems, strip, sr)
        group = chunk
        for _ in range(gain_draws):
            gains = (torch.rand(strip.shape[:2], generator=generator) * 2 - 1) * perturbation.gain_db
            strip = strip.clone()
            strip[..., STRIP.index("gain_db")] = gains
            perturbed = tilted * (10 ** (gains / 20))[..., None, None]
            with torch.no_grad():
                feats = analyser.analyse(perturbed, sr, mask)
                original_mix = (stems * mask[..., None, None]).sum(1)
                reference = audio_features(original_mix, sr)
            has_ref = torch.rand(stems.shape[0], generator=generator) < reference_probability
            path = out_dir / f"chunk_{chunk:04d}.pt"
            tmp = path.with_suffix(".tmp")
            torch.save({"stems": feats.stems, "mix": feats.mix, "reference": reference, "has_reference": has_ref,
                        "mask": mask, "roles": roles, "perturbation": strip, "sample_rate": sr,
                        "group": group}, tmp)
            tmp.replace(path)  # a killed run never leaves half a chunk
            written.append(path)
            chunk += 1
            done += int(stems.shape[0])
        log(f"{done}/{n_examples} examples ({time.perf_counter() - t0:.0f} s)")
    return written


def _apply_eq(stems: torch.Tensor, strip: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Every stem ``(B, S, C, T)`` through its own EQ cascade of ``strip`` (console designs)."""
    import scipy.signal

    from automix.dsp.eq import eq_sos

    sos = eq_sos(strip, STRIP, sample_rate).numpy()  # (B, S, K, 6)
    sos = sos / sos[..., 3:4]
    x = stems.numpy()
    out = np.empty_like(x)
    for b in range(x.shape[0]):
        for s in range(x.shape[1]):
            out[b, s] = scipy.signal.sosfilt(sos[b, s], x[b, s], axis=-1)
    return torch.from_numpy(out)


def load_examples(*folders: str | Path, gain_draws: int = 4) -> dict[str, torch.Tensor]:
    """All stored example chunks of ``folders``, concatenated.

    Every example carries a ``group``: examples made from the same excerpts (one EQ draw,
    ``gain_draws`` gain draws) share it, so validation can hold out whole groups.
    """
    chunks, groups = [], []
    for f, folder in enumerate(folders):
        for i, p in enumerate(sorted(Path(folder).glob("chunk_*.pt"))):
            c = torch.load(p, weights_only=True)
            chunks.append(c)
            groups.append(f * 1_000_000 + int(c.get("group", i - i % gain_draws)))
    if not chunks:
        raise FileNotFoundError(f"no example chunks in {', '.join(map(str, folders))}")
    keys = ("stems", "mix", "reference", "has_reference", "mask", "roles", "perturbation")
    out = {k: torch.cat([c[k] for c in chunks]) for k in keys}
    out["group"] = torch.cat([torch.full((c["mask"].shape[0],), g) for c, g in zip(chunks, groups)])
    return out | {"sample_rate": chunks[0]["sample_rate"]}


# ============================================================================ objective
def _eq_db(values: torch.Tensor, sample_rate: int) -> torch.Tensor:
    from automix.dsp.biquad import sos_response
    from automix.dsp.eq import eq_sos

    h = sos_response(eq_sos(values, STRIP, sample_rate), TONE_FREQS_HZ.double(), sample_rate)
    return (20 * torch.log10(h.abs().clamp_min(1e-6))).float()


def inverse_loss(pred: torch.Tensor, perturbation: torch.Tensor, mask: torch.Tensor,
                 sample_rate: int) -> tuple[torch.Tensor, dict[str, float]]:
    """How far ``pred`` (B, S, P) is from undoing ``perturbation`` (B, S, P); see module docstring."""
    m = mask.float()
    n = m.sum(1).clamp_min(1)
    gi = STRIP.index("gain_db")
    total_db = pred[..., gi] + perturbation[..., gi]  # level change of each stem, dB
    eq_db = _eq_db(pred, sample_rate) + _eq_db(perturbation, sample_rate)  # (B, S, F)
    change = total_db.unsqueeze(-1) + eq_db  # every stem's overall change per frequency
    common = (change * m[..., None]).sum(1, keepdim=True) / n[:, None, None]  # the song's common change
    balance = (((total_db - common.mean(-1)) ** 2) * m).sum() / m.sum()
    tone = ((((eq_db - eq_db.mean(-1, keepdim=True)) ** 2).mean(-1)) * m).sum() / m.sum()
    offset = ((common.mean(-1).squeeze(1)) ** 2).mean()
    # Corner frequencies: with a shelf at 0 dB its frequency has no gradient, so a model whose
    # shelves start far from the perturbation's corners would never find them. Pull each
    # shelf's corner toward the perturbation's, in octaves, weighted by how much it boosted/cut.
    corner = pred.new_zeros(())
    for band in ("low_shelf", "high_shelf"):
        f, g = STRIP.index(f"eq.{band}.freq_hz"), STRIP.index(f"eq.{band}.gain_db")
        weight = perturbation[..., g].abs() / 3.0
        octaves = torch.log2(pred[..., f] / perturbation[..., f])
        corner = corner + ((octaves ** 2) * weight * m).sum() / m.sum()
    free = [STRIP.index(k) for k in _FREE]
    unit = STRIP.to_unit(pred)[..., free]
    neutral = STRIP.to_unit(STRIP.neutral.to(pred))[free]
    regular = ((((unit - neutral) ** 2).mean(-1)) * m).sum() / m.sum()
    loss = balance + tone + 0.05 * offset + 10.0 * regular + corner
    return loss, {"balance_db2": float(balance.detach()), "tone_db2": float(tone.detach()),
                  "corner_oct2": float(corner.detach()),
                  "offset_db2": float(offset.detach()), "neutral": float(regular.detach())}


def fit(examples: dict[str, torch.Tensor], *, config: MixModelConfig | None = None, steps: int = 3000,
        batch: int = 64, learning_rate: float = 2e-3, valid_fraction: float = 0.1, seed: int = 0,
        weight_decay: float = 1e-2, feature_noise: float = 0.02, log=print) -> tuple[MixModel, dict[str, float]]:
    """Fit a fresh :class:`MixModel` to the stored examples.

    Returns the weights with the lowest validation loss (checked every 100 steps) and that
    validation loss's parts. ``feature_noise`` (std, in the features' normalised units) is
    added to the training features against memorising excerpts.
    """
    torch.manual_seed(seed)
    model = MixModel(config or MixModelConfig())
    sr = int(examples["sample_rate"])
    # Validation: whole groups (the same excerpts never appear on both sides).
    groups = examples["group"].unique()
    every = max(2, round(1 / max(valid_fraction, 1e-3)))
    is_valid = torch.isin(examples["group"], groups[::every])
    valid, train = is_valid.nonzero().squeeze(-1), (~is_valid).nonzero().squeeze(-1)

    def features(idx: torch.Tensor) -> MixFeatures:
        ref = examples["reference"][idx]
        has = examples["has_reference"][idx]
        return MixFeatures(examples["stems"][idx], examples["mix"][idx], ref), has

    def predict(idx: torch.Tensor, noise: float = 0.0) -> torch.Tensor:
        feats, has = features(idx)
        if noise:
            jitter = lambda t: t + noise * torch.randn(t.shape, generator=gen)  # noqa: E731
            feats = MixFeatures(jitter(feats.stems), jitter(feats.mix), jitter(feats.reference))
        mask = examples["mask"][idx]
        roles = examples["roles"][idx]
        out = torch.empty(len(idx), mask.shape[1], STRIP.size)
        if (~has).any():
            f = MixFeatures(feats.stems[~has], feats.mix[~has], None)
            out[~has] = model.predict(f, roles[~has], mask[~has])
        if has.any():
            f = MixFeatures(feats.stems[has], feats.mix[has], feats.reference[has])
            out[has] = model.predict(f, roles[has], mask[has])
        return out

    opt = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=learning_rate, total_steps=steps, pct_start=0.05)
    gen = torch.Generator().manual_seed(seed + 1)
    t0 = time.perf_counter()
    best: tuple[float, dict, dict] | None = None
    for step in range(1, steps + 1):
        model.train()
        idx = train[torch.randint(len(train), (batch,), generator=gen)]
        loss, parts = inverse_loss(predict(idx, feature_noise), examples["perturbation"][idx], examples["mask"][idx], sr)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps:
            model.eval()
            with torch.no_grad():
                _, vparts = inverse_loss(predict(valid), examples["perturbation"][valid], examples["mask"][valid], sr)
            vloss = vparts["balance_db2"] + vparts["tone_db2"]
            if best is None or vloss < best[0]:
                best = (vloss, {k: v.clone() for k, v in model.state_dict().items()}, vparts)
            log(f"step {step}: train {float(loss.detach()):.2f} | valid balance rms {math.sqrt(vparts['balance_db2']):.2f} dB, "
                f"tone rms {math.sqrt(vparts['tone_db2']):.2f} dB ({time.perf_counter() - t0:.0f} s)")
    model.load_state_dict(best[1])
    model.eval()
    return model, best[2]


# ============================================================================ command line
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m automix.model.fit_inverse", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("make", help="perturb excerpts of cached multitracks and store features")
    make.add_argument("--root", nargs="+", required=True, help="dataset folder(s) ROOT/<song>/<stem>.*")
    make.add_argument("--out", required=True)
    make.add_argument("--examples", type=int, default=2000)
    make.add_argument("--excerpt-seconds", type=float, default=3.0)
    make.add_argument("--sample-rate", type=int, default=24000)
    make.add_argument("--exclude", nargs="*", default=[], help="song names never used")
    make.add_argument("--seed", type=int, default=0)
    fitp = sub.add_parser("fit", help="fit a model to stored examples and save a checkpoint")
    fitp.add_argument("--examples", nargs="+", required=True, help="example folder(s) written by 'make'")
    fitp.add_argument("--out", required=True)
    fitp.add_argument("--steps", type=int, default=3000)
    fitp.add_argument("--batch", type=int, default=64)
    fitp.add_argument("--lr", type=float, default=2e-3)
    fitp.add_argument("--d-model", type=int, default=64)
    fitp.add_argument("--layers", type=int, default=2)
    fitp.add_argument("--dropout", type=float, default=0.1)
    fitp.add_argument("--weight-decay", type=float, default=1e-2)
    fitp.add_argument("--feature-noise", type=float, default=0.02)
    fitp.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.command == "make":
        from automix.data import MultitrackData

        songs = []
        for root in args.root:
            data = MultitrackData(root=root, sample_rate=args.sample_rate, valid_fraction=0.0,
                                  exclude=list(args.exclude))
            songs += data.prepare(("train",), progress=False)["train"]
        print(f"{len(songs)} songs from {', '.join(args.root)}", flush=True)
        make_examples(songs, args.out, args.examples, excerpt_seconds=args.excerpt_seconds, seed=args.seed,
                      log=lambda s: print(s, flush=True))
        return 0
    from automix.model.checkpoint import save_checkpoint

    examples = load_examples(*args.examples)
    config = MixModelConfig(d_model=args.d_model, n_layers=args.layers, dropout=args.dropout)
    model, valid = fit(examples, config=config, steps=args.steps, batch=args.batch, learning_rate=args.lr,
                       seed=args.seed, weight_decay=args.weight_decay, feature_noise=args.feature_noise,
                       log=lambda s: print(s, flush=True))
    info = {"sample_rate": int(examples["sample_rate"]), "objective": "fit_inverse", "steps": args.steps,
            "examples": int(examples["stems"].shape[0]), "examples_dirs": [str(e) for e in args.examples],
            "valid_balance_rms_db": math.sqrt(valid["balance_db2"]), "valid_tone_rms_db": math.sqrt(valid["tone_db2"])}
    save_checkpoint(args.out, model, info)
    print(f"saved {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
