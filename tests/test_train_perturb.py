"""The un-mixing perturbation: seeded, within its ranges, applied through the console."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from automix.dsp.params import STRIP
from automix.perturb import BENCHMARK, TRAINING, Perturbation

torch.set_num_threads(1)
SR = 24000


def _noise(b, s, seconds=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(b, s, 2, int(seconds * SR), generator=g)


def test_seeded_and_reproducible():
    x = _noise(2, 3)
    a, strip_a = TRAINING.apply(x, SR, torch.Generator().manual_seed(5))
    b, strip_b = TRAINING.apply(x, SR, torch.Generator().manual_seed(5))
    c, strip_c = TRAINING.apply(x, SR, torch.Generator().manual_seed(6))
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(strip_a, strip_b)
    assert not torch.allclose(strip_a, strip_c)
    assert a.shape == (2, 3, 2, SR)


def test_draws_stay_in_their_ranges():
    x = _noise(64, 8, seconds=0.05)
    strip = TRAINING.sample_strip(x, torch.Generator().manual_seed(0))
    STRIP.validate(strip)
    col = lambda name: strip[..., STRIP.index(name)]  # noqa: E731
    assert col("gain_db").abs().max() <= 12.0 and col("gain_db").abs().max() > 11.0
    assert col("pan").abs().max() <= 0.5
    for name in ("eq.low_shelf.gain_db", "eq.high_shelf.gain_db", "eq.peak2.gain_db"):
        assert col(name).abs().max() <= 6.0
    compressed = col("comp.ratio") > 1.0
    assert 0.4 < float(compressed.float().mean()) < 0.6  # 512 stems, p = 0.5
    rms_db = 10 * torch.log10(x.square().mean(dim=(-2, -1)))
    assert bool((col("comp.threshold_db")[compressed] <= rms_db[compressed] + 1e-4).all())
    bench = BENCHMARK.sample_strip(x, torch.Generator().manual_seed(0))
    assert bench[..., STRIP.index("gain_db")].abs().max() <= 9.0
    assert (bench[..., STRIP.index("comp.ratio")] == 1.0).all() and (bench[..., STRIP.index("pan")] == 0).all()


def test_gain_goes_through_the_console_fader():
    x = _noise(1, 4)
    gain_only = Perturbation(gain_db=12.0, pan=0.0, eq_gain_db=0.0, compression_probability=0.0)
    out, strip = gain_only.apply(x, SR, torch.Generator().manual_seed(1))
    measured = 10 * np.log10(out.square().mean(dim=(-2, -1)).numpy() / x.square().mean(dim=(-2, -1)).numpy())
    np.testing.assert_allclose(measured, strip[..., STRIP.index("gain_db")].numpy(), atol=0.05)


def test_tilt_brightens_or_darkens_by_the_drawn_amount():
    x = _noise(1, 6, seconds=2.0, seed=3)
    out, strip = BENCHMARK.apply(x, SR, torch.Generator().manual_seed(2))
    freqs = np.fft.rfftfreq(x.shape[-1], 1 / SR)
    low, high = (freqs > 20) & (freqs < 80), (freqs > 8000) & (freqs < 11000)

    def band_db(sig, band):
        p = np.abs(np.fft.rfft(sig.numpy(), axis=-1)) ** 2
        return 10 * np.log10(p[..., band].mean(-1).mean(-1))

    tilt_measured = (band_db(out, high) - band_db(x, high)) - (band_db(out, low) - band_db(x, low))
    tilt_drawn = (strip[..., STRIP.index("eq.high_shelf.gain_db")] - strip[..., STRIP.index("eq.low_shelf.gain_db")]).numpy()
    np.testing.assert_allclose(tilt_measured, tilt_drawn, atol=0.6)
    assert np.abs(tilt_drawn).max() > 2.0


def test_mono_fold_makes_some_stems_dry_mono_and_leaves_the_rest():
    x = _noise(4, 6, seconds=0.5, seed=3)  # independent channels: correlation ~0
    plain = Perturbation(gain_db=2.0, pan=0.0, eq_gain_db=0.0, tilt_db=0.0, compression_probability=0.0)
    folding = Perturbation(gain_db=2.0, pan=0.0, eq_gain_db=0.0, tilt_db=0.0, compression_probability=0.0,
                           mono_probability=0.5)
    a, strip_a = plain.apply(x, SR, torch.Generator().manual_seed(1))
    b, strip_b = folding.apply(x, SR, torch.Generator().manual_seed(1))
    torch.testing.assert_close(strip_a, strip_b)  # the fold is drawn after the strip: same settings
    side = (b[:, :, 0] - b[:, :, 1]).square().mean(-1)
    mid = (b[:, :, 0] + b[:, :, 1]).square().mean(-1)
    folded = side < 1e-12 * mid
    assert 4 <= int(folded.sum()) <= 20  # about half of 24 stems
    # a folded stem is the mid of the plain result; the others are untouched
    torch.testing.assert_close(b[folded], a[folded].mean(1, keepdim=True).expand_as(a[folded]))
    torch.testing.assert_close(b[~folded], a[~folded])
    # no draw when off: earlier seeds give what they gave
    c, _ = plain.apply(x, SR, torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, c)
