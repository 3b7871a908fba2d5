"""Mix metrics (automix/mix_metrics.py) against independent computations (scipy, pyloudnorm, numpy)."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pyloudnorm
import scipy.signal
import torch

from automix.mix_metrics import (METRICS, crest_distance_db, loudness_spread_distance_lu, lr_balance_db,
                                 lr_balance_error_db, score_mix, side_mid_by_octave_db, stereo_image_distance_db)
from automix.raw_like import loudness_spread_lu

SR = 24000


def _noise(seconds: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=int(seconds * SR)) * 0.05


def test_side_mid_per_octave_matches_a_scipy_filterbank():
    mid, side = _noise(6, 0), _noise(6, 1)
    # side louder in the 1 kHz octave only (a band-pass boost), quiet elsewhere
    sos = scipy.signal.butter(4, [1000 / math.sqrt(2), 1000 * math.sqrt(2)], btype="bandpass", fs=SR, output="sos")
    side = 0.1 * side + 2.0 * scipy.signal.sosfilt(sos, side)
    mix = np.stack([mid + side, mid - side])
    centres, ratio, _ = side_mid_by_octave_db(mix, SR)
    for c, r in zip(centres, ratio):
        band = scipy.signal.butter(6, [c / math.sqrt(2), min(c * math.sqrt(2), 0.499 * SR)], btype="bandpass",
                                   fs=SR, output="sos")
        m, s = scipy.signal.sosfilt(band, (mix[0] + mix[1]) / 2), scipy.signal.sosfilt(band, (mix[0] - mix[1]) / 2)
        expected = 10 * np.log10(np.sum(s ** 2) / np.sum(m ** 2))
        assert abs(r - expected) < 1.5, (c, r, expected)  # filter skirts differ from brick-wall bands
    assert ratio[list(centres).index(1000.0)] > ratio[list(centres).index(250.0)] + 10


def test_image_distance_is_the_side_scaling_and_mono_is_floored():
    mid, side = _noise(4, 2), 0.3 * _noise(4, 3)
    mix = np.stack([mid + side, mid - side])
    wider = np.stack([mid + 2 * side, mid - 2 * side])
    assert stereo_image_distance_db(mix, mix, SR) == 0.0
    assert abs(stereo_image_distance_db(wider, mix, SR) - 20 * np.log10(2)) < 0.05
    mono = np.stack([mid, mid])
    ref_ratio = 10 * np.log10(np.sum(side ** 2) / np.sum(mid ** 2))
    assert abs(stereo_image_distance_db(mono, mix, SR) - (ref_ratio - -40.0)) < 1.0


def test_loudness_spread_matches_pyloudnorm_windows():
    envelope = np.repeat([1.0, 0.3, 1.0, 0.5, 0.2, 1.0], 4 * SR)
    x = np.stack([_noise(24, 4) * envelope] * 2)
    meter = pyloudnorm.Meter(SR, block_size=0.4)
    # pyloudnorm's loudness of every 3 s window, one per 100 ms (steady noise within each block)
    readings = []
    for start in range(0, x.shape[-1] - 3 * SR + 1, SR // 10):
        readings.append(meter.integrated_loudness(x[:, start:start + 3 * SR].T))
    readings = np.array(readings)
    readings = readings[readings >= np.median(readings) - 20]
    assert abs(loudness_spread_lu(x, SR) - np.std(readings)) < 0.3
    assert loudness_spread_distance_lu(x, x, SR) == 0.0
    steady = np.stack([_noise(24, 5)] * 2)
    assert abs(loudness_spread_distance_lu(steady, x, SR) - np.std(readings)) < 0.3


def test_crest_distance_of_a_clipped_copy():
    x = np.stack([np.stack([_noise(4, 6)] * 2), np.stack([_noise(4, 7)] * 2)])
    clipped = np.clip(x, -0.05, 0.05)  # peaks at 1 sigma: a much lower crest factor
    block = int(0.4 * SR)

    def crest(s):  # by hand: median over 400 ms blocks of peak/RMS
        return np.median([20 * np.log10(np.abs(s[:, i:i + block]).max() / np.sqrt(np.mean(s[:, i:i + block] ** 2)))
                          for i in range(0, s.shape[-1] - block + 1, block)])

    expected = np.mean([abs(crest(a) - crest(b)) for a, b in zip(clipped, x)])
    assert abs(crest_distance_db(clipped, x, SR) - expected) < 1e-6
    assert expected > 6


def test_lr_balance_error():
    a, b = _noise(2, 8), _noise(2, 9)
    ref = np.stack([np.stack([a, a]), np.stack([b, 0.5 * b])])
    est = np.stack([np.stack([2 * a, a]), np.stack([b, b])])
    np.testing.assert_allclose(lr_balance_db(ref), [0.0, 20 * np.log10(2)], atol=1e-9)
    assert abs(lr_balance_error_db(est, ref) - 20 * np.log10(2)) < 1e-9  # 6.02 dB on each stem
    one_sided = np.stack([np.stack([a, 0 * a])])
    assert lr_balance_db(one_sided)[0] == 30.0
    # a mix mirrored left for right places every stem as well as the reference does
    mirrored = ref[:, ::-1]
    assert lr_balance_error_db(mirrored, ref) < 1e-9
    assert abs(lr_balance_error_db(mirrored, ref, mirror_invariant=False) - 20 * np.log10(2) / 2 * 2) < 1e-9


def test_score_mix_of_the_reference_itself_is_zero_and_torch_is_accepted():
    a, b = _noise(5, 10), _noise(5, 11)
    stems = np.stack([np.stack([a, 0.7 * a]), np.stack([0.4 * b, b])]).astype(np.float32)
    scores = score_mix(torch.from_numpy(stems), torch.from_numpy(stems.sum(0)), stems, stems.sum(0), SR)
    assert set(scores) == set(METRICS)
    for name, value in scores.items():
        assert abs(value) < 1e-3, (name, value)


def test_mix_raw_benchmark_scores_three_systems(tmp_path):
    """benchmarks/mix_raw.py is importable and runs on synthetic multitracks (baselines only)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import mix_raw

    from multitrack_synth import write_dataset

    held = write_dataset(tmp_path / "held", n_songs=2, seconds=4.0, sample_rate=SR)
    train = write_dataset(tmp_path / "train", n_songs=2, seconds=4.0, sample_rate=SR)
    out = tmp_path / "out.json"
    assert mix_raw.main(["--data", str(held), "--training-data", str(train), "--role-levels",
                         str(tmp_path / "levels.json"), "--no-model", "--json", str(out)]) == 0
    import json

    result = json.loads(out.read_text())
    assert result["songs"] and set(result["mean"]) == {"sum", "rule"}
    levels = json.loads((tmp_path / "levels.json").read_text())
    assert levels["songs"] == 2 and "kick" in levels["roles"]
    # the rule baseline centres the kick and pans the keys
    names, stems, sr = mix_raw.load_stems(mix_raw.scan_folder(held)[0], None)
    roles = mix_raw.scan_folder(held)[0].roles
    rule = mix_raw.rule_baseline(stems, roles, sr, levels)
    balance = lr_balance_db(rule)
    for name, role, value in zip(names, roles, balance):
        original = lr_balance_db(stems[names.index(name)][None])[0]
        if mix_raw.role_name(role) in mix_raw.CENTRED_ROLES:
            assert abs(value - original) < 1e-3
        else:
            assert abs(abs(value - original) - 5.3) < 0.1  # +-0.5 pan: the far side at -5.3 dB
