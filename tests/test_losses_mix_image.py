"""The stereo, image and dynamics loss terms against independent numpy/scipy measurements."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import signal

from automix.dsp.console import render_mix
from automix.dsp.params import STRIP
from automix.losses import (DynamicsLoss, LoudnessLoss, MixPrediction, StereoBalanceLoss, StereoImageLoss,
                            channel_balance_db, crest_factor_db, loudness_spread_db, octave_band_edges_hz,
                            side_mid_ratio_db)

SR = 24000


def _noise(seconds: float, seed: int, band: tuple[float, float] | None = None) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(int(seconds * SR))
    if band is not None:
        sos = signal.butter(6, band, btype="bandpass", fs=SR, output="sos")
        x = signal.sosfilt(sos, x)
    return (0.1 * x / np.std(x)).astype(np.float32)


def _pred(stems: torch.Tensor, target_stems: torch.Tensor) -> MixPrediction:
    b, s = stems.shape[:2]
    return MixPrediction(mix=stems.sum(1), stems=stems, target_mix=target_stems.sum(1), target_stems=target_stems,
                         mask=torch.ones(b, s, dtype=torch.bool), strip=STRIP.neutral_like(b, s), sample_rate=SR)


def test_channel_balance_reads_a_pan_law_gain_ratio():
    x = _noise(1.0, 0)
    for gl, gr in [(1.0, 0.5), (0.3, 0.9), (1.0, 1.0)]:
        stereo = torch.from_numpy(np.stack([gl * x, gr * x]))
        expected = 20 * math.log10(gl / gr)
        assert float(channel_balance_db(stereo, limit_db=1e4)) == pytest.approx(expected, abs=1e-3)
    # a hard-panned stem stays finite
    hard = torch.from_numpy(np.stack([x, 0 * x]))
    assert math.isfinite(float(channel_balance_db(hard)))


def test_stereo_balance_loss_is_mirror_invariant_and_counts_the_error_in_db():
    x, y = _noise(1.0, 1), _noise(1.0, 2)
    target = torch.from_numpy(np.stack([np.stack([x, 0.5 * x]), np.stack([0.5 * y, y])]))[None]  # +6 / -6 dB
    mirrored = target.flip(2)
    centred = torch.from_numpy(np.stack([np.stack([x, x]), np.stack([y, y])]))[None]
    loss = StereoBalanceLoss(limit_db=1e4)
    assert float(loss(_pred(mirrored, target))) == pytest.approx(0.0, abs=1e-4)
    assert float(loss(_pred(centred, target))) == pytest.approx(20 * math.log10(2), abs=1e-3)
    assert float(StereoBalanceLoss(limit_db=1e4, mirror_invariant=False)(_pred(mirrored, target))) == \
        pytest.approx(2 * 20 * math.log10(2), abs=1e-3)
    # moving every stem to one side is not a wider mix: the mix's own balance counts too
    one_side = torch.from_numpy(np.stack([np.stack([x, 0.5 * x]), np.stack([y, 0.5 * y])]))[None]
    lopsided = float(loss(_pred(one_side, target)))
    assert lopsided > float(loss(_pred(centred, target))) + 1.0


def test_side_mid_ratio_per_octave_matches_scipy_band_energies():
    mid = _noise(2.0, 3)
    side = _noise(2.0, 4, band=(900.0, 3500.0)) * 0.5
    stereo = np.stack([mid + side, mid - side])
    ours = side_mid_ratio_db(torch.from_numpy(stereo), SR, floor_db=-120.0).numpy()
    f, _, zm = signal.stft(mid, SR, window="hann", nperseg=2048, noverlap=1536, boundary="even", padded=False)
    _, _, zs = signal.stft(side, SR, window="hann", nperseg=2048, noverlap=1536, boundary="even", padded=False)
    pm, ps = (np.abs(zm) ** 2).sum(-1), (np.abs(zs) ** 2).sum(-1)
    edges = octave_band_edges_hz(SR)
    assert len(ours) == len(edges) - 1
    for k, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        sel = (f >= lo) & (f < hi)
        expected = 10 * np.log10(ps[sel].sum() / pm[sel].sum() + 1e-12)
        if expected > -60:  # the bands where the side signal lives
            assert ours[k] == pytest.approx(expected, abs=0.5), (k, lo, hi)
    # a mono mix reads the floor in every band, and the image loss sees the difference
    mono = torch.from_numpy(np.stack([mid, mid]))
    assert side_mid_ratio_db(mono, SR).max() < -39.0
    loss = StereoImageLoss()(_pred(mono[None, None], torch.from_numpy(stereo)[None, None]))
    assert float(loss) > 3.0


def test_loudness_spread_and_crest_factor_against_numpy():
    t = np.arange(4 * SR) / SR
    sine = np.sin(2 * np.pi * 440 * t)
    assert float(crest_factor_db(torch.from_numpy(np.stack([sine, sine])).float())) == pytest.approx(3.01, abs=0.02)
    square = np.sign(sine)
    assert float(crest_factor_db(torch.from_numpy(np.stack([square, square])).float())) == pytest.approx(0.0, abs=0.05)
    # per 400 ms block: decaying hits (peak at each onset) against numpy's block peaks and RMS
    hits = (sine * np.exp(-((t % 0.4) / 0.05))).astype(np.float32)
    blocks = hits[: 10 * int(0.4 * SR)].reshape(10, -1)
    expected = np.mean(20 * np.log10(np.abs(blocks).max(1)) - 10 * np.log10((blocks ** 2).mean(1)))
    ours = float(crest_factor_db(torch.from_numpy(np.stack([hits, hits])), SR))
    assert ours == pytest.approx(expected, abs=0.05)
    assert ours > 8.0
    # a tone alternating between two levels 12 dB apart every second: spread close to 6 dB
    gain = np.where((t // 1.0) % 2 == 0, 1.0, 10 ** (-12 / 20))
    x = np.stack([sine * gain] * 2).astype(np.float32)
    spread = float(loudness_spread_db(torch.from_numpy(x), SR))
    win, hop = int(0.4 * SR), int(0.1 * SR)
    power = (x ** 2).sum(0)
    levels = np.array([10 * np.log10(power[i:i + win].mean()) for i in range(0, len(power) - win + 1, hop)])
    levels = levels[levels > levels.max() - 30]
    assert spread == pytest.approx(levels.std(), abs=0.05)
    assert 5.0 < spread < 7.0


def test_dynamics_loss_gradient_reaches_the_compressor_settings():
    drums = _noise(3.0, 5) * np.repeat(np.exp(-np.arange(12) % 3), SR // 4)[: 3 * SR].astype(np.float32)
    stems = torch.from_numpy(np.stack([drums, drums]))[None, None]
    target = render_mix(stems, STRIP.from_dict({"comp.threshold_db": -30, "comp.ratio": 6,
                                                "comp.attack_ms": 5, "comp.release_ms": 80})[None, None],
                        SR).stems
    strip = STRIP.from_dict({"comp.threshold_db": -20.0, "comp.ratio": 2.0})[None, None].clone().requires_grad_(True)
    out = render_mix(stems, strip, SR)
    pred = MixPrediction(mix=out.mix, stems=out.stems, target_mix=target.sum(1), target_stems=target,
                         mask=torch.ones(1, 1, dtype=torch.bool), strip=strip, sample_rate=SR)
    loss = DynamicsLoss()(pred)
    loss.backward()
    g = strip.grad[0, 0]
    assert torch.isfinite(g).all()
    assert float(g[STRIP.index("comp.threshold_db")].abs()) > 0 and float(g[STRIP.index("comp.ratio")].abs()) > 0
    # compression changed the dynamics (the crest factor moved by more than 1 dB), and the loss
    # is zero only at the target's own settings
    assert abs(float(crest_factor_db(target[0, 0])) - float(crest_factor_db(stems[0, 0]))) > 1.0
    assert float(loss.detach()) > 0.5
    same = MixPrediction(mix=target.sum(1), stems=target, target_mix=target.sum(1), target_stems=target,
                         mask=torch.ones(1, 1, dtype=torch.bool), strip=strip, sample_rate=SR)
    assert float(DynamicsLoss()(same)) < 1e-4


def test_relative_loudness_ignores_the_overall_level():
    x, y = _noise(1.0, 6), _noise(1.0, 7)
    target = torch.from_numpy(np.stack([np.stack([x, x]), np.stack([0.5 * y, 0.5 * y])]))[None]
    louder = 2.0 * target
    assert float(LoudnessLoss(mix_weight=0.0, relative=True)(_pred(louder, target))) == pytest.approx(0.0, abs=1e-3)
    assert float(LoudnessLoss(mix_weight=0.0)(_pred(louder, target))) == pytest.approx(6.02, abs=0.01)


def test_every_term_has_finite_gradients_with_a_silent_padding_stem():
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from pathlib import Path

    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "configs"), version_base="1.3"):
        loss_fn = instantiate(compose("train", overrides=["data.root=unused"]).loss)
    x = torch.from_numpy(np.stack([_noise(1.0, 8)] * 2))
    stems = torch.stack([x, torch.zeros_like(x)])[None]  # the second stem is padding
    mask = torch.tensor([[True, False]])
    strip = STRIP.neutral_like(1, 2).clone().requires_grad_(True)
    out = render_mix(stems, strip, SR, mode="fast", stem_mask=mask)
    target = stems * torch.tensor([0.5, 0.0])[None, :, None, None]
    pred = MixPrediction(mix=out.mix, stems=out.stems, target_mix=target.sum(1), target_stems=target, mask=mask,
                         strip=strip, sample_rate=SR)
    total, parts = loss_fn(pred)
    total.backward()
    assert set(parts) >= {"stft", "loudness", "stereo_balance", "stereo_image", "dynamics", "params"}
    assert torch.isfinite(total) and torch.isfinite(strip.grad).all()


def test_shared_spectra_give_the_same_terms_as_computing_each_alone():
    """The composite loss computes each spectrum once per step; every term must read what it would alone."""
    from automix.losses import (CompositeLoss, MultiResolutionSTFTLoss, SumDifferenceSTFTLoss,
                                side_mid_ratio_from_power, mid_side_power)

    rng = np.random.default_rng(7)
    target = torch.from_numpy(rng.standard_normal((2, 3, 2, SR)).astype(np.float32) * 0.1)
    target[:, 0, 1] *= 0.3  # one stem leaning left: a side signal to measure
    est = target * torch.tensor([1.0, 0.5, 2.0])[None, :, None, None]
    est[:, 2] = est[:, 2].flip(1)  # mirrored placement
    # side/mid from the shared power spectra = the stand-alone band ratio
    power = mid_side_power(est.sum(1), 2048, 1024, torch.hann_window(2048))
    direct = side_mid_ratio_db(est.sum(1), SR, 2048)
    from_power = side_mid_ratio_from_power(power, SR, 2048)
    assert torch.allclose(direct, from_power, atol=0.2)  # hop 1/4 vs 1/2: frames differ, band energies agree
    # the sum/difference term = the stand-alone multi-resolution loss on L+R and L-R
    stft = SumDifferenceSTFTLoss(fft_sizes=(1024, 256), hop_fraction=0.5, difference_weight=0.5)
    mr = MultiResolutionSTFTLoss((1024, 256), 0.5)
    m, t = est.sum(1), target.sum(1)
    alone = mr(m[:, 0] + m[:, 1], t[:, 0] + t[:, 1]) + 0.5 * mr(m[:, 0] - m[:, 1], t[:, 0] - t[:, 1])
    assert float(stft(_pred(est, target))) == pytest.approx(float(alone), rel=1e-5)
    # every term of the composite equals the same term on a fresh prediction (nothing stale is shared)
    terms = {"stft": stft, "image": StereoImageLoss(n_fft=1024, hop_fraction=0.5), "loudness": LoudnessLoss(relative=True),
             "balance": StereoBalanceLoss(), "dynamics": DynamicsLoss()}
    _, parts = CompositeLoss(terms)(_pred(est, target))
    for name, term in terms.items():
        assert parts[name] == pytest.approx(float(term(_pred(est, target))), rel=1e-6), name
    # target-side values carry no gradient, the estimate's do
    pred = _pred(est.clone().requires_grad_(True), target)
    total, _ = CompositeLoss(terms)(pred)
    total.backward()
    assert all(not v.requires_grad for k, v in pred.cache.items() if k[0].startswith("target"))
    assert pred.stems.grad is not None and torch.isfinite(pred.stems.grad).all() and pred.stems.grad.abs().sum() > 0


def test_width_from_effects_makes_the_balance_target_one_sided_for_mono_inputs_of_wide_stems():
    from automix.losses import width_from_effects

    x, d = _noise(1.0, 5), _noise(1.0, 6)
    wide = np.stack([x + 0.3 * d, x - 0.3 * d])               # centred, decorrelated: a stereo reverb's width
    wide_left = np.stack([x + 0.5 * d, 0.5 * x - 0.5 * d])    # wide and placed to the left (+4.3 dB)
    panned = np.stack([x, 0.4 * x])                           # +8 dB to the left, no width of its own
    narrow = np.stack([x + 0.01 * d, x - 0.01 * d])           # centred and nearly mono (-40 dB side)
    targets = torch.from_numpy(np.stack([wide, wide_left, panned, narrow, wide]))[None]
    mono = lambda s: np.stack([s.mean(0), s.mean(0)])  # noqa: E731
    inputs = torch.from_numpy(np.stack([mono(wide), mono(wide_left), mono(panned), mono(narrow), wide]))[None]
    flags = width_from_effects(inputs, targets)
    assert flags.tolist() == [[True, True, False, False, False]]  # the last arrives stereo

    def placed(index: int, left: float, right: float) -> torch.Tensor:
        """The targets with stem ``index`` replaced by its mid at channel gains (left, right)."""
        out = targets.clone()
        mid = targets[0, index].mean(0)
        out[0, index] = torch.stack([left * mid, right * mid])
        return out

    loss = StereoBalanceLoss(limit_db=1e4, mix_weight=0.0)

    def error(estimate: torch.Tensor, one_sided: bool) -> float:
        pred = _pred(estimate, targets)
        pred.width_from_effects = flags if one_sided else None
        return float(loss(pred))

    assert error(targets.clone(), True) == pytest.approx(0.0, abs=1e-4)
    # a centred wide stem keeps its centre: two-sided, the whole 14 dB count (over 5 stems)
    for left, right in ((1.0, 0.2), (0.2, 1.0)):
        for one_sided in (True, False):
            assert error(placed(0, left, right), one_sided) == pytest.approx(20 * math.log10(5) / 5, abs=0.05)
    # a wide stem placed left: further left is free, short of its side counts
    target_db = float(channel_balance_db(targets[0, 1], limit_db=1e4))
    assert error(placed(1, 1.0, 0.2), True) == pytest.approx(0.0, abs=1e-4)
    assert error(placed(1, 1.0, 1.0), True) == pytest.approx(target_db / 5, abs=0.05)
    assert error(placed(1, 1.0, 0.2), False) == pytest.approx((20 * math.log10(5) - target_db) / 5, abs=0.05)
    # stems that are not flagged keep the two-sided error
    two_sided = error(placed(2, 1.0, 0.2), False)
    assert two_sided > 0.5 and error(placed(2, 1.0, 0.2), True) == pytest.approx(two_sided, abs=1e-4)
