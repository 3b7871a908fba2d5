"""Loudness that lands: find the gain into the limiter that gives the target loudness after limiting.

Limiting lowers loudness by an amount that grows with the drive, so a single gain step
misses the target. :func:`land_loudness` iterates: measure the integrated loudness after
the limiter, correct the drive by the error divided by the measured slope (secant
method), until the error is below ``tolerance_lu`` (0.03 LU by default, well inside the
promised +-0.1 LU). The peak envelope is detected once (it scales with the drive), so an
iteration costs one look-ahead pass and one loudness measurement.

When the target needs more than ``max_limiting_db`` of gain reduction, the drive stops
at the highest level that stays within it and the result carries a warning saying how
far from the target it is (a musician then decides: lower target or accept more limiting).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from automix.mastering.limiter import detect_peaks, gain_from_peaks, limit_true_peak


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
        Measured true peak of ``samples``.
    max_gain_reduction_db : float
        Largest limiter gain reduction (dB).
    iterations : int
    reached : bool
        False when the target was not reached because of ``max_limiting_db``.
    warnings : list of str
    """

    samples: np.ndarray
    drive_db: float
    integrated_lufs: float
    true_peak_dbtp: float
    max_gain_reduction_db: float
    iterations: int
    reached: bool
    limiter_gain: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)


def _db_gain(db: float) -> float:
    return 10.0 ** (db / 20.0)


class _FastLoudness:
    """Integrated loudness of ``x * 10**(drive/20) * gain[t]`` without re-filtering: the
    K-weighting (linear, short) is applied to ``x`` once and the slowly varying limiter gain
    afterwards. ``bias`` (LU) holds the measured difference to the exact meter."""

    def __init__(self, x: np.ndarray, sample_rate: int):
        from scipy.signal import sosfilt

        from automix.loudness import HOP_S, k_weighting_sos

        from automix.mastering import profile

        sos = k_weighting_sos(int(sample_rate)).astype(np.float32)
        # filtered block by block with the filter state carried over (same result as one call,
        # without a whole-file K-weighted copy); float32 (memory): hop sums are taken in float64
        self.k2 = np.empty(x.shape[-1], dtype=np.float32)
        zi = np.zeros((sos.shape[0], x.shape[0], 2), dtype=np.float32)
        for start in range(0, x.shape[-1], profile.BLOCK_FRAMES):
            k, zi = sosfilt(sos, x[:, start: start + profile.BLOCK_FRAMES], axis=-1, zi=zi)
            self.k2[start: start + k.shape[-1]] = np.einsum("ct,ct->t", k, k)
        self.hop = max(1, int(round(HOP_S * sample_rate)))
        self.bias = 0.0

    def lufs(self, drive_db: float, gain: np.ndarray | None) -> float:
        """Loudness (LUFS) with ``drive_db`` and the linear limiter gain ``gain`` ``(T,)`` (None: 1)."""
        from automix.loudness import gated_integrated

        from automix.mastering import profile

        hop = self.hop
        n = (self.k2.size // hop) * hop
        energies = np.empty(n // hop, dtype=np.float64)
        step = hop * max(1, profile.BLOCK_FRAMES // hop)
        for start in range(0, n, step):  # whole hops per block: no whole-file temporaries
            stop = min(n, start + step)
            e = self.k2[start:stop]
            if gain is not None:
                e = e * np.square(gain[start:stop], dtype=np.float32)
            energies[start // hop: stop // hop] = e.reshape(-1, hop).sum(axis=1, dtype=np.float64)
        energies *= 10.0 ** (drive_db / 10.0)
        return gated_integrated(energies, self.hop) + self.bias


def _iterate(peaks, meter, drive, target_lufs, sample_rate, ceiling_dbtp, lookahead_ms, release_ms,
             max_limiting_db, tolerance_lu, max_iterations) -> tuple[float, bool, int, np.ndarray | None]:
    """Secant iteration of the drive on the fast meter; returns ``(drive, reached, iterations, gain)``
    where ``gain`` is the limiter gain at the returned drive if it was computed (else None)."""
    history: list[tuple[float, float]] = []
    reached = True
    iterations = 0
    for iterations in range(1, max_iterations + 1):
        gain = gain_from_peaks(peaks, sample_rate, ceiling_dbtp, lookahead_ms, release_ms, level=_db_gain(drive))
        reduction = max(0.0, float(-20.0 * np.log10(max(gain.min(), 1e-30))))
        if reduction > max_limiting_db + 0.05:
            drive -= reduction - max_limiting_db  # gain reduction grows about 1:1 with the drive
            reached = False
            continue
        lufs = meter.lufs(drive, gain)
        error = target_lufs - lufs
        history.append((drive, lufs))
        if abs(error) <= tolerance_lu * 0.5:
            return drive, True, iterations, gain
        if error > 0 and reduction >= max_limiting_db - 0.05:
            return drive, False, iterations, gain  # louder would need more limiting than allowed
        slope = 1.0
        if len(history) >= 2:
            (d0, l0), (d1, l1) = history[-2], history[-1]
            if abs(d1 - d0) > 1e-6:
                slope = min(1.0, max(0.2, (l1 - l0) / (d1 - d0)))
        step = error / slope
        if error > 0:
            step = min(step, max(0.0, max_limiting_db - reduction) / max(slope, 0.2) + 0.5 * step)
        drive += step
    return drive, reached, iterations, None


def land_loudness(x: np.ndarray, sample_rate: int, target_lufs: float, *, ceiling_dbtp: float = -1.0,
                  limiter: bool = True, max_limiting_db: float = 6.0, lookahead_ms: float = 5.0,
                  release_ms: float = 150.0, tolerance_lu: float = 0.03, max_iterations: int = 10) -> Landing:
    """Drive ``x`` into the true-peak limiter so that the output lands on ``target_lufs``.

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
        Most gain reduction allowed (dB); beyond it the level stops short of the target.
    tolerance_lu : float
        Stop when ``|loudness - target|`` is below this.

    Returns
    -------
    Landing
    """
    from automix.loudness import integrated_loudness, true_peak_dbtp

    x = np.asarray(x, dtype=np.float32)
    meter = _FastLoudness(x, sample_rate)
    start = meter.lufs(0.0, None)
    if not math.isfinite(start):
        from automix.errors import MasteringError
        raise MasteringError("the audio is too quiet or too short to measure its loudness")
    drive = target_lufs - start
    if not limiter:
        y = (x * np.float32(_db_gain(drive))).astype(np.float32)
        return Landing(y, drive, integrated_loudness(y, sample_rate), true_peak_dbtp(y, sample_rate), 0.0, 1, True)

    # interpolated peaks matter only where they can reach the ceiling: detect for drives up to
    # ``covered`` dB, and detect again (lower threshold) if the iteration needs more drive
    ceiling = 10.0 ** (ceiling_dbtp / 20.0)
    covered = drive + 3.0
    peaks = detect_peaks(x, threshold=0.9 * ceiling / _db_gain(covered))
    warnings: list[str] = []
    reached = True
    result = None
    iterations = 0
    for _round in range(4):
        drive, reached, n, gain = _iterate(peaks, meter, drive, target_lufs, sample_rate, ceiling_dbtp,
                                           lookahead_ms, release_ms, max_limiting_db, tolerance_lu, max_iterations)
        iterations += n
        if drive > covered:
            covered = drive + max_limiting_db + 3.0
            peaks = detect_peaks(x, threshold=0.9 * ceiling / _db_gain(covered))
            continue
        if gain is None:
            gain = gain_from_peaks(peaks, sample_rate, ceiling_dbtp, lookahead_ms, release_ms, level=_db_gain(drive))
        result = None  # the previous round's output is freed before the next one is made
        result = limit_true_peak(x, sample_rate, ceiling_dbtp, lookahead_ms, release_ms, first_gain=gain,
                                 input_gain=_db_gain(drive))
        lufs = integrated_loudness(result.samples, sample_rate)
        # the fast meter (K-weighting before the limiter gain) is a close approximation: correct its bias
        bias = lufs - meter.lufs(drive, result.gain)
        meter.bias += bias
        if abs(lufs - target_lufs) <= tolerance_lu or not reached:
            break
    y = result.samples
    if abs(lufs - target_lufs) > 0.1 and lufs < target_lufs and result.max_gain_reduction_db >= max_limiting_db - 0.1:
        reached = False
        warnings.append(
            f"target {target_lufs:.1f} LUFS would need more than {max_limiting_db:g} dB of limiting; "
            f"stopped at the safe level {lufs:.1f} LUFS (raise --max-limiting or lower the target)")
    elif abs(lufs - target_lufs) > 0.1:
        warnings.append(f"loudness landed at {lufs:.2f} LUFS, {lufs - target_lufs:+.2f} LU from the target")
    return Landing(samples=y, drive_db=float(drive), integrated_lufs=float(lufs),
                   true_peak_dbtp=float(result.true_peak_dbtp), max_gain_reduction_db=result.max_gain_reduction_db,
                   iterations=iterations, reached=reached and abs(lufs - target_lufs) <= 0.1,
                   limiter_gain=result.gain, warnings=warnings)
