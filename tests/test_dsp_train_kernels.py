"""The console's compiled training kernels against independent references.

* the fused compressor (one kernel, custom backward) against the same equations written as
  torch operations (:func:`compress_reference`) and against float64 finite differences;
* the cascade response on the DFT grid against ``scipy.signal.sosfreqz`` and its backward
  against finite differences;
* the fast EQ path against ``scipy.signal.sosfilt`` (the exact IIR).
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
import torch

from automix.dsp import compressor as comp
from automix.dsp import eq
from automix.dsp.params import STRIP

SR = 16000


def drum_like(n_rows: int, channels: int, n: int, seed: int = 0) -> torch.Tensor:
    """Decaying noise bursts (a busy drum stem): wide dynamics, so every knee region is visited."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    env = np.exp(-(t % (n // 4)) / (0.02 * SR))
    x = rng.normal(size=(n_rows, channels, n)) * env * rng.uniform(0.05, 1.0, size=(n_rows, 1, 1))
    return torch.from_numpy(x)


def settings(n_rows: int) -> list[torch.Tensor]:
    """threshold, ratio, attack, release, knee (incl. a hard knee), make-up per row (float64)."""
    cols = {"threshold": [-30.0, -12.0, -20.0, -6.0], "ratio": [4.0, 1.0, 2.5, 10.0],
            "attack": [1.0, 5.0, 20.0, 0.5], "release": [50.0, 200.0, 80.0, 30.0],
            "knee": [6.0, 3.0, 0.0, 12.0], "makeup": [2.0, 0.0, -1.5, 4.0]}
    return [torch.tensor(v[:n_rows], dtype=torch.float64) for v in cols.values()]


@pytest.mark.parametrize("channels", [1, 2])
def test_fused_compressor_equals_torch_equations_and_their_gradients(channels):
    x = drum_like(4, channels, 4000)
    thr, ratio, att, rel, knee, makeup = settings(4)
    args = [x, thr, ratio, att, rel, knee, makeup]
    torch.testing.assert_close(comp.compress(*args, SR), comp.compress_reference(*args, SR), rtol=1e-12, atol=1e-12)
    leaves = [a.clone().requires_grad_() for a in args]
    weight = torch.randn(x.shape, dtype=torch.float64)
    fused = torch.autograd.grad((comp.compress(*leaves, SR) * weight).sum(), leaves)
    reference = torch.autograd.grad((comp.compress_reference(*leaves, SR) * weight).sum(), leaves)
    for name, a, b in zip(("x", "threshold", "ratio", "attack", "release", "knee", "makeup"), fused, reference):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12, msg=name)
    # float32 audio (what training renders): float64 inside the kernel, float32 rounding only
    x32, p32 = x.float(), [a.float() for a in args[1:]]
    torch.testing.assert_close(comp.compress(x32, *p32, SR), comp.compress_reference(x32, *p32, SR),
                               rtol=2e-5, atol=1e-6)


def test_fused_compressor_gradcheck_float64():
    x = drum_like(3, 2, 120, seed=1) * 4.0
    # rows 0, 2, 3 of settings(): ratio 1 is a kink (the smoother's attack/release choice flips there)
    thr, ratio, att, rel, knee, makeup = (t[[0, 2, 3]] for t in settings(4))
    leaves = [t.clone().requires_grad_() for t in (x, thr, ratio, att, rel, knee, makeup)]
    assert torch.autograd.gradcheck(lambda *a: comp.compress(*a, SR), leaves, eps=1e-7, atol=1e-6, rtol=1e-4)


def test_fused_compressor_does_not_depend_on_the_thread_count():
    import numba

    x = drum_like(6, 2, 3000, seed=2).float().requires_grad_()
    params = [t.repeat(2)[:6] for t in settings(4)]
    results = []
    before = numba.get_num_threads()
    try:
        for threads in (1, before):
            numba.set_num_threads(threads)
            x.grad = None
            y = comp.compress(x, *params, SR)
            y.square().sum().backward()
            results.append((y.detach().clone(), x.grad.clone()))
    finally:
        numba.set_num_threads(before)
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])


def random_strip(batch: int, stems: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return STRIP.from_unit(torch.rand(batch, stems, STRIP.size, generator=g, dtype=torch.float64))


def test_grid_response_equals_scipy_sosfreqz():
    sos = eq.eq_sos(random_strip(2, 3), STRIP, SR)
    n = 512
    response = eq.grid_response(sos, n)
    for i in range(2):
        for j in range(3):
            _, h = scipy.signal.sosfreqz(sos[i, j].numpy(), worN=np.arange(n // 2 + 1) * 2 * np.pi / n)
            np.testing.assert_allclose(response[i, j].numpy(), h, rtol=1e-10, atol=1e-12)


def test_grid_response_gradcheck_float64():
    sos = eq.eq_sos(random_strip(1, 2, seed=3), STRIP, SR).clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda s: torch.view_as_real(eq.grid_response(s, 48)), (sos,))


def test_fast_eq_matches_the_exact_iir_filter():
    """Frequency-sampled FIR + FFT convolution against scipy's sosfilt of the same cascade."""
    strip = random_strip(1, 3, seed=4)
    sos = eq.eq_sos(strip, STRIP, SR)
    x = drum_like(3, 2, 6000, seed=5).reshape(1, 3, 2, 6000)
    fast = eq.apply_eq_fir(x, sos, SR).numpy()
    for j in range(3):
        exact = scipy.signal.sosfilt(sos[0, j].numpy(), x[0, j].numpy(), axis=-1)
        err = np.sqrt(np.mean((fast[0, j] - exact) ** 2) / np.mean(exact ** 2))
        assert err < 1e-3, (j, err)  # -60 dB: the FIR's truncation at 16384 samples


def test_fft_length_is_five_smooth_and_minimal():
    def smooth(m):
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        return m == 1

    for n in (1, 2, 7, 1000, 88383, 131072, 131073):
        m = eq.fft_length(n)
        assert m >= n and smooth(m)
        assert not any(smooth(k) for k in range(n, m))
