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
from automix.model.mixnet import MixEnsemble, MixFeatures, MixModel, MixModelConfig

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
                  max_stems: int = 16, gain_draws: int = 4, segments: int = 1, log=print) -> list[Path]:
    """Perturb random excerpts of ``songs`` (cached songs) and save the model's features.

    Parameters
    ----------
    songs : list of :class:`automix.data.cache.CachedSong`
    out_dir : folder for ``chunk_NNNN.pt`` files (one per batch; plain tensors)
    n_examples : int
    excerpt_seconds : float
    excerpt_seconds : float
        Length of the audio the model analyses per example.
    perturbation : :class:`automix.perturb.Perturbation`, default the benchmark's protocol
        (:data:`automix.perturb.BENCHMARK`: gain +/-9 dB, tilt +/-6 dB)
    reference_probability : float
        Share of examples that also carry the features of their unperturbed mix.
    gain_draws : int
        Fader-gain draws per EQ draw (the EQ is run once, then scaled: cheap extra examples).
    segments : int
        The excerpt is ``segments`` pieces of ``excerpt_seconds / segments`` from random places
        of the song, joined, as :func:`automix.mixing.analysis_audio` joins evenly spaced
        pieces of a whole song at inference.

    Every chunk stores, per example, the song's index in ``songs`` (``song``; names in
    ``song_names``) so validation can hold out whole songs, and the original stems'
    K-weighted band powers (``bands_db``, :func:`automix.model.balance_loss.kweighted_band_power_db`
    at :data:`TONE_FREQS_HZ`) from which the benchmark's balance error is computed.

    The perturbation may only touch gain and EQ (no compression, no pan): its EQ cascade is
    the console's own design (:func:`automix.dsp.eq.eq_sos`) run by ``scipy.signal.sosfilt``
    and its gain the fader, which is what the console's exact path computes for such settings.
    """
    from automix.model.balance_loss import kweighted_band_power_db
    from automix.model.features import audio_features
    from automix.perturb import BENCHMARK

    perturbation = perturbation or BENCHMARK
    if perturbation.pan or perturbation.compression_probability:
        raise ValueError("make_examples perturbs gain and EQ only (pan 0, compression_probability 0)")
    segments = max(1, int(segments))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    analyser = MixModel(MixModelConfig(d_model=8, n_heads=1, n_layers=1, role_dim=2))
    written = []
    sr = songs[0].sample_rate
    piece = int(excerpt_seconds * sr / segments)
    length = piece * segments
    song_names = [str(getattr(song, "name", i)) for i, song in enumerate(songs)]
    done = 0
    chunk = len(list(out_dir.glob("chunk_*.pt")))
    t0 = time.perf_counter()
    while done < n_examples:
        b = min(batch, n_examples - done)
        stems = torch.zeros(b, max_stems, 2, length)
        mask = torch.zeros(b, max_stems, dtype=torch.bool)
        roles = torch.zeros(b, max_stems, dtype=torch.long)
        song_index = torch.zeros(b, dtype=torch.long)
        for i in range(b):
            k = int(rng.integers(len(songs)))
            song = songs[k]
            song_index[i] = k
            starts = sorted(_excerpt_start(song, piece, rng) for _ in range(segments))
            x = torch.cat([torch.from_numpy(np.asarray(song.stems[:max_stems, :, s:s + piece], dtype=np.float32))
                           for s in starts], -1)
            n = x.shape[0]
            stems[i, :n, :, : x.shape[-1]] = x
            peak = x.abs().amax(dim=(-1, -2))
            mask[i, :n] = peak > 10 ** (-60 / 20)  # stems silent in this excerpt are padding here
            roles[i, :n] = torch.tensor(song.roles[:max_stems])
        keep = mask.any(1)
        stems, mask, roles, song_index = stems[keep], mask[keep], roles[keep], song_index[keep]
        if stems.shape[0] == 0:
            continue
        strip = perturbation.sample_strip(stems, generator)
        tilted = _apply_eq(stems, strip, sr, mask)
        bands = kweighted_band_power_db(stems, sr, TONE_FREQS_HZ)
        with torch.no_grad():
            reference = audio_features((stems * mask[..., None, None]).sum(1), sr)
        group = chunk
        for _ in range(gain_draws):
            gains = (torch.rand(strip.shape[:2], generator=generator) * 2 - 1) * perturbation.gain_db
            strip = strip.clone()
            strip[..., STRIP.index("gain_db")] = gains
            perturbed = tilted * (10 ** (gains / 20))[..., None, None]
            with torch.no_grad():
                feats = analyser.analyse(perturbed, sr, mask)
            has_ref = torch.rand(stems.shape[0], generator=generator) < reference_probability
            path = out_dir / f"chunk_{chunk:04d}.pt"
            tmp = path.with_suffix(".tmp")
            torch.save({"stems": feats.stems, "mix": feats.mix, "reference": reference, "has_reference": has_ref,
                        "mask": mask, "roles": roles, "perturbation": strip, "sample_rate": sr,
                        "group": group, "song": song_index, "song_names": song_names, "bands_db": bands}, tmp)
            tmp.replace(path)  # a killed run never leaves half a chunk
            written.append(path)
            chunk += 1
            done += int(stems.shape[0])
        log(f"{done}/{n_examples} examples ({time.perf_counter() - t0:.0f} s)")
    return written


def _apply_eq(stems: torch.Tensor, strip: torch.Tensor, sample_rate: int,
              mask: torch.Tensor | None = None) -> torch.Tensor:
    """Every stem ``(B, S, C, T)`` through its own EQ cascade of ``strip`` (console designs).

    Stems outside ``mask`` (B, S) are padding: they are returned as zeros, unfiltered.
    """
    import scipy.signal

    from automix.dsp.eq import eq_sos

    sos = eq_sos(strip, STRIP, sample_rate).numpy()  # (B, S, K, 6)
    sos = sos / sos[..., 3:4]
    x = stems.numpy()
    out = np.zeros_like(x)
    for b in range(x.shape[0]):
        for s in range(x.shape[1]):
            if mask is None or bool(mask[b, s]):
                out[b, s] = scipy.signal.sosfilt(sos[b, s], x[b, s], axis=-1)
    return torch.from_numpy(out)


def load_examples(*folders: str | Path, gain_draws: int = 4) -> dict[str, torch.Tensor]:
    """All stored example chunks of ``folders``, concatenated.

    Every example carries a ``group``: examples made from the same excerpts (one EQ draw,
    ``gain_draws`` gain draws) share it, so validation can hold out whole groups. Chunks
    that name their songs also give every example a ``song`` index into the returned
    ``song_names`` (``"FOLDER_NAME/SONG"``; -1 for chunks made before songs were stored),
    and those with band powers a ``bands_db`` entry (only when every chunk has them).
    """
    chunks, groups = [], []
    for f, folder in enumerate(folders):
        for i, p in enumerate(sorted(Path(folder).glob("chunk_*.pt"))):
            c = torch.load(p, weights_only=True)
            c["folder"] = Path(folder).name
            chunks.append(c)
            groups.append(f * 1_000_000 + int(c.get("group", i - i % gain_draws)))
    if not chunks:
        raise FileNotFoundError(f"no example chunks in {', '.join(map(str, folders))}")
    keys = ("stems", "mix", "reference", "has_reference", "mask", "roles", "perturbation")
    if all("bands_db" in c for c in chunks):
        keys += ("bands_db",)
    out = {k: torch.cat([c[k] for c in chunks]) for k in keys}
    out["group"] = torch.cat([torch.full((c["mask"].shape[0],), g) for c, g in zip(chunks, groups)])
    names: dict[str, int] = {}
    songs = []
    for c in chunks:
        if "song" not in c:
            songs.append(torch.full((c["mask"].shape[0],), -1))
            continue
        local = [names.setdefault(f"{c['folder']}/{n}", len(names)) for n in c["song_names"]]
        songs.append(torch.tensor(local, dtype=torch.long)[c["song"]])
    out["song"] = torch.cat(songs)
    return out | {"sample_rate": chunks[0]["sample_rate"], "song_names": list(names)}


def choose_valid_songs(song_names: list[str], fraction: float = 0.13, seed: int = 0) -> list[str]:
    """A deterministic by-song validation set: ``fraction`` of the songs of every source folder.

    ``song_names`` are ``"FOLDER/SONG"`` (:func:`load_examples`); each folder gives
    ``max(1, round(fraction * n))`` of its ``n`` songs (drawn with ``seed``), so every kind
    of material is represented.
    """
    by_folder: dict[str, list[str]] = {}
    for name in sorted(song_names):
        by_folder.setdefault(name.split("/")[0], []).append(name)
    rng = np.random.default_rng(seed)
    chosen = []
    for folder in sorted(by_folder):
        names = by_folder[folder]
        k = min(len(names) - 1, max(1, round(fraction * len(names)))) if len(names) > 1 else 0
        chosen += [names[i] for i in sorted(rng.choice(len(names), size=k, replace=False))]
    return chosen


# ============================================================================ objective
def _eq_db(values: torch.Tensor, sample_rate: int) -> torch.Tensor:
    from automix.dsp.biquad import sos_response
    from automix.dsp.eq import eq_sos

    h = sos_response(eq_sos(values, STRIP, sample_rate), TONE_FREQS_HZ.double(), sample_rate)
    return (20 * torch.log10(h.abs().clamp_min(1e-6))).float()


def mix_tone_error_db(bands_db: torch.Tensor, change_db: torch.Tensor, mask: torch.Tensor,
                      sample_rate: int, n_fft: int = 4096) -> torch.Tensor:
    """RMS error (dB) of the mix's long-term spectrum after loudness matching, per example (B,).

    A static stand-in for the benchmark's log-spectral distance: the mix's power in every
    band of :data:`TONE_FREQS_HZ` before and after each stem's change ``change_db`` (B, S, F)
    (stems uncorrelated: band powers ``bands_db`` (B, S, F) add), minus the change of its
    K-weighted loudness (the distance matches loudness first), RMS over frequency with every
    band weighted by the number of ``n_fft`` bins it holds (the distance averages linear-
    frequency bins, so high bands weigh most).
    """
    from automix.model.balance_loss import band_index

    k = math.log(10.0) / 10.0
    hidden = torch.where(mask, 0.0, -math.inf).to(bands_db.dtype)[..., None]
    before = torch.logsumexp(bands_db * k + hidden, 1)  # (B, F) mix band powers, natural log
    after = torch.logsumexp((bands_db + change_db) * k + hidden, 1)
    level = (torch.logsumexp(after, -1) - torch.logsumexp(before, -1))[:, None]
    error = (after - before - level) / k  # dB
    counts = torch.bincount(band_index(n_fft, sample_rate, TONE_FREQS_HZ), minlength=len(TONE_FREQS_HZ))
    weight = (counts / counts.sum()).to(error)
    return ((error.square() * weight).sum(-1) + 1e-6).sqrt()


def inverse_loss(pred: torch.Tensor, perturbation: torch.Tensor, mask: torch.Tensor,
                 sample_rate: int, bands_db: torch.Tensor | None = None, tone_weight: float = 1.0,
                 huber_lu: float = 0.5, mix_tone_weight: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """How far ``pred`` (B, S, P) is from undoing ``perturbation`` (B, S, P); see module docstring.

    With ``bands_db`` (B, S, F: the original stems' K-weighted band powers at
    :data:`TONE_FREQS_HZ`) the balance term is the benchmark's own measure: the mean absolute
    error (LU) of every stem's loudness relative to the mix
    (:func:`automix.model.balance_loss.balance_change_lu`; smoothed below ``huber_lu``), and
    ``balance_lu`` (mean over examples of the per-example mean, as the benchmark averages)
    is reported. Without, it is the squared per-stem gain error (``balance_db2``).
    With band powers, ``mix_tone_db`` (:func:`mix_tone_error_db`, mean over examples) is
    reported too and added to the loss with ``mix_tone_weight``.
    """
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
    parts = {"balance_db2": float(balance.detach()), "tone_db2": float(tone.detach()),
             "corner_oct2": float(corner.detach()),
             "offset_db2": float(offset.detach()), "neutral": float(regular.detach())}
    if bands_db is not None:
        from automix.model.balance_loss import balance_change_lu

        error, valid = balance_change_lu(bands_db, change, mask)
        v = valid.float()
        smooth = (error.square() + huber_lu ** 2).sqrt() - huber_lu
        balance = (smooth * v).sum() / v.sum().clamp_min(1)
        per_example = (error.abs() * v).sum(1) / v.sum(1).clamp_min(1)
        parts["balance_lu"] = float(per_example[v.sum(1) > 0].mean().detach())
        mix_tone = mix_tone_error_db(bands_db, change, mask, sample_rate).mean()
        parts["mix_tone_db"] = float(mix_tone.detach())
        if mix_tone_weight:
            balance = balance + mix_tone_weight * mix_tone
    loss = balance + tone_weight * tone + 0.05 * offset + 10.0 * regular + corner
    return loss, parts


def predict_examples(model: MixModel | MixEnsemble, examples: dict[str, torch.Tensor], idx: torch.Tensor,
                     feature_noise: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Strip values ``[len(idx), S, P]`` that ``model`` predicts for the examples ``idx``.

    Examples stored with a reference are predicted with it, the others without. With
    ``feature_noise`` every feature gets Gaussian noise of that size (training augmentation).
    """
    stems, mix, ref = examples["stems"][idx], examples["mix"][idx], examples["reference"][idx]
    if feature_noise:
        stems, mix, ref = (t + feature_noise * torch.randn(t.shape, generator=generator) for t in (stems, mix, ref))
    has = examples["has_reference"][idx]
    mask, roles = examples["mask"][idx], examples["roles"][idx]
    out = torch.empty(len(idx), mask.shape[1], STRIP.size)
    if (~has).any():
        out[~has] = model.predict(MixFeatures(stems[~has], mix[~has], None), roles[~has], mask[~has])
    if has.any():
        out[has] = model.predict(MixFeatures(stems[has], mix[has], ref[has]), roles[has], mask[has])
    return out


def fit(examples: dict[str, torch.Tensor], *, config: MixModelConfig | None = None, steps: int = 3000,
        batch: int = 64, learning_rate: float = 2e-3, valid_fraction: float = 0.1, seed: int = 0,
        weight_decay: float = 1e-2, feature_noise: float = 0.02, valid_songs: list[str] | None = None,
        tone_weight: float = 1.0, ema: float = 0.0, select_by_song: bool = False, mix_tone_weight: float = 0.0,
        log=print) -> tuple[MixModel, dict[str, float]]:
    """Fit a fresh :class:`MixModel` to the stored examples.

    Returns the weights with the lowest validation loss (checked every 100 steps) and that
    validation's parts. ``feature_noise`` (std, in the features' normalised units) is
    added to the training features against memorising excerpts.

    Validation holds out whole songs when ``valid_songs`` (names from
    ``examples["song_names"]``) is given: the model is then chosen on songs it never saw,
    as on the benchmark. Otherwise whole excerpt groups (``valid_fraction`` of them) are held
    out. With band powers in the examples the loss is the benchmark's balance error in LU
    (see :func:`inverse_loss`); the returned parts then also hold ``nothing_balance_lu``
    (the validation balance error of leaving the perturbed stems as they are) and
    ``songs``: per validation song, ``{"examples", "balance_lu", "nothing_balance_lu"}``.

    ``valid_fraction=0`` without ``valid_songs`` fits on every example and returns the
    weights after the last step (for a final fit on all songs at a step count chosen by an
    earlier validated run). ``ema`` > 0 keeps an exponential moving average of the weights
    (decay per step); validation then scores, and the result is, the averaged weights.
    With validation songs the log also shows the balance error averaged per song
    (``song_mean_balance_lu``, as the benchmark averages songs); ``select_by_song`` keeps the
    weights that minimise it instead of the mean over excerpts (where songs with many
    excerpts weigh more).
    """
    torch.manual_seed(seed)
    model = MixModel(config or MixModelConfig())
    sr = int(examples["sample_rate"])
    bands = examples.get("bands_db")
    if valid_songs:
        names = examples["song_names"]
        unknown = sorted(set(valid_songs) - set(names))
        if unknown:
            raise ValueError(f"validation songs not in the examples: {', '.join(unknown)}")
        wanted = torch.tensor([names.index(n) for n in valid_songs])
        is_valid = torch.isin(examples["song"], wanted)
        if (examples["song"] < 0).any():
            raise ValueError("some example chunks do not name their songs: cannot hold out songs")
    elif valid_fraction <= 0:
        is_valid = torch.zeros(len(examples["group"]), dtype=torch.bool)  # fit on everything
    else:
        # Whole groups (the same excerpts never appear on both sides).
        groups = examples["group"].unique()
        every = max(2, round(1 / max(valid_fraction, 1e-3)))
        is_valid = torch.isin(examples["group"], groups[::every])
    valid, train = is_valid.nonzero().squeeze(-1), (~is_valid).nonzero().squeeze(-1)
    if len(train) == 0 or (len(valid) == 0 and (valid_songs or valid_fraction > 0)):
        raise ValueError("the validation split left no training or no validation examples")

    def predict(idx: torch.Tensor, noise: float = 0.0) -> torch.Tensor:
        return predict_examples(model, examples, idx, noise, gen)

    def loss_of(pred: torch.Tensor, idx: torch.Tensor):
        return inverse_loss(pred, examples["perturbation"][idx], examples["mask"][idx], sr,
                            None if bands is None else bands[idx], tone_weight=tone_weight,
                            mix_tone_weight=mix_tone_weight)

    def score(parts: dict[str, float]) -> float:
        if select_by_song and "song_mean_balance_lu" in parts:
            return parts["song_mean_balance_lu"] + tone_weight * parts["tone_db2"]
        if "balance_lu" in parts:
            return parts["balance_lu"] + tone_weight * parts["tone_db2"]
        return parts["balance_db2"] + parts["tone_db2"]

    opt = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=learning_rate, total_steps=steps, pct_start=0.05)
    gen = torch.Generator().manual_seed(seed + 1)
    t0 = time.perf_counter()
    best: tuple[float, dict, dict] | None = None
    averaged = {k: v.detach().clone() for k, v in model.state_dict().items()} if ema > 0 else None
    for step in range(1, steps + 1):
        model.train()
        if averaged is not None and step > 1:
            model.load_state_dict(current)
        idx = train[torch.randint(len(train), (batch,), generator=gen)]
        loss, parts = loss_of(predict(idx, feature_noise), idx)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if averaged is not None:
            current = {k: v.detach().clone() for k, v in model.state_dict().items()}
            with torch.no_grad():
                for k, v in current.items():
                    if v.is_floating_point():
                        averaged[k].mul_(ema).add_(v, alpha=1 - ema)
                    else:
                        averaged[k].copy_(v)
            model.load_state_dict(averaged)  # validation (and the result) use the averaged weights
        if len(valid) == 0:
            if step % 100 == 0 or step == steps:
                log(f"step {step}: train {float(loss.detach()):.2f} (no validation) ({time.perf_counter() - t0:.0f} s)")
            if step == steps:
                best = (float("nan"), {k: v.clone() for k, v in model.state_dict().items()}, parts | {"step": step})
            continue
        if step % 100 == 0 or step == steps:
            model.eval()
            with torch.no_grad():
                vpred = predict(valid)
                _, vparts = loss_of(vpred, valid)
                if valid_songs and "balance_lu" in vparts:  # the benchmark averages songs, not excerpts
                    per_song = []
                    for name in valid_songs:
                        sel = (examples["song"][valid] == examples["song_names"].index(name)).nonzero().squeeze(-1)
                        if len(sel):
                            per_song.append(loss_of(vpred[sel], valid[sel])[1]["balance_lu"])
                    vparts["song_mean_balance_lu"] = float(np.mean(per_song))
            vloss = score(vparts)
            if best is None or vloss < best[0]:
                best = (vloss, {k: v.clone() for k, v in model.state_dict().items()}, vparts | {"step": step})
            shown = (f"balance {vparts['balance_lu']:.2f} LU" if "balance_lu" in vparts
                     else f"balance rms {math.sqrt(vparts['balance_db2']):.2f} dB")
            if "song_mean_balance_lu" in vparts:
                shown += f" (song mean {vparts['song_mean_balance_lu']:.2f} LU)"
            if "mix_tone_db" in vparts:
                shown += f", mix tone {vparts['mix_tone_db']:.2f} dB"
            log(f"step {step}: train {float(loss.detach()):.2f} | valid {shown}, "
                f"tone rms {math.sqrt(vparts['tone_db2']):.2f} dB ({time.perf_counter() - t0:.0f} s)")
    model.load_state_dict(best[1])
    model.eval()
    result = dict(best[2])
    if bands is not None and len(valid):
        with torch.no_grad():
            pred = predict(valid)
            nothing = STRIP.neutral.expand_as(pred)
            result["nothing_balance_lu"] = loss_of(nothing, valid)[1]["balance_lu"]
            if valid_songs:
                result["songs"] = {}
                for name in valid_songs:
                    k = examples["song_names"].index(name)
                    sel = (examples["song"][valid] == k).nonzero().squeeze(-1)
                    if len(sel):
                        result["songs"][name] = {
                            "examples": int(len(sel)),
                            "balance_lu": loss_of(pred[sel], valid[sel])[1]["balance_lu"],
                            "nothing_balance_lu": loss_of(nothing[sel], valid[sel])[1]["balance_lu"]}
    return model, result


def song_balance(model: MixModel | MixEnsemble, examples: dict[str, torch.Tensor],
                 songs: list[str]) -> dict[str, float]:
    """Balance error (LU, :func:`inverse_loss`'s ``balance_lu``) of ``model`` on every example of
    each of ``songs`` (``"FOLDER/SONG"`` names of :func:`load_examples`), and their mean as ``"mean"``.

    Scores any model, an ensemble included, on the examples :func:`fit` held out for validation.
    """
    sr = int(examples["sample_rate"])
    scores: dict[str, float] = {}
    model.eval()
    with torch.no_grad():
        for name in songs:
            idx = (examples["song"] == examples["song_names"].index(name)).nonzero().squeeze(-1)
            if not len(idx):
                continue
            pred = predict_examples(model, examples, idx)
            scores[name] = inverse_loss(pred, examples["perturbation"][idx], examples["mask"][idx], sr,
                                        examples["bands_db"][idx])[1]["balance_lu"]
    scores["mean"] = float(np.mean(list(scores.values()))) if scores else float("nan")
    return scores


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
    make.add_argument("--segments", type=int, default=1,
                      help="join this many random pieces per excerpt (as the analysis of a whole song does)")
    make.add_argument("--gain-draws", type=int, default=4, help="fader-gain draws per EQ draw")
    make.add_argument("--gain-db", type=float, default=None, help="gain range +/- dB (default: the benchmark's, 9)")
    make.add_argument("--tilt-db", type=float, default=None, help="tilt range +/- dB (default: the benchmark's, 6)")
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
    fitp.add_argument("--heads", type=int, default=4)
    fitp.add_argument("--role-dim", type=int, default=16)
    fitp.add_argument("--tone-weight", type=float, default=1.0, help="weight of the tone term (dB^2)")
    fitp.add_argument("--valid-songs", type=float, default=0.13,
                      help="share of each example folder's songs held out for model selection (0: hold out "
                           "excerpt groups instead, for examples that do not name their songs)")
    fitp.add_argument("--valid-seed", type=int, default=0, help="seed of the choice of validation songs")
    fitp.add_argument("--mix-tone-weight", type=float, default=0.0,
                      help="weight of the mix's long-term spectrum error (dB; a stand-in for the benchmark's "
                           "log-spectral distance)")
    fitp.add_argument("--select-by-song", action="store_true",
                      help="keep the weights with the lowest validation balance averaged per song "
                           "(default: averaged over excerpts)")
    fitp.add_argument("--all-songs", action="store_true",
                      help="no validation: fit on every song and keep the last step's weights (use the step "
                           "count a validated run chose)")
    fitp.add_argument("--ema", type=float, default=0.0,
                      help="keep an exponential moving average of the weights with this decay per step "
                           "(e.g. 0.99; 0: off); validation and the result use the averaged weights")
    fitp.add_argument("--members", type=int, default=1,
                      help="fit this many models (seeds SEED, SEED+1, ...) and save them as one ensemble whose "
                           "predictions are averaged (MixEnsemble)")
    fitp.add_argument("--json", default=None, help="also write the validation results here")
    val = sub.add_parser("validate", help="score a checkpoint on whole songs with the benchmark's protocol")
    val.add_argument("--model", required=True)
    val.add_argument("--root", nargs="+", required=True, help="dataset folder(s) holding the songs")
    val.add_argument("--songs", nargs="+", required=True, help="song names (a 'FOLDER/' prefix is ignored)")
    val.add_argument("--seconds", type=float, default=60.0)
    val.add_argument("--seed", type=int, default=1)
    val.add_argument("--json", default=None)
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
        from dataclasses import replace

        from automix.perturb import BENCHMARK

        perturbation = replace(BENCHMARK, **{k: v for k, v in (("gain_db", args.gain_db), ("tilt_db", args.tilt_db))
                                             if v is not None})
        make_examples(songs, args.out, args.examples, excerpt_seconds=args.excerpt_seconds, seed=args.seed,
                      perturbation=perturbation, segments=args.segments, gain_draws=args.gain_draws,
                      log=lambda s: print(s, flush=True))
        return 0
    if args.command == "validate":
        return _validate_command(args)
    import json

    from automix.model.checkpoint import save_checkpoint

    examples = load_examples(*args.examples)
    valid_songs = (choose_valid_songs(examples["song_names"], args.valid_songs, args.valid_seed)
                   if args.valid_songs > 0 and not args.all_songs else None)
    if valid_songs:
        print(f"validation songs ({len(valid_songs)}): {', '.join(valid_songs)}", flush=True)
    config = MixModelConfig(d_model=args.d_model, n_heads=args.heads, n_layers=args.layers,
                            role_dim=args.role_dim, dropout=args.dropout)
    if args.members < 1:
        parser.error("--members must be at least 1")
    fitted = []
    for member in range(args.members):
        if args.members > 1:
            print(f"member {member + 1}/{args.members} (seed {args.seed + member})", flush=True)
        fitted.append(fit(examples, config=config, steps=args.steps, batch=args.batch, learning_rate=args.lr,
                          seed=args.seed + member, weight_decay=args.weight_decay,
                          feature_noise=args.feature_noise, valid_songs=valid_songs, tone_weight=args.tone_weight,
                          ema=args.ema, select_by_song=args.select_by_song, mix_tone_weight=args.mix_tone_weight,
                          valid_fraction=0.0 if args.all_songs else 0.1, log=lambda s: print(s, flush=True)))
    model = fitted[0][0] if args.members == 1 else MixEnsemble([m for m, _ in fitted])
    valid = fitted[0][1]
    info = {"sample_rate": int(examples["sample_rate"]), "objective": "fit_inverse", "steps": args.steps,
            "best_step": int(valid["step"]), "ema": args.ema, "seed": args.seed, "members": args.members,
            "examples": int(examples["stems"].shape[0]), "examples_dirs": [str(e) for e in args.examples],
            "songs": len(examples["song_names"]), "valid_songs": list(valid_songs or [])}
    if not args.all_songs:
        info |= {"valid_balance_rms_db": math.sqrt(valid["balance_db2"]),
                 "valid_tone_rms_db": math.sqrt(valid["tone_db2"])}
        for key in ("balance_lu", "nothing_balance_lu"):
            if key in valid:
                info[f"valid_{key}"] = float(valid[key])
        if args.members > 1 and valid_songs and "bands_db" in examples:
            members = [song_balance(m, examples, valid_songs)["mean"] for m, _ in fitted]
            together = song_balance(model, examples, valid_songs)
            info["member_valid_song_mean_balance_lu"] = members
            info["valid_song_mean_balance_lu"] = together["mean"]
            valid = dict(valid, ensemble_songs={k: v for k, v in together.items() if k != "mean"})
            print(f"validation balance, mean over songs: members {', '.join(f'{m:.3f}' for m in members)}; "
                  f"ensemble {together['mean']:.3f} LU", flush=True)
    save_checkpoint(args.out, model, info)
    print(json.dumps({k: v for k, v in valid.items()}, indent=1), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"info": info, "valid": valid}, indent=2))
    print(f"saved {args.out}", flush=True)
    return 0


def product_mixer(model: MixModel):
    """A :data:`automix.evaluation.Mixer` that predicts as ``automix mix`` does.

    The model analyses evenly spaced pieces of the stems (:func:`automix.mixing.analysis_audio`),
    its settings are tidied (:func:`automix.mixing.tidy_settings`) and rendered by the console's
    exact path.
    """
    from automix.dsp.console import render_mix
    from automix.mixing import analysis_audio, tidy_settings

    @torch.no_grad()
    def mixer(stems: torch.Tensor, roles: torch.Tensor, mask: torch.Tensor, sample_rate: int) -> torch.Tensor:
        x, rate = analysis_audio(stems[0], sample_rate)
        pred = model.predict(model.analyse(x[None], rate), roles)[0]
        peak_db = 20 * torch.log10(stems[0].abs().amax(dim=(-1, -2)).clamp_min(1e-12))
        strip = tidy_settings(STRIP.clamp(pred.float()), peak_db)
        return render_mix(stems, strip[None], sample_rate, mode="exact", stem_mask=mask).stems

    return mixer


def validate_songs(model: MixModel, songs, *, seconds: float = 60.0, seed: int = 1, sample_rate: int = 24000,
                   log=print) -> list[dict]:
    """The benchmark's protocol on (validation) songs: per song, LSD and balance of model and baselines.

    Each song's middle ``seconds`` are perturbed by :data:`automix.perturb.BENCHMARK` with a
    per-song seed from ``seed``, mixed by :func:`product_mixer` and by the two baselines, and
    scored with :func:`automix.evaluation.score_systems`.

    Returns
    -------
    list of dict
        ``{"song", "stems", SYSTEM: {"spectral_distance_db", "balance_error_lu"}}`` per song.
    """
    from automix.evaluation import evaluate_songs

    mixer = product_mixer(model)
    results = []
    for song in songs:
        scores = evaluate_songs([song], mixer, sample_rate, seconds=seconds, seed=seed)
        row = {"song": song.name, "stems": len(song.stems)}
        for sc in scores:
            row[sc.system] = {"spectral_distance_db": sc.spectral_distance_db, "balance_error_lu": sc.balance_error_lu}
        results.append(row)
        log(f"{song.name[:40]:40s} " + "  ".join(
            f"{k}: {row[k]['spectral_distance_db']:.2f} dB / {row[k]['balance_error_lu']:.2f} LU"
            for k in ("model", "sum", "equal_loudness")))
    return results


def _validate_command(args) -> int:
    import json

    from automix.data.layout import scan_folder
    from automix.model.checkpoint import load_model

    wanted = [n.split("/")[-1] for n in args.songs]
    found = {s.name: s for root in args.root for s in scan_folder(root)}
    missing = [n for n in wanted if n not in found]
    if missing:
        print(f"songs not found under {', '.join(args.root)}: {', '.join(missing)}", file=sys.stderr)
        return 2
    model, info = load_model(args.model)
    rows = validate_songs(model, [found[n] for n in wanted], seconds=args.seconds, seed=args.seed,
                          sample_rate=int(info.get("sample_rate", 24000)), log=lambda s: print(s, flush=True))
    mean = {k: {m: float(np.mean([r[k][m] for r in rows])) for m in ("spectral_distance_db", "balance_error_lu")}
            for k in ("model", "sum", "equal_loudness")}
    wins = sum(r["model"]["spectral_distance_db"] < min(r["sum"]["spectral_distance_db"],
                                                        r["equal_loudness"]["spectral_distance_db"]) for r in rows)
    for k, v in mean.items():
        print(f"mean {k:15s} {v['spectral_distance_db']:.2f} dB  {v['balance_error_lu']:.2f} LU")
    print(f"spectral distance below both baselines on {wins}/{len(rows)} songs")
    if args.json:
        Path(args.json).write_text(json.dumps({"songs": rows, "mean": mean, "lsd_wins": wins}, indent=2))
    return 0

if __name__ == "__main__":
    sys.exit(main())
