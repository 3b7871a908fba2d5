"""The fused, vectorised render kernel equals the differentiable console path.

The no-gradient render (``render_mix`` without gradients, ``BlockRenderer``) runs
:func:`automix.dsp.kernels.channel_strip`: four-lane SIMD EQ recursions and hand-written
vectorised exp/log. These tests hold it to the differentiable torch path (the one the
model trains through) and its math helpers to numpy.
"""
import numpy as np
import pytest
import scipy.signal as ss
import torch

from automix.dsp import kernels
from automix.dsp.console import BlockRenderer, render_mix
from automix.dsp.params import MASTER, STRIP

SR = 44100


def _song_like(b, s, c, t, seed):
    """Drum-like bursts, a bass line and pink noise per stem (float64, about -15 dBFS RMS)."""
    rng = np.random.default_rng(seed)
    time = np.arange(t) / SR
    white = rng.standard_normal((b, s, c, t))
    pink = ss.lfilter([0.049922035, -0.095993537, 0.050612699, -0.004408786],
                      [1, -2.494956002, 2.017265875, -0.522189400], white, axis=-1)
    pink /= pink.std()
    hits = np.exp(-40.0 * (time % 0.25)) * (rng.uniform(0.2, 1.0, (b, s, 1, 1)))
    bass = 0.3 * np.sin(2 * np.pi * rng.uniform(40, 200, (b, s, 1, 1)) * time)
    return torch.from_numpy(0.25 * pink * hits + bass + 0.02 * white)


def _active_settings(b, s, seed):
    """Random settings with every processor on; a few stems with ratio 1 or a dry saturator."""
    g = torch.Generator().manual_seed(seed)
    strip = STRIP.from_unit(0.05 + 0.9 * torch.rand(b, s, STRIP.size, generator=g, dtype=torch.float64))
    strip[..., STRIP.index("comp.threshold_db")] = -35.0 + 20.0 * torch.rand(b, s, generator=g, dtype=torch.float64)
    strip[..., STRIP.index("gain_db")] = strip[..., STRIP.index("gain_db")].clamp(-20, 0)
    strip[0, 1, STRIP.index("comp.ratio")] = 1.0  # compressor off on one stem
    strip[-1, 0, STRIP.index("sat.mix")] = 0.0  # saturator dry on another
    master = MASTER.from_unit(0.05 + 0.9 * torch.rand(b, MASTER.size, generator=g, dtype=torch.float64))
    master[..., MASTER.index("comp.threshold_db")] = -20.0
    return strip, master


@pytest.mark.parametrize("channels,n_stems", [(2, 5), (1, 3), (2, 2)])
def test_fused_render_equals_the_differentiable_path(channels, n_stems):
    # 5 stereo stems = 10 channels: the last four-lane group is half empty; 3 mono stems: 3 lanes
    x = _song_like(2, n_stems, channels, 3 * 1024 + 77, seed=channels * 10 + n_stems)
    strip, master = _active_settings(2, n_stems, seed=n_stems)
    mask = torch.ones(2, n_stems, dtype=torch.bool)
    mask[1, -1] = False
    with torch.no_grad():
        fused = render_mix(x, strip, SR, master, stem_mask=mask)
    diff = render_mix(x, strip.clone().requires_grad_(), SR, master, stem_mask=mask)  # torch + autograd path
    scale = float(diff.mix.detach().abs().max())
    assert scale > 0.05  # audible, and compressed: the comparison is not of silence
    assert torch.max(torch.abs(fused.mix - diff.mix.detach())) < 1e-9 * max(1.0, scale)
    assert torch.max(torch.abs(fused.stems - diff.stems.detach())) < 1e-9 * max(1.0, scale)
    assert torch.all(fused.stems[1, -1] == 0)
    # float32 audio (what a real render uses) agrees to float32 precision
    with torch.no_grad():
        fused32 = render_mix(x.float(), strip.float(), SR, master.float(), stem_mask=mask)
    assert fused32.mix.dtype == torch.float32
    assert torch.max(torch.abs(fused32.mix.double() - diff.mix.detach())) < 1e-5 * max(1.0, scale)


def test_fused_render_with_compressor_and_saturator_off_equals_the_differentiable_path():
    """What the mix model usually asks for: EQ, fader and pan only. The fused path then skips the
    compressor's smoothing and gain (exactly unity) and must still equal the reference."""
    x = _song_like(1, 3, 2, 2 * 1024 + 5, seed=8)
    strip, _ = _active_settings(1, 3, seed=8)
    neutral = STRIP.neutral_like(1, 3)
    for name in ("comp.ratio", "comp.makeup_db", "sat.mix"):
        strip[..., STRIP.index(name)] = neutral[..., STRIP.index(name)]
    strip[0, 2, STRIP.index("comp.makeup_db")] = 3.0  # make-up gain alone still applies
    with torch.no_grad():
        fused = render_mix(x, strip, SR)
    diff = render_mix(x, strip.clone().requires_grad_(), SR)
    scale = float(diff.mix.detach().abs().max())
    assert scale > 0.05
    assert torch.max(torch.abs(fused.stems - diff.stems.detach())) < 1e-9 * max(1.0, scale)


def test_compressor_and_saturator_are_really_active_in_the_comparison():
    x = _song_like(1, 2, 2, 4096, seed=3)
    strip, master = _active_settings(1, 2, seed=3)
    with torch.no_grad():
        active = render_mix(x, strip, SR, master).mix
        for name in ("comp.ratio", "sat.mix"):
            off = strip.clone()
            off[..., STRIP.index(name)] = STRIP.neutral_like(1, 2)[..., STRIP.index(name)]
            changed = render_mix(x, off, SR, master).mix
            assert torch.max(torch.abs(changed - active)) > 1e-3, name


@pytest.mark.parametrize("channels", [1, 2])
def test_block_renderer_equals_one_piece_across_chunk_boundaries(channels):
    x = _song_like(2, 3, channels, 9000, seed=5).float()
    strip, master = _active_settings(2, 3, seed=5)
    strip, master = strip.float(), master.float()
    mask = torch.tensor([[True, True, False], [True, False, True]])
    with torch.no_grad():
        whole = render_mix(x, strip, SR, master, stem_mask=mask)
    renderer = BlockRenderer(strip, SR, master, stem_mask=mask, n_channels=channels)
    sizes = [1, 255, 256, 257, 1000, 3000]
    pieces, start = [], 0
    while start < x.shape[-1]:
        size = sizes[len(pieces) % len(sizes)]
        pieces.append(renderer.process(x[..., start:start + size]))
        start += size
    mix = torch.cat([p.mix for p in pieces], dim=-1)
    stems = torch.cat([p.stems for p in pieces], dim=-1)
    scale = max(1.0, float(whole.mix.abs().max()))
    assert torch.max(torch.abs(mix - whole.mix)) <= 1e-5 * scale
    assert torch.max(torch.abs(stems - whole.stems)) <= 1e-5 * scale


def test_vectorised_exp_and_log_match_numpy():
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.uniform(-700, 700, 300), rng.uniform(-3, 3, 300), [0.0, -1e-300, 1e-12]])
    out = v.copy()
    kernels.exp_inplace(out, v.size)
    np.testing.assert_allclose(out, np.exp(v), rtol=4e-16, atol=0)
    p = np.concatenate([np.exp(rng.uniform(-700, 700, 300)), rng.uniform(0.5, 2.0, 300), [1.0, 1e-10, 2.0 ** -1022]])
    out = p.copy()
    kernels.log_inplace(out, p.size)
    ref = np.log(p)
    assert np.all(np.abs(out - ref) <= 4e-16 * np.maximum(1.0, np.abs(ref)))


def test_silent_tail_leaves_exact_zeros_not_subnormals():
    # A stem that stops (digital silence for 3 s after a note): the EQ recursions and the
    # compressor's release decay toward zero. Left alone they end in float64 subnormals,
    # which x86 computes ~100x slower (a stem with a silent outro made whole renders
    # several times slower); the kernel sets states below -400 dBFS to exact zero.
    n_note, n_tail = SR // 5, 3 * SR
    t = np.arange(n_note) / SR
    note = 0.5 * np.sin(2 * np.pi * 55.0 * t) * np.exp(-3.0 * t)
    x = np.zeros((1, 2, 2, n_note + n_tail))
    x[..., :n_note] = note
    x = torch.from_numpy(x)
    strip, _ = _active_settings(1, 2, seed=3)
    strip[..., STRIP.index("eq.hpf.freq_hz")] = 20.0  # poles near 1: the slowest decay
    strip[..., STRIP.index("eq.hpf.mix")] = 1.0
    renderer = BlockRenderer(strip, SR, reuse_buffers=True)
    with torch.no_grad():
        fused = renderer.process(x.float())
    states, gains = renderer._strip_state
    assert np.all(states == 0.0)  # not 1e-200, not subnormal
    assert np.all((gains == 0.0) | (np.abs(gains) >= kernels.STATE_FLOOR))  # a slow release may still be on its way
    tail = fused.stems[..., -SR:]
    assert torch.all(tail == 0)
    # and the sound is the differentiable path's (the zeroed states were below 1e-20)
    diff = render_mix(x, strip.clone().requires_grad_(), SR)
    assert float(fused.mix.abs().max()) > 0.05
    assert torch.max(torch.abs(fused.stems.double() - diff.stems.detach())) < 1e-6
