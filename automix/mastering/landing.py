"""Loudness that lands: find the gain into the limiter that gives the target loudness after limiting.

Limiting lowers loudness by an amount that grows with the drive, so a single gain step
misses the target. :func:`land_loudness` iterates on a cheap **block-rate model** of the
limiter and the meter, then renders once at full rate and verifies:

1. one pass over the signal collects, per block of D samples (D about 16, dividing the
   loudness meter's 100 ms hop), the largest true peak (:func:`~automix.mastering.limiter.detect_peaks`)
   and the K-weighted energy (:func:`automix.loudness.hop_energies`) -- a few percent of the
   signal's size;
2. the drive is found by the secant method on that model: the limiter's gain at block rate
   (:func:`~automix.mastering.limiter.gain_from_peaks` with ``decimation``) weights the block
   energies, the BS.1770 gate turns them into LUFS (error below ``tolerance_lu``);
3. the limiter runs once at full rate, block by block
   (:func:`~automix.mastering.limiter.limit_blocks`, in place when allowed), the true peak and
   the integrated loudness of the result are measured exactly; should the loudness miss by more
   than ``tolerance_lu``, the model's bias is corrected by the measured difference and the
   drive found again (rare).

When the target needs more than ``max_limiting_db`` of gain reduction, the drive stops
at the highest level that stays within it and the result carries a warning saying how
far from the target it is (a musician then decides: lower target or accept more limiting).

**With the clipper** (the default loudness stage) the clipper's loss of loudness grows with the
drive and the block model leaves it out, so the drive is tried on measured renders -- of an
excerpt (:mod:`automix.mastering.subset`: the loudest fifth of the signal plus evenly spread
windows, with pre-rolls), not of the whole signal: the excerpt's measured loudness per hop, against
the model's, corrects the model's prediction for the whole, and its residual in the loudest blocks
is the distortion budget's figure. The whole signal is then rendered once (a second time when it
misses by more than :data:`FULL_TOLERANCE_LU`), and measured exactly. That render detects true
peaks only near samples the clipper bent (elsewhere the clipped signal's envelope is the input's
times the drive) and checks the ceiling with a bound on the smooth limiter gain's change
(:func:`~automix.mastering.limiter.bounded_peak_dbtp`), detecting exactly only where the bound
cannot show it holds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from numba import njit

from automix.mastering.clipper import CLIP_DB, KNEE_DB, soft_clip
from automix.mastering.distortion import Residual, gain_residual
from automix.mastering.subset import Excerpt, Trial
from automix.mastering.limiter import (bounded_peak_dbtp, detect_peaks, detected_true_peak_dbtp, gain_from_peaks,
                                       limit_blocks, verified_peak_dbtp)

PEAK_CACHE_FRAMES = 1 << 24
"""Signals up to this many frames keep their full-rate peak envelope between the passes
(64 MiB at most); longer ones detect it again in the final pass (bounded memory) and use
coarser model blocks (about 32 samples instead of 16)."""

WARMUP_FRAMES = 1 << 14
"""Frames of K-weighting run-in before each range of the block energies (the filter's response
has decayed by far more than float32 precision after it, so ranges join seamlessly)."""


@dataclass
class Landing:
    """Result of :func:`land_loudness`.

    Attributes
    ----------
    samples : np.ndarray
        ``(channels, T)`` float32 output.
    drive_db : float
        Gain applied before the limiter (dB).
    integrated_lufs : float
        Measured loudness of ``samples``.
    true_peak_dbtp : float
        True peak of ``samples`` read by the limiter's 8x detector
        (:func:`~automix.mastering.limiter.detected_true_peak_dbtp`; at or above an 8x polyphase meter).
    max_gain_reduction_db : float
        Largest limiter gain reduction (dB).
    iterations : int
        Drive updates on the block-rate model.
    reached : bool
        False when the target was not reached because of ``max_limiting_db``.
    renders : int
        Full-rate limiter renders (1 unless the verification asked for another).
    warnings : list of str
    clip_db : float or None
        Clipper threshold relative to the ceiling (dB; None: no clipper).
    clip_reduction_db : float
        How far the loudest driven peak went above the clipper's threshold (dB, >= 0).
    distortion : Residual or None
        Non-linear residual of the loudness stage (clipper + limiter) against its input
        (:func:`automix.mastering.distortion.gain_residual`); None when not measured (in place).
    asked_distortion : Residual or None
        The same at the loudness asked for, when the distortion budget stopped the landing short.
    asked_lufs : float or None
        The loudness asked for, when the budget stopped the landing short.
    excerpt_share : float or None
        Length of the excerpt the tries ran on over the signal's (:mod:`automix.mastering.subset`);
        None when the tries rendered the whole signal.
    """

    samples: np.ndarray
    drive_db: float
    integrated_lufs: float
    true_peak_dbtp: float
    max_gain_reduction_db: float
    iterations: int
    reached: bool
    renders: int = 1
    warnings: list[str] = field(default_factory=list)
    clip_db: float | None = None
    clip_reduction_db: float = 0.0
    distortion: Residual | None = None
    asked_distortion: Residual | None = None
    asked_lufs: float | None = None
    excerpt_share: float | None = None


def _db_gain(db: float) -> float:
    return 10.0 ** (db / 20.0)


def decimation_for(hop: int, near: int = 16) -> int:
    """Block length of the landing model: the divisor of the loudness ``hop`` (samples) in 8..32
    closest to ``near`` (1 if there is none)."""
    divisors = [d for d in range(8, 33) if hop % d == 0]
    return min(divisors, key=lambda d: (abs(d - near), d)) if divisors else 1


class LevelModel:
    """Block-rate model of "limiter at drive d, then loudness meter" for a signal ``x`` ``(channels, T)``.

    Holds per block of :attr:`decimation` samples the largest true peak and the K-weighted
    energy (and, for signals up to :data:`PEAK_CACHE_FRAMES`, the full-rate peak envelope for the
    final pass). ``bias`` (LU) is the measured difference to the exact meter after limiting.
    """

    def __init__(self, x: np.ndarray, sample_rate: int, lookahead_ms: float = 5.0, release_ms: float = 150.0):
        from automix.loudness import HOP_S, hop_energies

        from automix.mastering import profile

        self.x = x
        self.sample_rate = int(sample_rate)
        self.hop = max(1, int(round(HOP_S * sample_rate)))
        frames = x.shape[-1]
        self.decimation = d = decimation_for(self.hop, 16 if frames <= PEAK_CACHE_FRAMES else 32)
        self.lookahead_ms, self.release_ms = lookahead_ms, release_ms
        # K-weighted energy per block, float32 (sums over hops are taken in float64), measured range by
        # range: each range starts WARMUP_FRAMES early so the filter state has settled (no whole-file temporaries)
        self.energies = np.empty(frames // d, np.float32)
        step = max(d, (profile.BLOCK_FRAMES // d) * d)
        warm = -(-WARMUP_FRAMES // d) * d
        for start in range(0, self.energies.size * d, step):
            stop = min(self.energies.size * d, start + step)
            lo = max(0, start - warm)
            e, _ = hop_energies(x[:, lo:stop], sample_rate, hop_s=d / float(sample_rate))
            self.energies[start // d: stop // d] = e[(start - lo) // d:]
        self.threshold = math.inf
        self.peaks: np.ndarray | None = None
        self.block_peaks = np.zeros(-(-x.shape[-1] // d), np.float32)
        self.bias = 0.0
        self.clip_peak: float | None = None  # linear true peak a clipped block is modelled at (None: no clipper)

    def detect(self, threshold: float) -> None:
        """(Re)detect the peaks with the detector ``threshold`` (linear; peaks below it may read low)."""
        from automix.mastering import profile

        x, d = self.x, self.decimation
        frames = x.shape[-1]
        self.threshold = float(threshold)
        self.peaks = None  # the former envelope is freed first
        self.peaks = np.empty(frames, np.float32) if frames <= PEAK_CACHE_FRAMES else None
        step = max(d, (profile.BLOCK_FRAMES // d) * d)  # whole model blocks per range
        ranges = [(start, min(frames, start + step)) for start in range(0, frames, step)]
        for start, stop, env in _envelopes(x, self.threshold, ranges):
            if self.peaks is not None:
                self.peaks[start:stop] = env
            tail = (-env.size) % d
            if tail:
                env = np.concatenate([env, np.zeros(tail, np.float32)])
            self.block_peaks[start // d: start // d + env.size // d] = env.reshape(-1, d).max(axis=1)

    def gain(self, drive_db: float, ceiling_dbtp: float) -> np.ndarray:
        """Limiter gain per block (linear) at ``drive_db`` (after the clipper, when there is one)."""
        if self.clip_peak is not None:
            peaks = np.minimum(self.block_peaks * np.float32(_db_gain(drive_db)), np.float32(self.clip_peak))
            return gain_from_peaks(peaks, self.sample_rate, ceiling_dbtp, self.lookahead_ms, self.release_ms,
                                   decimation=self.decimation)
        return gain_from_peaks(self.block_peaks, self.sample_rate, ceiling_dbtp, self.lookahead_ms, self.release_ms,
                               level=_db_gain(drive_db), decimation=self.decimation)

    def hop_energies(self, drive_db: float, gain: np.ndarray | None) -> np.ndarray:
        """Modelled K-weighted energy per loudness hop after ``drive_db`` and the block gain ``gain``
        (None: no limiter), without :attr:`bias`."""
        per_hop = self.hop // self.decimation
        hops = np.empty(self.energies.size // per_hop)
        _hop_sums(self.energies, np.ones(1, np.float32) if gain is None else gain, gain is not None, per_hop, hops)
        hops *= 10.0 ** (drive_db / 10.0)
        return hops

    def hop_features(self) -> tuple[np.ndarray, np.ndarray]:
        """``(energy, peak)`` of each loudness hop at no drive: K-weighted energy and largest detected peak
        (linear; after :meth:`detect`)."""
        energies = self.hop_energies(0.0, None)
        per_hop = self.hop // self.decimation
        peaks = self.block_peaks[: energies.size * per_hop].reshape(-1, per_hop).max(axis=1)
        return energies, peaks

    def lufs(self, drive_db: float, gain: np.ndarray | None) -> float:
        """Integrated loudness (LUFS) after ``drive_db`` and the block gain ``gain`` (None: no limiter)."""
        from automix.loudness import gated_integrated

        return gated_integrated(self.hop_energies(drive_db, gain), self.hop) + self.bias


def _envelopes(x: np.ndarray, threshold: float, ranges: list[tuple[int, int]]):
    """``(start, stop, detect_peaks(x, threshold, start, stop))`` for each range, in order.

    Two ranges at a time run on two threads (the detector releases the GIL); only those two
    envelopes exist at once, whatever the length of ``x``.
    """
    from automix.audio import usable_cpus

    if len(ranges) < 2 or usable_cpus() < 2:
        for start, stop in ranges:
            yield start, stop, detect_peaks(x, threshold, start=start, stop=stop)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        for i in range(0, len(ranges), 2):
            pair = ranges[i: i + 2]
            later = pool.submit(detect_peaks, x, threshold, *pair[-1]) if len(pair) == 2 else None
            yield pair[0][0], pair[0][1], detect_peaks(x, threshold, start=pair[0][0], stop=pair[0][1])
            if later is not None:
                yield pair[1][0], pair[1][1], later.result()


@njit(cache=True)
def _hop_sums(energies, gain, weighted, per_hop, out):  # pragma: no cover - compiled
    """``out[h] = sum(energies[b] * gain[b]**2)`` over the ``per_hop`` blocks of hop ``h`` (float64)."""
    for h in range(out.shape[0]):
        acc = 0.0
        for b in range(h * per_hop, (h + 1) * per_hop):
            if weighted:
                g = np.float64(gain[b])
                acc += energies[b] * g * g
            else:
                acc += energies[b]
        out[h] = acc


def _iterate(model: LevelModel, drive, target_lufs, ceiling_dbtp, max_limiting_db, tolerance_lu,
             max_iterations) -> tuple[float, bool, int]:
    """Secant iteration of the drive on the model; returns ``(drive, reached, iterations)``."""
    history: list[tuple[float, float]] = []
    reached = True
    iterations = 0
    for iterations in range(1, max_iterations + 1):
        gain = model.gain(drive, ceiling_dbtp)
        reduction = max(0.0, float(-20.0 * np.log10(max(float(gain.min(initial=1.0)), 1e-30))))
        if reduction > max_limiting_db + 0.05:
            drive -= reduction - max_limiting_db  # gain reduction grows about 1:1 with the drive
            reached = False
            continue
        lufs = model.lufs(drive, gain)
        error = target_lufs - lufs
        history.append((drive, lufs))
        if abs(error) <= tolerance_lu * 0.5:
            return drive, True, iterations
        if error > 0 and reduction >= max_limiting_db - 0.05:
            return drive, False, iterations  # louder would need more limiting than allowed
        slope = 1.0
        if len(history) >= 2:
            (d0, l0), (d1, l1) = history[-2], history[-1]
            if abs(d1 - d0) > 1e-6:
                slope = min(1.0, max(0.2, (l1 - l0) / (d1 - d0)))
        step = error / slope
        if error > 0:
            step = min(step, max(0.0, max_limiting_db - reduction) / max(slope, 0.2) + 0.5 * step)
        drive += step
    return drive, reached, iterations


def _scale_blocks(x: np.ndarray, factor: float) -> None:
    """``x *= factor`` in place, block by block."""
    from automix.mastering import profile

    f = np.float32(factor)
    for start in range(0, x.shape[-1], profile.BLOCK_FRAMES):
        x[:, start: start + profile.BLOCK_FRAMES] *= f


CLIP_OVERSHOOT_DB = 0.5
"""The block model takes a clipped block's true peak this far above the clipper's threshold (the
inter-sample overshoot of flattened peaks; the measured loudness corrects the model after a render)."""

MAX_DISTORTION_DB = -10.0
"""Default distortion budget: the loudness stage's non-linear residual in the loudest 10 % of
400 ms blocks, relative to the output (dB; :func:`automix.mastering.distortion.gain_residual`).
Loud commercial references ask for it: real game-soundtrack masters driven to -8 to -9 LUFS
references at a -1 dBTP ceiling measured -22.4 to -10.6 dB (the whole 4-min Beach track to
-8.6 LUFS: -10.6 dB; a 90-s arctic_breeze excerpt to -8.9 LUFS: -11.9 dB)."""


def land_loudness(x: np.ndarray, sample_rate: int, target_lufs: float, *, ceiling_dbtp: float = -1.0,
                  limiter: bool = True, max_limiting_db: float = 6.0, lookahead_ms: float = 5.0,
                  release_ms: float = 150.0, tolerance_lu: float = 0.03, max_iterations: int = 10,
                  in_place: bool = False, render: Callable[[], np.ndarray] | None = None,
                  clip_db: float | None = None, knee_db: float = KNEE_DB,
                  max_distortion_db: float | None = None) -> Landing:
    """Drive ``x`` into the loudness stage (optional soft clipper, then the true-peak limiter) so that
    the output lands on ``target_lufs``.

    Parameters
    ----------
    x : np.ndarray
        ``(channels, T)`` the chain's output before the limiter.
    sample_rate : int
        Hz.
    target_lufs : float
        Wanted integrated loudness (LUFS).
    ceiling_dbtp : float
        Limiter ceiling (dBTP).
    limiter : bool
        False: plain gain, no limiter (the peaks may exceed 0 dBFS: export as float).
    max_limiting_db : float
        Most limiter gain reduction allowed (dB); beyond it the level stops short of the target.
    tolerance_lu : float
        Aim: ``|loudness - target|`` below this.
    in_place : bool
        Write the master into ``x`` (float32, C-contiguous) instead of a new array: no second
        whole-signal copy for long files.
    render : callable, optional
        With ``in_place``: returns a fresh copy of ``x`` for the rare second full-rate render
        (without it, an in-place landing keeps its first render).
    clip_db : float, optional
        Soft clipper ahead of the limiter (:mod:`automix.mastering.clipper`), its threshold this many dB
        above the ceiling's level; None: limiter only.
    knee_db : float
        The clipper's knee (dB).
    max_distortion_db : float, optional
        Distortion budget (see :data:`MAX_DISTORTION_DB`): when the loudness asked for would push the
        stage's residual in the loudest passages above it, the level stops where the residual meets the
        budget, and a warning says how loud it got, what was asked and what the rest would cost.
        Not applied in place (no copy of the input to measure against).

    Returns
    -------
    Landing
    """
    from automix.loudness import integrated_loudness

    x = np.asarray(x, dtype=np.float32)
    if in_place and not (x.flags.c_contiguous and x.flags.writeable):
        x, in_place = np.ascontiguousarray(x), False
    ceiling = 10.0 ** (ceiling_dbtp / 20.0)
    model = LevelModel(x, sample_rate, lookahead_ms, release_ms)
    start = model.lufs(0.0, None)
    if not math.isfinite(start):
        from automix.errors import MasteringError
        raise MasteringError("the audio is too quiet or too short to measure its loudness")
    drive = target_lufs - start
    if not limiter:
        out = x if in_place else x.copy()
        _scale_blocks(out, _db_gain(drive))
        return Landing(out, drive, integrated_loudness(out, sample_rate), detected_true_peak_dbtp(out), 0.0, 1, True)
    clip_level = None if clip_db is None else ceiling * _db_gain(clip_db)
    if clip_level is not None:
        model.clip_peak = clip_level * _db_gain(CLIP_OVERSHOOT_DB)
    stage = _Stage(sample_rate, ceiling_dbtp, lookahead_ms, release_ms, clip_level, knee_db)

    # interpolated peaks matter only where they can reach the ceiling: detect for drives up to
    # ``covered`` dB, and detect again (lower threshold) if the iteration needs more drive
    covered = drive + max_limiting_db + 3.0
    model.detect(0.9 * min(ceiling, clip_level or ceiling) / _db_gain(covered))
    warnings: list[str] = []
    iterations = renders = 0
    if not in_place and clip_level is not None:
        excerpt = Excerpt(x, model.hop)
        if excerpt.worth_it:  # the tries run on an excerpt, the whole signal is rendered once (rarely twice)
            for _round in range(3):
                drive, reached, n = _iterate(model, drive, target_lufs, ceiling_dbtp, max_limiting_db, tolerance_lu,
                                             max_iterations)
                iterations += n
                if drive <= covered:
                    break
                covered = drive + max_limiting_db + 3.0
                model.detect(0.9 * min(ceiling, clip_level) / _db_gain(covered))
            return _land_on_excerpt(x, model, stage, excerpt, drive, target_lufs, tolerance_lu, max_limiting_db,
                                    max_distortion_db, iterations, clip_db)
    out = None
    dirty = False  # x holds an in-place render, no longer the input
    for _round in range(4):
        if dirty:  # another render: from a fresh copy of the input
            if render is None:
                break
            out = x = model.x = None
            x = model.x = np.ascontiguousarray(render(), dtype=np.float32)
            dirty = False
        drive, reached, n = _iterate(model, drive, target_lufs, ceiling_dbtp, max_limiting_db, tolerance_lu,
                                     max_iterations)
        iterations += n
        if drive > covered and _round < 3:
            covered = drive + max_limiting_db + 3.0
            model.detect(0.9 * min(ceiling, clip_level or ceiling) / _db_gain(covered))
            continue
        out = x if in_place else (out if out is not None else np.empty_like(x))
        lufs, tp, reduction_db = stage.render(x, out, drive, model)
        renders += 1
        dirty = in_place
        # the model (K-weighting before the block-rate gain) is a close approximation: correct its bias
        model.bias += lufs - model.lufs(drive, model.gain(drive, ceiling_dbtp))
        # in place another render reads and renders the whole input again: a landing within the
        # advertised 0.1 LU is kept
        if abs(lufs - target_lufs) <= tolerance_lu or not reached or (in_place and clip_level is not None):
            break
    if not in_place and clip_level is not None and reached:
        # the clipper's loss of loudness grows with the drive (the model leaves it out): secant on the
        # measured renders from here
        history = [(drive, lufs)]
        for _ in range(6):
            if abs(lufs - target_lufs) <= tolerance_lu:
                break
            slope = 0.7
            if len(history) >= 2:
                (d0, l0), (d1, l1) = history[-2], history[-1]
                if abs(d1 - d0) > 1e-6:
                    slope = min(1.0, max(0.1, (l1 - l0) / (d1 - d0)))
            drive += float(np.clip((target_lufs - lufs) / slope, -6.0, 6.0))
            lufs, tp, reduction_db = stage.render(x, out, drive, model)
            renders += 1
            history.append((drive, lufs))
    if in_place and clip_level is not None and reached:
        # in place, another render would read and render the whole input again: the clipper's loss of
        # loudness (which the model leaves out) is made up by passing the master itself through the stage
        # again with the missing gain (it only touches the peaks that now go over)
        for _ in range(2):
            if abs(lufs - target_lufs) <= tolerance_lu or abs(lufs - target_lufs) > 1.0:
                break
            step = (target_lufs - lufs) * (1.15 if lufs < target_lufs else 1.0)
            lufs, tp, extra = stage.render(out, out, step, None)
            drive += step
            reduction_db += extra
    distortion = None if in_place else gain_residual(x, out, sample_rate)
    asked = asked_lufs = None
    if (max_distortion_db is not None and distortion is not None and reached
            and distortion.loud_db > max_distortion_db + 0.05):
        asked, asked_lufs = distortion, lufs
        drive, lufs, tp, reduction_db, distortion, n = _back_off(stage, model, x, out, drive, distortion,
                                                                  max_distortion_db)
        renders += n
        reached = False
        warnings.append(
            f"reached {lufs:.1f} LUFS of the {target_lufs:.1f} LUFS asked ({asked_lufs - lufs:.1f} LU more was asked): "
            f"the rest would raise the distortion in the loudest passages from {distortion.loud_db:.1f} dB to "
            f"{asked.loud_db:.1f} dB (non-linear residual; budget {max_distortion_db:g} dB); "
            f"--max-distortion {math.ceil(asked.loud_db + 0.5):g} goes further")
    elif abs(lufs - target_lufs) > 0.1 and lufs < target_lufs and reduction_db >= max_limiting_db - 0.1:
        reached = False
        warnings.append(
            f"target {target_lufs:.1f} LUFS would need more than {max_limiting_db:g} dB of limiting; "
            f"stopped at the safe level {lufs:.1f} LUFS (raise --max-limiting or lower the target)")
    elif abs(lufs - target_lufs) > 0.1:
        warnings.append(f"loudness landed at {lufs:.2f} LUFS, {lufs - target_lufs:+.2f} LU from the target")
    clip_reduction = 0.0
    if clip_level is not None:
        clip_reduction = max(0.0, 20.0 * math.log10(max(float(model.block_peaks.max()), 1e-30) * _db_gain(drive)
                                                    / clip_level))
    return Landing(samples=out, drive_db=float(drive), integrated_lufs=float(lufs), true_peak_dbtp=float(tp),
                   max_gain_reduction_db=reduction_db, iterations=iterations,
                   reached=reached and abs(lufs - target_lufs) <= 0.1, renders=renders, warnings=warnings,
                   clip_db=clip_db, clip_reduction_db=clip_reduction, distortion=distortion,
                   asked_distortion=asked, asked_lufs=asked_lufs)


def _back_off(stage: "_Stage", model: LevelModel, x: np.ndarray, out: np.ndarray, drive: float,
              distortion: Residual, budget_db: float, max_renders: int = 4):
    """Lower the drive until the stage's loud-block residual meets ``budget_db`` (secant on measured
    renders); returns ``(drive, LUFS, dBTP, gain reduction dB, Residual, renders)`` of the loudest
    render within the budget."""
    high_d, high_r = drive, distortion.loud_db
    best = None
    d = drive - max(0.5, (high_r - budget_db) / 2.0)  # the residual grows about 2 dB per dB of drive
    renders = 0
    low = None
    for renders in range(1, max_renders + 1):
        lufs, tp, reduction = stage.render(x, out, d, model)
        dist = gain_residual(x, out, stage.sample_rate)
        if dist.loud_db <= budget_db + 0.05:
            if best is None or d > best[0]:
                best = (d, lufs, tp, reduction, dist)
            low = (d, dist.loud_db)
            if dist.loud_db >= budget_db - 0.3:
                break
        else:
            high_d, high_r = d, dist.loud_db
        ref = low if low is not None else (d, dist.loud_db)
        slope = (high_r - ref[1]) / (high_d - ref[0]) if abs(high_d - ref[0]) > 1e-6 else 2.0
        slope = min(8.0, max(0.5, slope))
        d = ref[0] + (budget_db - 0.1 - ref[1]) / slope
        if best is not None:
            d = min(d, high_d - 0.02)
    if best is None:  # not met after max_renders: quieter until it is (rare; a plain step each)
        while best is None:
            d -= 1.0
            lufs, tp, reduction = stage.render(x, out, d, model)
            dist = gain_residual(x, out, stage.sample_rate)
            renders += 1
            if dist.loud_db <= budget_db + 0.05 or d < drive - 30:
                best = (d, lufs, tp, reduction, dist)
    elif best[0] != d:
        d, lufs, tp, reduction, dist = best
        lufs, tp, reduction = stage.render(x, out, d, model)  # the kept render is the last one written
        renders += 1
    return best[0], lufs, tp, reduction, dist, renders


def _secant_slope(history: list[tuple[float, float]], default: float, lo: float, hi: float) -> float:
    """Slope of the last two ``(drive, value)`` points, clipped to ``lo .. hi`` (``default`` with fewer)."""
    if len(history) >= 2:
        (d0, v0), (d1, v1) = history[-2], history[-1]
        if abs(d1 - d0) > 1e-6:
            return min(hi, max(lo, (v1 - v0) / (d1 - d0)))
    return default


FULL_TOLERANCE_LU = 0.05
"""A whole-signal render of the excerpt landing within this of the target is kept (LU); one further
than it is corrected by a second render."""


def _land_on_excerpt(x: np.ndarray, model: LevelModel, stage: "_Stage", excerpt: Excerpt, drive: float,
                     target_lufs: float, tolerance_lu: float, max_limiting_db: float, max_distortion_db: float | None,
                     iterations: int, clip_db: float | None, max_trials: int = 8) -> Landing:
    """The clipper landing with its tries on ``excerpt`` (:mod:`automix.mastering.subset`): secant on the
    predicted loudness, then (over the distortion budget) on the loud-block residual; then one render of
    the whole signal, measured exactly, and one correcting render if it missed."""
    from automix.loudness import gated_integrated

    sr = stage.sample_rate
    trials: list[tuple[Trial, float]] = []
    excerpt.fit_features(*model.hop_features())

    def trial(d: float) -> Trial:
        reduction = stage.render_excerpt(excerpt, d, model)
        measured = excerpt.kept_hop_energies(excerpt.out, sr)
        hops = model.hop_energies(d, model.gain(d, stage.ceiling_dbtp))
        overall, loud = excerpt.residual(excerpt.out)
        t = Trial(d, gated_integrated(excerpt.predict(hops, measured), excerpt.hop),
                  gated_integrated(measured, excerpt.hop), loud, overall)
        trials.append((t, reduction))
        return t

    reached = True
    history: list[tuple[float, float]] = []
    t = None
    for _ in range(max_trials):
        t = trial(drive)
        reduction = trials[-1][1]
        if reduction > max_limiting_db + 0.05:
            drive -= reduction - max_limiting_db
            reached = False
            continue
        history.append((drive, t.lufs))
        error = target_lufs - t.lufs
        if abs(error) <= tolerance_lu * 0.5 or (error > 0 and not reached):
            break
        drive += float(np.clip(error / _secant_slope(history, 0.7, 0.1, 1.0), -6.0, 6.0))
    asked = asked_lufs = None
    budget_stop = False
    if max_distortion_db is not None and reached and t.loud_db > max_distortion_db + 0.05:
        asked, asked_lufs = t, t.lufs
        drive = _back_off_excerpt(trial, drive, t.loud_db, max_distortion_db)
        budget_stop = True
    # the whole signal, once; measured exactly (the excerpt's arrays are freed first)
    share = excerpt.share
    excerpt.release()
    out = np.empty_like(x)
    lufs, tp, reduction_db = stage.render(x, out, drive, model)
    renders = 1
    distortion = gain_residual(x, out, sr)
    if budget_stop:
        measured = [(drive, distortion.loud_db)]
        for _ in range(2):  # the excerpt read low: step back (secant on the whole renders' residual)
            if distortion.loud_db <= max_distortion_db + 0.05:
                break
            slope = _secant_slope(measured, 2.0, 0.3, 8.0)
            drive -= (distortion.loud_db - max_distortion_db + 0.1) / slope
            lufs, tp, reduction_db = stage.render(x, out, drive, model)
            distortion = gain_residual(x, out, sr)
            measured.append((drive, distortion.loud_db))
            renders += 1
    elif reached and abs(lufs - target_lufs) > FULL_TOLERANCE_LU:
        drive += float(np.clip((target_lufs - lufs) / _secant_slope(history, 0.7, 0.1, 1.0), -3.0, 3.0))
        lufs, tp, reduction_db = stage.render(x, out, drive, model)
        distortion = gain_residual(x, out, sr)
        renders += 1
    warnings: list[str] = []
    if budget_stop:
        reached = False
        asked_residual = Residual(overall_db=asked.overall_db, loud_db=asked.loud_db, taps=1, iterations=0)
        warnings.append(
            f"reached {lufs:.1f} LUFS of the {target_lufs:.1f} LUFS asked ({target_lufs - lufs:.1f} LU more was asked): "
            f"the rest would raise the distortion in the loudest passages from {distortion.loud_db:.1f} dB to "
            f"{asked.loud_db:.1f} dB (non-linear residual; budget {max_distortion_db:g} dB); "
            f"--max-distortion {math.ceil(asked.loud_db + 0.5):g} goes further")
    else:
        asked_residual = None
        if abs(lufs - target_lufs) > 0.1 and lufs < target_lufs and not reached:
            warnings.append(
                f"target {target_lufs:.1f} LUFS would need more than {max_limiting_db:g} dB of limiting; "
                f"stopped at the safe level {lufs:.1f} LUFS (raise --max-limiting or lower the target)")
        elif abs(lufs - target_lufs) > 0.1:
            warnings.append(f"loudness landed at {lufs:.2f} LUFS, {lufs - target_lufs:+.2f} LU from the target")
    clip_reduction = max(0.0, 20.0 * math.log10(max(float(model.block_peaks.max()), 1e-30) * _db_gain(drive)
                                                / stage.clip_level))
    return Landing(samples=out, drive_db=float(drive), integrated_lufs=float(lufs), true_peak_dbtp=float(tp),
                   max_gain_reduction_db=reduction_db, iterations=iterations + len(trials),
                   reached=reached and abs(lufs - target_lufs) <= 0.1, renders=renders, warnings=warnings,
                   clip_db=clip_db, clip_reduction_db=clip_reduction, distortion=distortion,
                   asked_distortion=asked_residual, asked_lufs=asked_lufs if budget_stop else None,
                   excerpt_share=share)


def _back_off_excerpt(trial: Callable[[float], Trial], drive: float, loud_db: float, budget_db: float,
                      max_trials: int = 6) -> float:
    """The highest drive whose excerpt residual in the loudest blocks meets ``budget_db`` (secant on the
    excerpt's trials; the residual grows about 2 dB per dB of drive)."""
    high = (drive, loud_db)
    low: tuple[float, float] | None = None
    d = drive - max(0.5, (loud_db - budget_db) / 2.0)
    for _ in range(max_trials):
        t = trial(d)
        if t.loud_db <= budget_db + 0.05:
            if low is None or d > low[0]:
                low = (d, t.loud_db)
            if t.loud_db >= budget_db - 0.3:
                break
        else:
            high = (d, t.loud_db)
        ref = low if low is not None else (d, t.loud_db)
        slope = (high[1] - ref[1]) / (high[0] - ref[0]) if abs(high[0] - ref[0]) > 1e-6 else 2.0
        d = ref[0] + (budget_db - 0.1 - ref[1]) / min(8.0, max(0.5, slope))
        if low is not None:
            d = min(d, high[0] - 0.02)
    while low is None:  # rare: quieter in plain steps until it is met
        d -= 1.0
        t = trial(d)
        if t.loud_db <= budget_db + 0.05 or d < drive - 30:
            low = (d, t.loud_db)
    return low[0]


class _Stage:
    """The loudness stage at full rate: drive -> (soft clipper) -> true-peak limiter, into ``out``."""

    def __init__(self, sample_rate: int, ceiling_dbtp: float, lookahead_ms: float, release_ms: float,
                 clip_level: float | None, knee_db: float):
        self.sample_rate, self.ceiling_dbtp = sample_rate, ceiling_dbtp
        self.lookahead_ms, self.release_ms = lookahead_ms, release_ms
        self.clip_level, self.knee_db = clip_level, knee_db

    @property
    def floor(self) -> float:
        """Envelopes the stage limits from are exact at and above this level (linear)."""
        return FLOOR_SHARE * 10.0 ** (self.ceiling_dbtp / 20.0)

    def render_excerpt(self, excerpt: Excerpt, drive_db: float, model: LevelModel) -> float:
        """Clipper and limiter over ``excerpt.samples`` into ``excerpt.out`` (no verification: a trial);
        returns the limiter's largest gain reduction (dB)."""
        g = _db_gain(drive_db)
        if excerpt.peaks is None or excerpt.threshold != model.threshold:
            excerpt.peaks, excerpt.threshold = detect_peaks(excerpt.samples, model.threshold), model.threshold
        if model.threshold * g <= self.floor * 1.0001:
            smallest, _ = self._clip_limit(excerpt.samples, excerpt.out, g, excerpt.peaks)
        else:
            soft_clip(excerpt.samples, self.clip_level, knee_db=self.knee_db, gain=g, out=excerpt.out)
            smallest = limit_blocks(excerpt.out, excerpt.out, self.sample_rate, self.ceiling_dbtp, self.lookahead_ms,
                                    self.release_ms)
        return max(0.0, -20.0 * math.log10(max(smallest, 1e-30)))

    def _clip_limit(self, x: np.ndarray, out: np.ndarray, g: float, peaks: np.ndarray,
                    stats: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """Clipper at linear drive ``g`` then one limiter pass, ``x`` into ``out`` (not in place), with
        ``peaks`` the envelope of ``x`` exact at and above ``floor / g``. Returns ``(smallest gain, envelope of
        the clipper's output)``.

        The clipper is linear below its knee: there the clipped signal's envelope is the input's times the
        drive; it is detected only in the detector blocks within reach of a sample the clipper bent."""
        from automix.mastering import profile
        from automix.mastering.limiter import BOUND_BLOCK, _block_stats

        knee = self.clip_level * 10.0 ** (-max(self.knee_db, 1e-3) / 20.0) / g
        step = profile.BLOCK_FRAMES  # a multiple of BOUND_BLOCK
        clipping = np.zeros(-(-x.shape[-1] // BOUND_BLOCK), bool)  # per detector block: a sample bent
        for start in range(0, x.shape[-1], step):
            sl = slice(start, start + step)
            bent = _block_stats(np.abs(x[:, sl]).max(axis=0) > knee, BOUND_BLOCK, np.logical_or)
            clipping[start // BOUND_BLOCK: start // BOUND_BLOCK + bent.size] = bent
            soft_clip(x[:, sl], self.clip_level, knee_db=self.knee_db, gain=g, out=out[:, sl])
        envelope = _clipped_envelope(out, peaks, np.float32(g), clipping, self.floor)
        smallest = limit_blocks(out, out, self.sample_rate, self.ceiling_dbtp, self.lookahead_ms, self.release_ms,
                                peaks=envelope, stats=stats)
        return smallest, envelope

    def render(self, x: np.ndarray, out: np.ndarray, drive_db: float, model: LevelModel) -> tuple[float, float, float]:
        """Returns ``(LUFS, dBTP, limiter gain reduction dB)`` of ``out``."""
        if self.clip_level is None:
            return _render(x, out, self.sample_rate, drive_db, model, self.ceiling_dbtp, self.lookahead_ms,
                           self.release_ms)
        from automix.mastering import profile

        g = _db_gain(drive_db)
        if not (model is not None and model.peaks is not None and x is not out
                and model.threshold * g <= self.floor * 1.0001):
            for start in range(0, x.shape[-1], profile.BLOCK_FRAMES):  # in place when out is x: block by block
                sl = slice(start, start + profile.BLOCK_FRAMES)
                soft_clip(x[:, sl], self.clip_level, knee_db=self.knee_db, gain=g, out=out[:, sl])
            return _render(out, out, self.sample_rate, 0.0, None, self.ceiling_dbtp, self.lookahead_ms,
                           self.release_ms)
        from automix.mastering.limiter import BOUND_BLOCK

        stats = np.empty((3, -(-x.shape[-1] // BOUND_BLOCK)), np.float32)
        smallest, envelope = self._clip_limit(x, out, g, model.peaks, stats=stats)
        reduction_db = -20.0 * math.log10(max(smallest, 1e-30))
        held, tp = bounded_peak_dbtp(out, envelope, stats, self.ceiling_dbtp, self.floor)
        envelope = None
        if held > self.ceiling_dbtp:
            tp = held  # over by the bound: the passes of _finish read it exactly and repeat
        elif tp < self.ceiling_dbtp - 1.0:  # far under the ceiling: the exact reading for the report
            tp = verified_peak_dbtp(out, self.ceiling_dbtp)
        return _finish(out, self.sample_rate, self.ceiling_dbtp, self.lookahead_ms, self.release_ms, tp, reduction_db)


FLOOR_SHARE = 0.9
"""Envelopes of the final render are exact at and above this share of the ceiling (linear)."""


def _clipped_envelope(clipped: np.ndarray, peaks: np.ndarray, drive: np.float32, clipping: np.ndarray,
                      floor: float) -> np.ndarray:
    """Detector envelope of the clipper's output ``clipped``: ``drive * peaks`` (the input's envelope) except in
    the detector blocks within reach of a block with a sample the clipper bent (``clipping``, per
    :data:`~automix.mastering.limiter.BOUND_BLOCK` samples), detected there."""
    from automix.mastering.limiter import BOUND_BLOCK, _neighbours

    envelope = peaks * drive
    flagged = np.flatnonzero(_neighbours(clipping, np.logical_or))
    if flagged.size:
        breaks = np.flatnonzero(np.diff(flagged) > 1)
        starts = np.concatenate([[flagged[0]], flagged[breaks + 1]]) * BOUND_BLOCK
        stops = (np.concatenate([flagged[breaks], [flagged[-1]]]) + 1) * BOUND_BLOCK
        frames = clipped.shape[-1]
        for b0, b1 in zip(starts, stops):
            b1 = min(frames, int(b1))
            envelope[b0:b1] = detect_peaks(clipped, floor, start=int(b0), stop=b1)
    return envelope


def _render(x: np.ndarray, out: np.ndarray, sample_rate: int, drive_db: float, model: LevelModel | None,
            ceiling_dbtp: float, lookahead_ms: float, release_ms: float,
            max_passes: int = 3) -> tuple[float, float, float]:
    """Full-rate limiting of ``x`` at ``drive_db`` into ``out``; returns ``(LUFS, dBTP, gain reduction dB)``.

    The first pass uses the model's detector (``model`` None: detects as it goes, only where the
    peaks can reach the ceiling); if the measured true peak is still above the ceiling (the gain's
    own modulation), further passes run on the output, then a plain trim.
    """
    from automix.loudness import integrated_loudness

    smallest = limit_blocks(x, out, sample_rate, ceiling_dbtp, lookahead_ms, release_ms, level=_db_gain(drive_db),
                            threshold=None if model is None else model.threshold,
                            peaks=None if model is None else model.peaks)
    reduction_db = -20.0 * math.log10(max(smallest, 1e-30))
    tp = verified_peak_dbtp(out, ceiling_dbtp)
    return _finish(out, sample_rate, ceiling_dbtp, lookahead_ms, release_ms, tp, reduction_db, max_passes)


def _finish(out: np.ndarray, sample_rate: int, ceiling_dbtp: float, lookahead_ms: float, release_ms: float,
            tp: float, reduction_db: float, max_passes: int = 3) -> tuple[float, float, float]:
    """After a limiter pass read ``tp`` dBTP: further passes on the output while it is over the ceiling, then
    a plain trim; returns ``(LUFS, dBTP, gain reduction dB)``."""
    from automix.loudness import integrated_loudness

    passes = 1
    while tp > ceiling_dbtp and passes < max_passes:
        smallest = limit_blocks(out, out, sample_rate, ceiling_dbtp - 0.02 * passes, lookahead_ms, release_ms)
        reduction_db += -20.0 * math.log10(max(smallest, 1e-30))
        passes += 1
        tp = verified_peak_dbtp(out, ceiling_dbtp)
    while tp > ceiling_dbtp:  # safety stage: a plain level trim
        step = (tp - ceiling_dbtp) + 0.01
        _scale_blocks(out, _db_gain(-step))
        reduction_db += step
        tp = verified_peak_dbtp(out, ceiling_dbtp)
    return integrated_loudness(out, sample_rate), tp, max(0.0, reduction_db)
