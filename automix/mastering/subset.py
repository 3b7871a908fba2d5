"""A representative excerpt of the signal for the loudness landing's trial renders.

The landing finds the drive into the clipper and limiter by trying drives and measuring what
comes out. Rendering the whole signal for every try scales badly with its length (each full
render runs the 8x true-peak detector over all of it), so the tries run on an excerpt that
stands for the whole:

* every 400 ms block among the loudest :data:`CANDIDATE_SHARE` of the signal (by energy) -- the
  blocks where the stage works hardest, among them those over which the distortion budget is measured --
  plus windows of :data:`SPREAD_WINDOW_S` spread evenly over the signal (:data:`SPREAD_SHARE`
  of it), so the quieter passages that also set the integrated loudness are represented;
* each run of chosen blocks is rendered with :data:`PREROLL_S` of the signal before it (the
  limiter's release state and the K-weighting settle there; the 150 ms release has decayed to
  under 4 % of its state after it) and :data:`POSTROLL_S` after it (the look-ahead), the
  artificial edges faded in and out over 10 ms.

The stage is memoryless (clipper) or short-memory (limiter), so the kept samples of an excerpt
render equal those of a full render to far below the landing's tolerance. The excerpt predicts
the whole signal's loudness as the block model's loudness of the whole signal corrected by the
excerpt's measured-minus-modelled loudness (both over the same hops), and its residual in the
loudest blocks. The final render is always of the whole signal, measured exactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LOUD_SHARE = 0.1
"""Share of the whole signal's 400 ms blocks the loud-block residual is taken over (the distortion budget's)."""

CANDIDATE_SHARE = 0.2
"""Share of the 400 ms blocks, loudest input first, always in the excerpt: the stage evens out the loudest
passages, so the loudest tenth of the output is found among the loudest fifth of the input."""

SPREAD_SHARE = 0.1
"""Share of the signal sampled in evenly spread windows besides the loudest blocks."""

SPREAD_WINDOW_S = 2.0
"""Length of each evenly spread window (s)."""

PREROLL_S = 0.5
"""Signal rendered before each run of kept blocks and then dropped (s)."""

POSTROLL_S = 0.1
"""Signal rendered after each run of kept blocks and then dropped (s; covers the look-ahead)."""

MAX_SHARE = 0.6
"""An excerpt longer than this share of the signal is not worth it: the landing renders the whole."""

NEIGHBOURS = 12
"""Excerpt hops (nearest in level and crest) whose measured-over-modelled ratio stands for a hop outside it."""

FADE_S = 0.01
"""Fade at the excerpt's artificial edges (s)."""


@dataclass
class Trial:
    """One render of the excerpt at a drive.

    Attributes
    ----------
    drive_db : float
    lufs : float
        Predicted loudness of the whole signal: the block model's loudness of the whole at this drive,
        plus the excerpt's measured minus modelled loudness (both over the excerpt's hops).
    excerpt_lufs : float
        Measured gated loudness of the excerpt's kept hops after the stage.
    loud_db : float
        Non-linear residual (single least-squares gain) over the loudest kept blocks, as many as
        :data:`LOUD_SHARE` of the whole signal's blocks (dB).
    overall_db : float
        The same over all kept blocks (dB; an estimate of the whole signal's figure).
    """

    drive_db: float
    lufs: float
    excerpt_lufs: float
    loud_db: float
    overall_db: float


class Excerpt:
    """The excerpt of ``x`` ``(channels, T)`` chosen as in the module notes, on the loudness meter's hop grid.

    Attributes
    ----------
    samples : np.ndarray
        ``(channels, frames)`` float32: the runs with their pre- and post-rolls, one after another.
    share : float
        ``samples``' length over the signal's.
    """

    def __init__(self, x: np.ndarray, hop: int, total_blocks: int | None = None):
        self.hop = int(hop)
        frames = x.shape[-1]
        block = 4 * self.hop  # the meter's 400 ms block
        n_blocks = frames // block
        self.total_blocks = n_blocks if total_blocks is None else total_blocks
        energy = np.array([float(np.einsum("ct,ct->", x[:, b * block:(b + 1) * block],
                                           x[:, b * block:(b + 1) * block], dtype=np.float64))
                           for b in range(n_blocks)])
        chosen = np.zeros(n_blocks, bool)
        loud = max(1, int(math.ceil(CANDIDATE_SHARE * n_blocks)))
        chosen[np.argsort(energy)[::-1][:loud]] = True
        window = max(1, int(round(SPREAD_WINDOW_S / (4 * 0.1))))
        every = max(window, int(round(window / SPREAD_SHARE)))
        for start in range((every - window) // 2, n_blocks, every):
            chosen[start: start + window] = True
        pre = int(round(PREROLL_S / 0.1)) * self.hop
        post = max(1, int(round(POSTROLL_S / 0.1))) * self.hop
        # runs of chosen blocks; runs closer than the rolls they would need are joined
        runs: list[list[int]] = []
        for b in np.flatnonzero(chosen):
            if runs and (b - runs[-1][1]) * block <= pre + post:
                runs[-1][1] = b + 1
            else:
                runs.append([b, b + 1])
        self.segments: list[tuple[int, int, int, int]] = []  # (lo, kept_start, kept_stop, hi) in signal frames
        for b0, b1 in runs:
            s, e = b0 * block, b1 * block
            self.segments.append((max(0, s - pre), s, e, min(frames, e + post)))
        length = sum(hi - lo for lo, _, _, hi in self.segments)
        self.share = length / max(frames, 1)
        self.samples = np.empty((x.shape[0], length), np.float32)
        self.kept: list[tuple[int, int]] = []  # kept ranges in excerpt frames
        self.hops: list[np.ndarray] = []  # their hop indices in the whole signal
        fade = max(1, int(round(FADE_S * 10 * self.hop)))
        ramp = (0.5 - 0.5 * np.cos(np.pi * (np.arange(fade) + 0.5) / fade)).astype(np.float32)
        pos = 0
        for lo, s, e, hi in self.segments:
            part = self.samples[:, pos: pos + hi - lo]
            part[:] = x[:, lo:hi]
            if lo > 0:
                part[:, :fade] *= ramp
            if hi < frames:
                part[:, -fade:] *= ramp[::-1]
            self.kept.append((pos + s - lo, pos + e - lo))
            self.hops.append(np.arange(s // self.hop, e // self.hop))
            pos += hi - lo
        self.hop_index = np.concatenate(self.hops) if self.hops else np.zeros(0, int)
        self.out = np.empty_like(self.samples)
        self.peaks: np.ndarray | None = None  # detector envelope of ``samples`` (set by the landing)
        self.threshold = math.inf  # the detector threshold ``peaks`` was taken with
        self.neighbours: np.ndarray | None = None  # (hops, NEIGHBOURS) positions in hop_index (see fit_features)

    def release(self) -> None:
        """Free the excerpt's arrays (the trials are over)."""
        self.samples = self.out = self.peaks = None

    @property
    def worth_it(self) -> bool:
        """True when the excerpt is short enough against the whole to save time."""
        return self.share <= MAX_SHARE and len(self.hop_index) >= 8

    def kept_hop_energies(self, y: np.ndarray, sample_rate: int) -> np.ndarray:
        """K-weighted energy of each kept hop of ``y`` (an excerpt render), in the order of :attr:`hop_index`."""
        from automix.loudness import hop_energies

        energies, _ = hop_energies(y, sample_rate, hop_s=self.hop / float(sample_rate))
        return np.concatenate([energies[k0 // self.hop: k1 // self.hop] for k0, k1 in self.kept])

    def fit_features(self, energies: np.ndarray, peaks: np.ndarray) -> None:
        """Pair every hop of the whole signal with the :data:`NEIGHBOURS` excerpt hops most like it, by level
        and crest (dB): the stage takes more from louder hops and from peakier ones at the same level.

        Parameters
        ----------
        energies : np.ndarray
            ``(hops,)`` energy of each hop of the whole signal at no drive (the block model's).
        peaks : np.ndarray
            ``(hops,)`` largest true peak of each hop (linear).
        """
        from scipy.spatial import cKDTree

        tiny = 1e-30
        level = 10.0 * np.log10(np.maximum(energies / float(self.hop), tiny))
        crest = 20.0 * np.log10(np.maximum(peaks, tiny)) - level
        features = np.stack([level, crest], axis=1)
        k = min(NEIGHBOURS, len(self.hop_index))
        tree = cKDTree(features[self.hop_index])
        _, idx = tree.query(features, k=k)
        self.neighbours = np.asarray(idx, dtype=np.int64).reshape(len(features), k)

    def predict(self, modelled: np.ndarray, measured: np.ndarray) -> np.ndarray:
        """The whole signal's hop energies after the stage: ``measured`` (:meth:`kept_hop_energies`) on the
        excerpt's hops; elsewhere the block model's ``modelled`` energies (every hop of the whole) times the
        mean measured-over-modelled ratio (dB) of the hop's excerpt neighbours (:meth:`fit_features`)."""
        tiny = 1e-30
        own = np.maximum(modelled[self.hop_index], tiny)
        ratio = 10.0 * np.log10(np.maximum(measured, tiny) / own)
        out = modelled.copy()
        if self.neighbours is not None and self.neighbours.shape[0] == modelled.shape[0]:
            out *= 10.0 ** (ratio[self.neighbours].mean(axis=1) / 10.0)
        elif ratio.size:
            out *= 10.0 ** (float(np.median(ratio)) / 10.0)
        out[self.hop_index] = measured
        return out

    def residual(self, y: np.ndarray) -> tuple[float, float]:
        """``(overall dB, loudest-blocks dB)``: non-linear residual of the render ``y`` against the excerpt's
        input with one least-squares gain (as :func:`automix.mastering.distortion.gain_residual`), over the
        kept 400 ms blocks; the loud figure over the loudest ``LOUD_SHARE`` of the whole signal's block count."""
        block = 4 * self.hop
        sums = []
        for k0, k1 in self.kept:
            n = (k1 - k0) // block
            a = np.asarray(self.samples[:, k0: k0 + n * block], np.float64).reshape(self.samples.shape[0], n, block)
            b = np.asarray(y[:, k0: k0 + n * block], np.float64).reshape(y.shape[0], n, block)
            sums.append(np.stack([np.einsum("cbt,cbt->b", a, b), np.einsum("cbt,cbt->b", a, a),
                                  np.einsum("cbt,cbt->b", b, b)]))
        xy, xx, yy = np.concatenate(sums, axis=1)
        gain = float(xy.sum() / max(xx.sum(), 1e-300))
        res = np.maximum(yy - 2 * gain * xy + gain * gain * xx, 0.0)
        loud = np.argsort(yy)[::-1][: max(1, int(math.ceil(LOUD_SHARE * self.total_blocks)))]

        def ratio_db(num: float, den: float) -> float:
            return 10 * math.log10(max(num, 1e-30) / max(den, 1e-30))

        return ratio_db(float(res.sum()), float(yy.sum())), ratio_db(float(res[loud].sum()), float(yy[loud].sum()))
