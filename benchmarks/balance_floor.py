"""How much of a song's balance can be inferred from perturbed stems at all (training songs only).

The mix model must guess where the composer put every stem after the benchmark knocked each
stem's level by a uniform random gain (+/-9 dB). This script measures, on the TRAINING songs
(never the held-out benchmark songs), what simple and Bayes-optimal guessers achieve on the
benchmark's balance measure, to tell whether issue 6's target (<= 1.5 LU) is reachable
without a reference:

1. **Truth** -- every stem's ungated K-weighted loudness relative to its song's mix (the sum
   of the stems), LU, over the first ``--seconds`` of the song (as the benchmark measures;
   stems quieter than -70 LUFS are ignored as the benchmark ignores them).
2. **Guessers**, each scored with the benchmark's own measure
   (:func:`automix.evaluation.balance_error_lu`: the stems are scaled to the guessed levels,
   the new mix is formed and each stem's loudness relative to it is compared with the truth;
   computed exactly from the stems' K-weighted cross-power matrix, so any gains can be scored
   without rendering), averaged over ``--draws`` perturbation draws per song:

   * ``sum`` -- leave the perturbed stems as they are (the benchmark's sum baseline);
   * ``equal`` -- every stem at the same loudness (the equal-loudness baseline);
   * ``role prior`` -- every stem at the mean relative loudness of its instrument role
     (:func:`automix.model.roles.role_from_name`) over the OTHER songs (leave one song out);
   * ``bayes, known mix`` -- posterior mean of the truth given the observation
     ``obs = truth + U(-9, 9)`` (the mix's true loudness assumed known) under the role's
     empirical prior from the other songs (kernel-smoothed, 1 LU), i.e. the prior truncated
     to ``[obs - 9, obs + 9]``: optimistic, the offset is free information;
   * ``bayes`` -- the same, but the mix's true loudness is unknown too (the observation is
     the perturbed stems' absolute loudness) and is marginalised on a grid (flat prior):
     what an ideal guesser that knows only roles and perturbed levels can do;
   * ``bayes, name prior`` -- the same with a finer prior: stems of the same instrument name
     (file name without numbers, e.g. ``guitar``, ``strings``, ``kick``; a General MIDI
     song's channel name) where at least 3 other songs' stems share it, else the role's.

3. **Prior precision needed** -- for a Gaussian prior of standard deviation sigma around
   the truth (a content model that knows a stem's level to within sigma LU), the
   posterior-mean error given ``obs = truth + U(-9, 9)`` (known mix level; simulated):
   how good a level predictor from the audio would have to be to reach 1.5 LU.

   The tilt EQ of the benchmark perturbation is not simulated (it adds a little more noise
   to the observed levels), so these numbers are a slightly optimistic floor.

Usage::

    python benchmarks/balance_floor.py [--data /work/data/midi_mt /work/data/lmms_mt]
        [--seconds 60] [--draws 200] [--seed 0] [--cache floor_cache.npz] [--json out.json]

Prints per-song and per-source tables and the per-role statistics of the truth.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

DEFAULT_DATA = ("/work/data/midi_mt", "/work/data/lmms_mt")
GAIN_DB = 9.0  # the benchmark perturbation's gain range (automix.perturb.BENCHMARK.gain_db)
SILENCE_LUFS = -70.0
GUESSERS = ("sum", "equal", "role prior", "bayes, known mix", "bayes", "bayes, name prior")


def song_gram(song, seconds: float) -> tuple[np.ndarray, list[str], list[int]]:
    """K-weighted cross-power matrix (S, S) of a song's stems over its first ``seconds``.

    ``gram[i, j]`` is the K-weighted mean product of stems i and j summed over channels, so
    the ungated BS.1770 loudness of ``sum_i a_i stem_i`` is ``-0.691 + 10 log10(a @ gram @ a)``
    (:func:`automix.evaluation.kweighted_loudness_db` for any gains ``a``).
    """
    from automix.audio import load_audio
    from automix.evaluation import k_weighting_power_response

    arrays, rate = [], None
    for path in song.stems:
        audio = load_audio(path, sample_rate=rate, mono_to_stereo=True)
        rate = rate or audio.sample_rate
        arrays.append(np.asarray(audio.samples, dtype=np.float32)[:2])
    n = min(max(a.shape[-1] for a in arrays), int(seconds * rate))
    x = np.zeros((len(arrays), 2, n), np.float32)
    for i, a in enumerate(arrays):
        m = min(n, a.shape[-1])
        x[i, :, :m] = a[:, :m]
    spec = torch.fft.rfft(torch.from_numpy(x), n=n)  # (S, 2, F)
    w = torch.from_numpy(k_weighting_power_response(n, rate)).float()
    side = torch.full_like(w, 2.0)
    side[0] = 1.0
    if n % 2 == 0:
        side[-1] = 1.0
    weighted = spec * (w * side).sqrt()
    gram = torch.einsum("icf,jcf->ij", weighted, weighted.conj()).real / float(n) ** 2
    return gram.double().numpy(), [p.name for p in song.stems], list(song.roles)


def loudness_db(gram: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Loudness (LUFS) of the mix of gains ``a`` (..., S) under ``gram``."""
    return -0.691 + 10 * np.log10(np.einsum("...i,ij,...j->...", a, gram, a).clip(1e-30))


def benchmark_error(gram: np.ndarray, level_db: np.ndarray, guess_db: np.ndarray) -> np.ndarray:
    """The benchmark's balance error (LU) when stems of loudness ``level_db`` (S,) are brought to ``guess_db`` (..., S).

    The stems are scaled to the guessed loudness (any common offset), summed; each one's
    loudness relative to that mix is compared with its loudness relative to the original mix.
    """
    a = 10 ** ((guess_db - level_db) / 20)
    truth = level_db - loudness_db(gram, np.ones_like(level_db))
    est = guess_db - loudness_db(gram, a)[..., None]
    return np.abs(est - truth).mean(-1)


class Prior:
    """Kernel-smoothed empirical distribution of relative loudness on a grid (LU)."""

    grid = np.arange(-80.0, 20.0, 0.1)

    def __init__(self, samples: np.ndarray, bandwidth: float = 1.0):
        d = np.exp(-0.5 * ((self.grid[:, None] - np.asarray(samples)[None, :]) / bandwidth) ** 2).sum(1)
        d = d / d.sum()
        self.cdf = np.concatenate([[0.0], np.cumsum(d)])  # mass below each grid edge
        self.m1 = np.concatenate([[0.0], np.cumsum(d * self.grid)])
        self.edges = np.concatenate([self.grid - 0.05, [self.grid[-1] + 0.05]])

    def window(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Prior mass and first moment inside ``[lo, hi]`` (arrays, broadcast)."""
        c_lo, c_hi = np.interp(lo, self.edges, self.cdf), np.interp(hi, self.edges, self.cdf)
        m_lo, m_hi = np.interp(lo, self.edges, self.m1), np.interp(hi, self.edges, self.m1)
        return c_hi - c_lo, m_hi - m_lo


def bayes_known_mix(priors: list[Prior], obs_rel: np.ndarray) -> np.ndarray:
    """Posterior mean of each stem's relative loudness given ``obs_rel`` = truth + U(-9, 9): (D, S)."""
    out = np.empty_like(obs_rel)
    for i, p in enumerate(priors):
        mass, m1 = p.window(obs_rel[:, i] - GAIN_DB, obs_rel[:, i] + GAIN_DB)
        out[:, i] = np.where(mass > 1e-12, m1 / np.maximum(mass, 1e-300), obs_rel[:, i])
    return out


def bayes(priors: list[Prior], obs_abs: np.ndarray, step: float = 0.1) -> np.ndarray:
    """Posterior mean of each stem's relative loudness when the mix loudness M is unknown too.

    ``obs_abs`` (D, S): perturbed stems' loudness = truth + M + U(-9, 9); M gets a flat prior
    on a grid and is marginalised (stems independent given M). Returns (D, S).
    """
    out = np.empty_like(obs_abs)
    for d in range(obs_abs.shape[0]):
        o = obs_abs[d]
        mix = np.arange(o.max() - GAIN_DB - 25.0, o.max() + 70.0, step)  # candidate mix loudness
        rel = o[None, :] - mix[:, None]  # (M, S): truth + u for each candidate
        mass = np.empty_like(rel)
        m1 = np.empty_like(rel)
        for i, p in enumerate(priors):
            mass[:, i], m1[:, i] = p.window(rel[:, i] - GAIN_DB, rel[:, i] + GAIN_DB)
        logw = np.log(np.maximum(mass, 1e-300)).sum(1)
        w = np.exp(logw - logw.max())
        w /= w.sum()
        cond = m1 / np.maximum(mass, 1e-300)
        out[d] = (w[:, None] * cond).sum(0)
    return out


def instrument_name(file_name: str) -> str:
    """A stem's instrument name: its file name, lower case, without extension, digits and separators."""
    import re

    return re.sub(r"[^a-z]+", " ", Path(file_name).stem.lower()).strip()


def gaussian_prior_error(sigma: float, n: int = 200_000, seed: int = 0) -> float:
    """Mean |posterior mean - truth| for truth ~ N(0, sigma), obs = truth + U(-9, 9) (LU)."""
    from scipy.stats import norm

    rng = np.random.default_rng(seed)
    truth = rng.normal(0.0, sigma, n)
    obs = truth + rng.uniform(-GAIN_DB, GAIN_DB, n)
    a, b = (obs - GAIN_DB) / sigma, (obs + GAIN_DB) / sigma
    mass = (norm.cdf(b) - norm.cdf(a)).clip(1e-300)
    post = sigma * (norm.pdf(a) - norm.pdf(b)) / mass  # mean of N(0, sigma) truncated to [a, b]
    return float(np.abs(post - truth).mean())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", default=list(DEFAULT_DATA), help="TRAINING dataset folders")
    parser.add_argument("--seconds", type=float, default=60.0, help="first N seconds of each song (as the benchmark)")
    parser.add_argument("--draws", type=int, default=200, help="perturbation draws per song")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bandwidth", type=float, default=1.0, help="prior kernel width, LU")
    parser.add_argument("--cache", default=None, help="npz of the measured cross-power matrices (reused if present)")
    parser.add_argument("--json", default=None, help="also write the per-song results here")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from automix.data.layout import scan_folder
    from automix.model.roles import ROLES

    songs = []  # (source, name, gram, stem names, roles)
    cache = Path(args.cache) if args.cache else None
    if cache and cache.exists():
        z = np.load(cache, allow_pickle=True)
        songs = list(z["songs"])
    else:
        for root in args.data:
            for song in scan_folder(root):
                gram, names, roles = song_gram(song, args.seconds)
                songs.append((Path(root).name, song.name, gram, names, roles))
                print(f"measured {song.name} ({len(names)} stems)", file=sys.stderr, flush=True)
        if cache:
            np.savez(cache, songs=np.array(songs, dtype=object))

    # Truth per song: loudness of each stem and relative to the mix (audible stems only).
    items = []
    for source, name, gram, names, roles in songs:
        level = loudness_db(gram, np.eye(len(names)))
        keep = level > SILENCE_LUFS
        gram = gram[np.ix_(keep, keep)]
        level = level[keep]
        rel = level - loudness_db(gram, np.ones(int(keep.sum())))
        items.append({"source": source, "song": name, "gram": gram, "level": level, "rel": rel,
                      "roles": np.asarray(roles)[keep], "names": [n for n, k in zip(names, keep) if k]})

    print(f"{len(items)} training songs, {sum(len(it['rel']) for it in items)} audible stems "
          f"(first {args.seconds:g} s)\n")
    print("(a) stem loudness relative to the mix, by role (LU): mean, std across stems, mean-removed std")
    all_roles = np.concatenate([it["roles"] for it in items])
    all_rel = np.concatenate([it["rel"] for it in items])
    all_cent = np.concatenate([it["rel"] - it["rel"].mean() for it in items])
    print(f"{'role':16s} {'stems':>6s} {'mean':>7s} {'std':>6s} {'std mr':>7s}")
    for r in np.unique(all_roles):
        sel = all_roles == r
        print(f"{ROLES[r]:16s} {sel.sum():6d} {all_rel[sel].mean():7.2f} {all_rel[sel].std():6.2f} "
              f"{all_cent[sel].std():7.2f}")
    print(f"{'all':16s} {len(all_rel):6d} {all_rel.mean():7.2f} {all_rel.std():6.2f} {all_cent.std():7.2f}\n")

    rng = np.random.default_rng(args.seed)
    rows = []
    for k, it in enumerate(items):
        others = [o for j, o in enumerate(items) if j != k]
        o_roles = np.concatenate([o["roles"] for o in others])
        o_rel = np.concatenate([o["rel"] for o in others])
        prior_of = {}
        for r in set(it["roles"].tolist()):
            samples = o_rel[o_roles == r]
            prior_of[r] = samples if len(samples) >= 3 else o_rel  # unknown role: all stems
        priors = [Prior(prior_of[r], args.bandwidth) for r in it["roles"]]
        o_names = np.array([instrument_name(n) for o in others for n in o["names"]])
        name_priors = []
        for n, r in zip(it["names"], it["roles"]):
            samples = o_rel[o_names == instrument_name(n)]
            name_priors.append(Prior(samples, args.bandwidth) if len(samples) >= 3 else Prior(prior_of[r], args.bandwidth))
        s = len(it["rel"])
        gains = rng.uniform(-GAIN_DB, GAIN_DB, size=(args.draws, s))
        obs_abs = it["level"][None, :] + gains
        guesses = {
            "sum": obs_abs,
            "equal": np.zeros((1, s)),
            "role prior": np.array([[prior_of[r].mean() for r in it["roles"]]]),
            "bayes, known mix": bayes_known_mix(priors, it["rel"][None, :] + gains),
            "bayes": bayes(priors, obs_abs),
            "bayes, name prior": bayes(name_priors, obs_abs),
        }
        row = {"source": it["source"], "song": it["song"], "stems": s,
               "spread_lu": float(np.abs(it["rel"] - it["rel"].mean()).mean())}
        for g, guess in guesses.items():
            row[g] = float(benchmark_error(it["gram"], it["level"], guess).mean())
        rows.append(row)

    print("(b, c) benchmark balance error (LU) per training song, mean over "
          f"{args.draws} perturbation draws; 'spread' = mean |relative loudness - song mean|")
    head = f"{'song':44s} {'S':>3s} {'spread':>7s} " + " ".join(f"{g:>17s}" for g in GUESSERS)
    print(head)
    for r in rows:
        print(f"{r['song'][:44]:44s} {r['stems']:3d} {r['spread_lu']:7.2f} "
              + " ".join(f"{r[g]:17.2f}" for g in GUESSERS))
    print()
    print(f"{'mean over songs':44s} {'':3s} {'spread':>7s} " + " ".join(f"{g:>17s}" for g in GUESSERS))
    for source in sorted({r["source"] for r in rows}) + ["all"]:
        sel = [r for r in rows if source in ("all", r["source"])]
        print(f"{source + f' ({len(sel)} songs)':44s} {'':3s} {np.mean([r['spread_lu'] for r in sel]):7.2f} "
              + " ".join(f"{np.mean([r[g] for r in sel]):17.2f}" for g in GUESSERS))
    for g in ("bayes", "bayes, name prior"):
        share = np.mean([r[g] <= 1.5 for r in rows])
        print(f"songs where '{g}' reaches <= 1.5 LU: {share:.0%}")
    print("\n(d) prior precision needed: per-stem error of the posterior mean (known mix level) when a "
          "content model knows each stem's level to within a Gaussian sigma")
    for sigma in (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0):
        print(f"  sigma {sigma:4.1f} LU -> {gaussian_prior_error(sigma):.2f} LU")
    if args.json:
        Path(args.json).write_text(json.dumps({"songs": rows, "seconds": args.seconds, "draws": args.draws}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
