"""The mix model's features in numpy (inference without torch), and the feature constants.

:mod:`automix.model.features` computes the features in torch (training, and anything that
needs tensors); this module computes the same vector (:data:`FEATURE_NAMES`) in numpy for
``automix mix``, which runs without importing torch. The operations follow the torch ones
step for step, in float32 like them (power spectra, K-weighting, 400-ms blocks, gates, mel
bands); the two agree to float rounding (tests compare them on synthetic multitracks).

The constants below are the single declaration of the feature layout; the torch module
imports them from here.
"""
from __future__ import annotations

import math
import os
from functools import lru_cache

import numpy as np

#: Number of mel bands in the spectral-shape features.
N_MELS = 24
#: Lowest and highest mel band edges in Hz: the same at every rate from 22.05 kHz up
#: (below, the top is capped at Nyquist).
MEL_FMIN_HZ = 30.0
MEL_FMAX_HZ = 11000.0
#: Band (Hz) over which spectral centroid and flatness are measured: the same at every
#: sample rate from 22.05 kHz up, so features do not depend on the file's rate.
SPECTRAL_BAND_HZ = (30.0, 10000.0)
#: Analysis window in milliseconds (rounded to a power of two in samples).
WINDOW_MS = 46.0
#: Loudness gating block and hop (BS.1770: 400 ms blocks, 75 % overlap).
BLOCK_MS = 400.0
BLOCK_HOP_MS = 100.0
#: Level below which a signal counts as silence (absolute gate of BS.1770).
ABSOLUTE_GATE_LUFS = -70.0
#: Loudness reported for digital silence.
SILENCE_LUFS = -100.0

SCALARS: tuple[str, ...] = (
    "loudness_lufs",
    "loudness_range_lu",
    "active_fraction",
    "crest_db",
    "centroid_oct",
    "flatness_db",
    "width",
    "correlation",
    "balance",
)
FEATURE_NAMES: tuple[str, ...] = (
    SCALARS
    + tuple(f"mel_shape_{i}" for i in range(N_MELS))
    + tuple(f"mel_std_{i}" for i in range(N_MELS))
)
N_FEATURES = len(FEATURE_NAMES)

#: Division applied to each scalar so that network inputs are of order one.
SCALAR_SCALE: tuple[float, ...] = (20.0, 10.0, 1.0, 20.0, 2.0, 20.0, 1.0, 1.0, 1.0)
#: Division applied to the mel-band levels (dB).
MEL_SCALE = 20.0
#: Scalar features of digital silence (before scaling).
SILENT_SCALARS: tuple[float, ...] = (SILENCE_LUFS, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0)
EPS = 1e-10

_F32 = np.float32


def fft_size(sample_rate: int) -> int:
    """FFT size (power of two) closest to :data:`WINDOW_MS` at ``sample_rate``."""
    return 1 << max(6, round(math.log2(WINDOW_MS * 1e-3 * sample_rate)))


def mel_filterbank_array(n_freqs: int, f_min: float, f_max: float, n_mels: int, sample_rate: int) -> np.ndarray:
    """:func:`automix.model.features.mel_filterbank` in numpy: triangular HTK-mel filters
    ``[n_freqs, n_mels]`` float32 (unnormalised)."""
    all_freqs = np.linspace(0, sample_rate // 2, n_freqs, dtype=_F32)
    m_min = 2595.0 * math.log10(1.0 + f_min / 700.0)
    m_max = 2595.0 * math.log10(1.0 + f_max / 700.0)
    m_pts = np.linspace(m_min, m_max, n_mels + 2, dtype=_F32)
    f_pts = (_F32(700.0) * (_F32(10.0) ** (m_pts / _F32(2595.0)) - _F32(1.0))).astype(_F32)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts[None, :] - all_freqs[:, None]
    down = (_F32(-1.0) * slopes[:, :-2]) / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return np.maximum(_F32(0.0), np.minimum(down, up)).astype(_F32)


def k_weighting_power(n_fft: int, sample_rate: int) -> np.ndarray:
    """|H(f)|^2 of the BS.1770 K-weighting at the ``n_fft // 2 + 1`` rfft bins (float64), as
    :func:`automix.evaluation.k_weighting_power_response` (numpy design and response)."""
    from automix.dsp.biquad import sos_response
    from automix.loudness import k_weighting_sos

    h = sos_response(np.asarray(k_weighting_sos(sample_rate), dtype=np.float64),
                     np.fft.rfftfreq(n_fft, 1.0 / sample_rate), sample_rate)
    return h.real ** 2 + h.imag ** 2


@lru_cache(maxsize=16)
def _setup(sample_rate: int):
    n_fft = fft_size(sample_rate)
    hop = n_fft // 2
    n = np.arange(n_fft, dtype=np.float64)
    window = (0.5 - 0.5 * np.cos(2.0 * math.pi * n / n_fft)).astype(_F32)  # periodic Hann, as torch's
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate).astype(_F32)
    side = np.full(freqs.shape, 2.0, dtype=_F32)
    side[0] = 1.0
    if n_fft % 2 == 0:
        side[-1] = 1.0
    norm = side / (_F32(n_fft) * np.square(window).sum(dtype=_F32))
    k_weight = (k_weighting_power(n_fft, sample_rate).astype(_F32) * norm).astype(_F32)
    fmax = min(MEL_FMAX_HZ, sample_rate / 2.0)
    mel = mel_filterbank_array(n_fft // 2 + 1, MEL_FMIN_HZ, fmax, N_MELS, sample_rate)
    band = np.nonzero((freqs >= SPECTRAL_BAND_HZ[0]) & (freqs <= SPECTRAL_BAND_HZ[1]))[0]
    return n_fft, hop, window, freqs, k_weight, mel, band


@lru_cache(maxsize=1)
def _pocketfft_r2c():
    """scipy's pocketfft real-to-complex transform, loaded without importing ``scipy.fft`` (whose
    package imports ``scipy.special``: 0.2-0.25 s of start-up), or None where that fails.

    It transforms many rows at once with SIMD (4x faster than ``numpy.fft.rfft`` here on the
    frames of a spectrogram: 11 vs 48 ms for 2 x 1400 frames of 2048) and releases the GIL.
    """
    try:
        import importlib.util
        from pathlib import Path

        import scipy

        folder = Path(scipy.__file__).parent / "fft" / "_pocketfft"
        path = next(p for p in folder.iterdir() if p.name.startswith("pypocketfft.") and p.suffix in (".so", ".pyd"))
        spec = importlib.util.spec_from_file_location("scipy.fft._pocketfft.pypocketfft", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        probe = np.arange(8, dtype=_F32)
        if not np.allclose(module.r2c(probe, (0,), True, 0, None, 1), np.fft.rfft(probe), atol=1e-5):
            return None
        return module.r2c
    except Exception:  # noqa: BLE001 - another scipy layout: numpy's FFT instead
        return None


def real_fft(frames: np.ndarray) -> np.ndarray:
    """``numpy.fft.rfft(frames, axis=-1)`` for float32 ``frames`` as complex64 (scipy's pocketfft when
    it loads, see :func:`_pocketfft_r2c`)."""
    r2c = _pocketfft_r2c()
    if r2c is not None:
        return r2c(np.ascontiguousarray(frames, dtype=_F32), (frames.ndim - 1,), True, 0, None, 1)
    return np.fft.rfft(frames, axis=-1).astype(np.complex64, copy=False)


def _gated_mean(values: np.ndarray, weights: np.ndarray, axis: int = -1) -> np.ndarray:
    total = weights.sum(axis)
    return (values * weights).sum(axis) / np.maximum(total, _F32(EPS))


def _log10(x) -> np.ndarray:
    return np.log10(x).astype(_F32)


#: Frames of the spectrogram transformed at a time (their temporaries stay in the CPU's caches).
_CHUNK_FRAMES = 64


def _frame_powers(x: np.ndarray, sample_rate: int):
    """From the STFT of ``x[C, T]``, chunk by chunk (no whole-signal spectrogram in memory):
    K-weighted power per frame summed over channels ``[frames]``, the channels' mean power
    spectrum ``[frames, bins]``, each channel's energy ``[C]`` and ``Re sum(L conj(R))``."""
    n_fft, hop, window, _, k_weight, _, _ = _setup(sample_rate)
    if x.shape[-1] < n_fft:
        x = np.pad(x, ((0, 0), (0, n_fft - x.shape[-1])))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft, axis=-1)[:, ::hop]  # [C, F, n_fft] view
    n_ch, n_frames, n_bins = frames.shape[0], frames.shape[1], n_fft // 2 + 1
    frame_ms = np.empty(n_frames, _F32)
    mono_power = np.empty((n_frames, n_bins), _F32)
    energy = np.zeros(n_ch, np.float64)
    cross = 0.0
    for start in range(0, n_frames, _CHUNK_FRAMES):
        stop = min(n_frames, start + _CHUNK_FRAMES)
        spec = real_fft(frames[:, start:stop] * window)  # [C, K, bins]
        power = np.square(spec.real) + np.square(spec.imag)
        frame_ms[start:stop] = (power.reshape(-1, n_bins) @ k_weight).reshape(n_ch, -1).sum(0)
        np.mean(power, axis=0, out=mono_power[start:stop])
        energy += power.sum(axis=(1, 2), dtype=np.float64)
        if n_ch >= 2:
            cross += float(np.vdot(spec[1].reshape(-1), spec[0].reshape(-1)).real)
    channel_energy = energy.astype(_F32)
    return frame_ms, mono_power, channel_energy, _F32(cross) if n_ch >= 2 else channel_energy[0]


def features_array(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Feature vector ``[N_FEATURES]`` float32 of one signal ``x[C, T]`` (C = 1 or 2), as
    :func:`automix.model.features.audio_features` computes it for one item."""
    x = np.asarray(x, dtype=_F32)
    n_fft, hop, _, freqs, k_weight, mel_fb, band = _setup(sample_rate)
    # the spectrogram's per-frame quantities: loudness (K-weighted frame power, channels summed),
    # the channels' mean power spectrum, each channel's energy and the left/right cross energy
    frame_ms, mono_power, channel_energy, cross = _frame_powers(x, sample_rate)
    per_block = max(1, round(BLOCK_MS * 1e-3 * sample_rate / hop))
    per_hop = max(1, round(BLOCK_HOP_MS * 1e-3 * sample_rate / hop))
    per_block = min(per_block, frame_ms.shape[-1])
    blocks = np.lib.stride_tricks.sliding_window_view(frame_ms, per_block)[::per_hop].mean(-1, dtype=_F32)
    block_lufs = _F32(-0.691) + _F32(10.0) * _log10(blocks + _F32(EPS))
    above_abs = (block_lufs > ABSOLUTE_GATE_LUFS).astype(_F32)
    ungated = _gated_mean(blocks, above_abs)
    rel_gate = _F32(-0.691) + _F32(10.0) * _log10(ungated + _F32(EPS)) - _F32(10.0)
    gate = above_abs * (block_lufs > rel_gate).astype(_F32)
    gated = _gated_mean(blocks, gate)
    lufs = _F32(-0.691) + _F32(10.0) * _log10(gated + _F32(EPS))
    lufs = _F32(SILENCE_LUFS) if gate.sum() == 0 else max(lufs, _F32(SILENCE_LUFS))

    active = gate.sum()
    mean_block = _gated_mean(block_lufs, gate)
    lra = np.sqrt(_gated_mean(np.square(block_lufs - mean_block), gate))
    active_fraction = _F32(active / _F32(gate.shape[-1]))

    frame_level = _F32(10.0) * _log10(mono_power.sum(-1) + _F32(EPS))
    peak_frame = frame_level.max()
    frame_w = (frame_level > max(peak_frame - _F32(60.0), _F32(-100.0))).astype(_F32)
    frame_w = frame_w * (frame_level > _F32(-110.0)).astype(_F32)
    has_frames = frame_w.sum() > 0

    band_power = mono_power[:, band]  # [frames, band bins]
    avg_spec = _gated_mean(band_power.T, frame_w[None, :])  # [band bins]
    total = avg_spec.sum()
    centroid_hz = (avg_spec @ freqs[band]) / max(total, _F32(EPS))
    centroid_oct = np.log2(max(centroid_hz, _F32(20.0)) / _F32(1000.0))
    log_p = np.log(band_power + _F32(EPS))
    frame_flat = np.exp(log_p.mean(-1)) / (band_power.mean(-1) + _F32(EPS))
    flatness_db = max(_F32(10.0) * _log10(_gated_mean(frame_flat, frame_w) + _F32(EPS)), _F32(-60.0))

    peak = max(x.max(), -x.min()) if x.size else _F32(0.0)
    mean_square = channel_energy.mean() / _F32(0.375 * n_fft * x.shape[-1])
    rms = np.sqrt(mean_square / max(active_fraction, _F32(1e-3)))
    crest_db = min(max(_F32(20.0) * _log10((peak + _F32(EPS)) / (rms + _F32(EPS))), _F32(0.0)), _F32(40.0))
    if x.shape[0] >= 2:
        e_l, e_r = channel_energy[0], channel_energy[1]
    else:
        e_l = e_r = cross = channel_energy[0]
    e_mid = _F32(0.25) * (e_l + e_r + _F32(2.0) * cross)
    e_side = _F32(0.25) * (e_l + e_r - _F32(2.0) * cross)
    width = np.clip(e_side / (e_mid + e_side + _F32(EPS)), 0.0, 1.0)
    correlation = np.clip(cross / np.sqrt(e_l * e_r + _F32(EPS)), -1.0, 1.0)
    balance = (e_r - e_l) / (e_l + e_r + _F32(EPS))

    mel_power = mono_power @ mel_fb  # [frames, mels]
    mel_db = _F32(10.0) * _log10(mel_power + _F32(EPS))
    mel_mean = _gated_mean(mel_db.T, frame_w[None, :])  # [mels]
    mel_shape = mel_mean - mel_mean.mean()
    mel_var = _gated_mean(np.square(mel_db - mel_mean[None, :]).T, frame_w[None, :])
    mel_std = np.sqrt(np.maximum(mel_var, _F32(0.0)))

    scalars = np.array([lufs, lra, active_fraction, crest_db, centroid_oct, flatness_db, width, correlation,
                        balance], dtype=_F32)
    if not has_frames or lufs <= SILENCE_LUFS:  # silence: a fixed, finite vector
        scalars = np.array(SILENT_SCALARS, dtype=_F32)
        mel_shape = np.zeros_like(mel_shape)
        mel_std = np.zeros_like(mel_std)
    out = np.concatenate([scalars / np.array(SCALAR_SCALE, dtype=_F32),
                          np.clip(mel_shape, -80, 80) / _F32(MEL_SCALE), np.clip(mel_std, 0, 60) / _F32(MEL_SCALE)])
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(out.astype(_F32), nan=0.0, posinf=0.0, neginf=0.0)


def _one_blas_thread():
    """Inside, numpy's BLAS runs single-threaded (threadpoolctl; a no-op without it).

    The analysis runs one item per CPU; BLAS threads of its own on top made each item's small
    matrix products wait for descheduled threads on a busy machine (measured on 2 loaded cores:
    110 ms per 30-s stereo stem at 48 kHz with OpenBLAS's 2 threads, 50 ms with one), as torch's
    per-operation threads did (:func:`automix.model.features.items_on_threads`).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def audio_features_array(x: np.ndarray, sample_rate: int, workers: int | None = None) -> np.ndarray:
    """Features ``[..., N_FEATURES]`` of ``x[..., C, T]``, one item at a time on ``workers`` threads
    (numpy's FFTs and matrix products release the GIL; default: the usable CPUs)."""
    x = np.asarray(x, dtype=_F32)
    lead = x.shape[:-2]
    items = x.reshape(-1, *x.shape[-2:])
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = max(1, min(int(workers), len(items)))
    _pocketfft_r2c()  # loaded once, here, not by two workers at a time
    with _one_blas_thread():
        if workers > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="features") as pool:
                feats = list(pool.map(lambda item: features_array(item, sample_rate), items))
        else:
            feats = [features_array(item, sample_rate) for item in items]
    return np.stack(feats).reshape(*lead, N_FEATURES) if feats else np.zeros((*lead, N_FEATURES), _F32)


def stem_features_array(stems: np.ndarray, sample_rate: int, workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`automix.model.features.stem_features` in numpy for stems ``[B, S, C, T]`` (every stem real).

    Returns ``([B, S, N_FEATURES + 1], [B, N_FEATURES])``: each stem's features and its loudness
    relative to the sum of the stems (LU / 20), and the features of that sum.
    """
    stems = np.asarray(stems, dtype=_F32)
    feats = audio_features_array(stems, sample_rate, workers)
    mix = stems.sum(1, dtype=_F32)
    mix_feats = audio_features_array(mix, sample_rate, workers)
    relative = (feats[..., 0] - mix_feats[..., :1]) * _F32(SCALAR_SCALE[0] / 20.0)
    return np.concatenate([feats, relative[..., None]], -1).astype(_F32), mix_feats
