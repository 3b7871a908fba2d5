"""The loss statistics' compiled pass and its adjoint, against scipy/numpy and torch autograd."""
from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest
import torch
from scipy.signal import sosfilt

from automix.loudness import k_weighting_sos
from automix.signal_statistics import (SignalStatistics, _statistics_torch, block_length,
                                       k_weighting_impulse_response, signal_statistics)

SR = 24000


def _signals(seed: int = 0, shape=(2, 3, 2, 30000)) -> torch.Tensor:
    """Notes with a rising envelope and a decaying tail: peaks, quiet blocks and bass."""
    rng = np.random.default_rng(seed)
    t = np.arange(shape[-1]) / SR
    x = np.zeros(shape)
    for index in np.ndindex(shape[:-2]):
        f = rng.uniform(40, 4000)
        tone = np.sin(2 * np.pi * f * t) * np.exp(-3 * t) + 0.05 * rng.standard_normal(t.shape)
        x[index] = tone * np.array([[1.0], [rng.uniform(0.1, 1.0)]]) * np.linspace(0.05, 1, t.size)
    return torch.from_numpy(x).float()


def _numpy_statistics(x: np.ndarray, sample_rate: int) -> dict[str, np.ndarray]:
    x = x.astype(np.float64)
    block = block_length(sample_rate)
    n = x.shape[-1] // block
    blocks = x[..., : n * block].reshape(*x.shape[:-1], n, block)
    return {"energy": np.mean(x ** 2, -1),
            "k_energy": np.mean(sosfilt(k_weighting_sos(sample_rate), x, axis=-1) ** 2, -1),
            "block_peak": np.abs(blocks).max(-1).max(-2),
            "block_mean_square": np.mean(blocks ** 2, (-1, -3))}


@pytest.mark.parametrize("sample_rate", [24000, 44100])
def test_statistics_match_scipy_and_numpy(sample_rate):
    x = _signals(1)
    expected = _numpy_statistics(x.numpy(), sample_rate)
    fused = signal_statistics(x, sample_rate)
    rows = x.reshape(-1, *x.shape[-2:])
    reference = dict(zip(expected, _statistics_torch(rows, sample_rate, block_length(sample_rate))))
    for name, want in expected.items():
        got = getattr(fused, name).double().numpy()
        np.testing.assert_allclose(got, want, rtol=2e-6, err_msg=name)
        np.testing.assert_allclose(reference[name].reshape(got.shape).double().numpy(), want, rtol=2e-5,
                                   err_msg=f"torch path {name}")


def test_loudness_is_pyloudnorm_ungated_for_a_steady_tone():
    t = np.arange(4 * SR) / SR
    tone = 0.3 * np.sin(2 * np.pi * 997 * t)
    stereo = np.stack([tone, 0.5 * tone])
    got = float(signal_statistics(torch.from_numpy(stereo).float()[None], SR).loudness_lufs()[0])
    # pyloudnorm gates; a steady tone is above every gate, so gated = ungated (after the filter settles)
    want = pyloudnorm.Meter(SR).integrated_loudness(stereo.T)
    assert got == pytest.approx(want, abs=0.02)


def test_impulse_response_is_the_filter():
    h = k_weighting_impulse_response(SR)
    impulse = np.zeros(len(h) + 500)
    impulse[0] = 1.0
    full = sosfilt(k_weighting_sos(SR), impulse)
    assert np.allclose(full[: len(h)], h)
    assert np.sum(full[len(h):] ** 2) < 1e-15 * np.sum(full ** 2)


def test_adjoint_matches_torch_autograd():
    x = _signals(2)
    shape = x.shape[:-2]
    rng = torch.Generator().manual_seed(3)
    n_blocks = x.shape[-1] // block_length(SR)
    weights = [torch.randn(*shape, 2, generator=rng), torch.randn(*shape, 2, generator=rng),
               torch.randn(*shape, n_blocks, generator=rng), torch.randn(*shape, n_blocks, generator=rng)]

    def objective(stats: SignalStatistics) -> torch.Tensor:
        parts = (stats.energy, stats.k_energy, stats.block_peak, stats.block_mean_square)
        return sum((w * p).sum() for w, p in zip(weights, parts))

    fused_x = x.clone().requires_grad_(True)
    objective(signal_statistics(fused_x, SR)).backward()
    torch_x = x.clone().requires_grad_(True)
    parts = _statistics_torch(torch_x.reshape(-1, *x.shape[-2:]), SR, block_length(SR))
    objective(SignalStatistics(*(p.reshape(*shape, -1) for p in parts))).backward()
    assert torch.isfinite(fused_x.grad).all()
    error = (fused_x.grad - torch_x.grad).norm() / torch_x.grad.norm()
    assert float(error) < 1e-5


def test_derived_measures_have_finite_gradients_for_silence_and_hard_pans():
    x = torch.zeros(1, 3, 2, 20000)
    x[0, 1, 0] = _signals(4, (1, 1, 2, 20000))[0, 0, 0]  # hard left
    x[0, 2] = _signals(5, (1, 1, 2, 20000))[0, 0]
    x.requires_grad_(True)
    stats = signal_statistics(x, SR)
    total = stats.loudness_lufs().sum() + stats.balance_db().sum() + stats.crest_db().sum()
    total.backward()
    assert torch.isfinite(x.grad).all()
    assert float(stats.balance_db()[0, 1].detach()) == pytest.approx(24.0, abs=0.5)  # soft-clamped, finite


def test_short_signals_get_one_block():
    x = _signals(6, (1, 2, 2, 4000))  # shorter than 400 ms
    stats = signal_statistics(x, SR)
    assert stats.block_peak.shape == (1, 2, 1)
    np.testing.assert_allclose(stats.block_peak[..., 0].numpy(), x.abs().amax((-2, -1)).numpy())
