"""The console as a whole: neutrality, fused == differentiable, blocks == one piece, gradients."""
import numpy as np
import pytest
import scipy.signal as ss
import torch

from automix.dsp import eq
from automix.dsp.console import BlockRenderer, render_mix
from automix.dsp.params import MASTER, STRIP
from automix.errors import AudioError, SettingsError

SR = 44100


def _music_like(b, s, c, t, seed=0):
    """Pink-ish noise bursts with a sine underneath: broadband, dynamic, deterministic."""
    rng = np.random.default_rng(seed)
    white = rng.standard_normal((b, s, c, t))
    pink = ss.lfilter([0.049922035, -0.095993537, 0.050612699, -0.004408786],
                      [1, -2.494956002, 2.017265875, -0.522189400], white, axis=-1)
    env = (np.sin(2 * np.pi * 3.0 * np.arange(t) / SR) > 0).astype(float) * 0.8 + 0.2
    tone = 0.3 * np.sin(2 * np.pi * 220.0 * np.arange(t) / SR)
    x = 0.3 * pink / pink.std() * env + tone
    return torch.from_numpy(x)


def _random_settings(b, s, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    strip = STRIP.from_unit(torch.rand(b, s, STRIP.size, generator=g, dtype=torch.float64))
    master = MASTER.from_unit(torch.rand(b, MASTER.size, generator=g, dtype=torch.float64))
    strip[..., STRIP.index("gain_db")] = strip[..., STRIP.index("gain_db")].clamp(max=0)
    return strip.to(dtype), master.to(dtype)


@pytest.mark.parametrize("channels", [1, 2])
def test_neutral_settings_reproduce_the_input_sum_exactly(channels):
    x = _music_like(2, 3, channels, 8000).float()
    strip, master = STRIP.neutral_like(2, 3), MASTER.neutral_like(2)
    out = render_mix(x, strip, SR, master)
    expected = x.sum(1) if channels == 2 else x.sum(1).expand(2, 2, -1)
    assert torch.equal(out.mix, expected)  # fused render: bit-exact
    diff = render_mix(x.requires_grad_(), strip, SR, master).mix.detach()  # differentiable render
    assert torch.max(torch.abs(diff - expected)) < 1e-6


def test_fused_render_equals_differentiable_render():
    x = _music_like(2, 3, 2, 6000, seed=1)
    strip, master = _random_settings(2, 3, seed=1)
    fused = render_mix(x, strip, SR, master)
    diff = render_mix(x, strip.clone().requires_grad_(), SR, master)
    scale = diff.mix.detach().abs().max()
    assert torch.max(torch.abs(fused.mix - diff.mix.detach())) < 1e-9 * max(1.0, float(scale))
    assert torch.max(torch.abs(fused.stems - diff.stems.detach())) < 1e-9 * max(1.0, float(scale))
    # mono stems go through the same kernels with pan instead of balance
    xm = x[:, :, :1]
    fused = render_mix(xm, strip, SR, master)
    diff = render_mix(xm, strip.clone().requires_grad_(), SR, master)
    assert torch.max(torch.abs(fused.mix - diff.mix.detach())) < 1e-9 * max(1.0, float(diff.mix.detach().abs().max()))


def test_block_rendering_equals_one_piece():
    x = _music_like(1, 4, 2, 20000, seed=2).float()
    strip, master = _random_settings(1, 4, seed=2, dtype=torch.float32)
    whole = render_mix(x, strip, SR, master).mix
    renderer = BlockRenderer(strip, SR, master)
    blocks = list(renderer.process_all(torch.split(x, 1777, dim=-1)))
    joined = torch.cat(blocks, dim=-1)
    assert joined.shape == whole.shape
    assert torch.max(torch.abs(joined - whole)) <= 1e-5 * max(1.0, float(whole.abs().max()))


def test_stem_mask_removes_stems_from_the_sum():
    x = _music_like(1, 3, 2, 4000, seed=3).float()
    strip, master = _random_settings(1, 3, seed=3, dtype=torch.float32)
    mask = torch.tensor([[True, False, True]])
    out = render_mix(x, strip, SR, master, stem_mask=mask)
    ref = render_mix(x[:, [0, 2]], strip[:, [0, 2]], SR, master)
    assert torch.all(out.stems[:, 1] == 0)
    torch.testing.assert_close(out.mix, ref.mix, atol=1e-5, rtol=1e-5)


def test_fast_and_exact_paths_agree_within_half_a_db():
    x = _music_like(2, 3, 2, SR, seed=4).float()
    strip, master = _random_settings(2, 3, seed=4, dtype=torch.float32)
    exact = render_mix(x, strip, SR, master, mode="exact").mix.double().numpy()
    fast = render_mix(x, strip, SR, master, mode="fast").mix.double().numpy()
    f, p_exact = ss.welch(exact, fs=SR, nperseg=4096, axis=-1)
    _, p_fast = ss.welch(fast, fs=SR, nperseg=4096, axis=-1)
    band = (f > 30) & (f < 16000)
    level_exact = 10 * np.log10(p_exact[..., band] + 1e-20)
    diff_db = np.abs(10 * np.log10(p_fast[..., band] + 1e-20) - level_exact)
    audible = level_exact > level_exact.max() - 80
    assert np.max(diff_db[audible]) < 0.5


def test_eq_fir_matches_iir_response():
    strip, _ = _random_settings(2, 2, seed=5)
    sos = eq.eq_sos(strip, STRIP, SR)
    fir = eq.eq_fir(sos, SR)
    freqs = np.fft.rfftfreq(1 << 16, 1 / SR)
    h_fir = np.abs(np.fft.rfft(fir.numpy(), n=1 << 16))
    for i in range(2):
        for j in range(2):
            _, h_ref = ss.sosfreqz(sos[i, j].numpy(), worN=freqs, fs=SR)
            sel = freqs > 20
            err = np.abs(20 * np.log10(h_fir[i, j, sel]) - 20 * np.log10(np.abs(h_ref[sel])))
            assert err.max() < 0.5


def test_every_parameter_gets_a_finite_nonzero_gradient():
    x = _music_like(1, 2, 2, 4000, seed=6)
    strip = STRIP.neutral_like(1, 2, dtype=torch.float64)
    active = {"eq.hpf.freq_hz": 120.0, "eq.hpf.mix": 0.7, "eq.low_shelf.gain_db": 4.0, "eq.peak1.gain_db": -5.0,
              "eq.peak2.gain_db": 6.0, "eq.peak3.gain_db": 3.0, "eq.high_shelf.gain_db": -4.0,
              "comp.threshold_db": -30.0, "comp.ratio": 4.0, "comp.attack_ms": 3.0, "comp.release_ms": 40.0,
              "comp.knee_db": 6.0, "comp.makeup_db": 3.0, "sat.drive_db": 12.0, "sat.mix": 0.5,
              "gain_db": -3.0, "pan": 0.3}
    for name, value in active.items():
        strip[..., STRIP.index(name)] = value
    master = MASTER.neutral_like(1, dtype=torch.float64)
    for name, value in active.items():
        if name in MASTER:
            master[..., MASTER.index(name)] = value
    master[..., MASTER.index("output_gain_db")] = -2.0
    for mode in ("exact", "fast"):
        s, m = strip.clone().requires_grad_(), master.clone().requires_grad_()
        out = render_mix(x, s, SR, m, mode=mode)
        (out.mix ** 2).mean().backward()
        for table, grad in ((STRIP, s.grad), (MASTER, m.grad)):
            for i, name in enumerate(table.names):
                g = grad[..., i]
                assert torch.isfinite(g).all(), (mode, table.label, name)
                assert g.abs().max() > 0, (mode, table.label, name)


def test_gradcheck_float64_every_parameter():
    x = _music_like(1, 2, 2, 160, seed=7) * 2
    strip = STRIP.neutral_like(1, 2, dtype=torch.float64)
    for name, value in {"eq.hpf.freq_hz": 300.0, "eq.hpf.mix": 0.6, "eq.low_shelf.gain_db": 4.0,
                        "eq.peak1.gain_db": -5.0, "eq.peak1.q": 2.0, "eq.peak2.gain_db": 6.0,
                        "eq.peak3.gain_db": 3.0, "eq.high_shelf.gain_db": -4.0, "comp.threshold_db": -20.0,
                        "comp.ratio": 3.0, "comp.attack_ms": 0.5, "comp.release_ms": 20.0, "comp.knee_db": 40.0,
                        "comp.makeup_db": 1.0, "sat.drive_db": 6.0, "sat.mix": 0.5, "gain_db": -1.0,
                        "pan": 0.3}.items():
        strip[..., STRIP.index(name)] = value
    strip[..., 1, STRIP.index("pan")] = -0.4
    master = MASTER.neutral_like(1, dtype=torch.float64)
    master[..., MASTER.index("eq.peak2.gain_db")] = 3.0
    master[..., MASTER.index("comp.ratio")] = 2.0
    master[..., MASTER.index("comp.threshold_db")] = -25.0
    master[..., MASTER.index("comp.knee_db")] = 40.0  # wide knee: no kink in the perturbed range
    master[..., MASTER.index("output_gain_db")] = 1.0
    proj = torch.randn(3, 2, 160, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    strip.requires_grad_()
    master.requires_grad_()

    def f(s, m):
        mix = render_mix(x, s, 8000, m).mix[0]
        return torch.einsum("kct,ct->k", proj, mix)

    assert torch.autograd.gradcheck(f, (strip, master), eps=1e-6, atol=1e-5, rtol=1e-3)


def test_errors_name_the_problem():
    x = torch.zeros(1, 2, 2, 100)
    with pytest.raises(SettingsError, match="strip settings must be shaped"):
        render_mix(x, torch.zeros(1, 2, 3), SR)
    with pytest.raises(AudioError, match="channels"):
        render_mix(torch.zeros(1, 2, 3, 100), STRIP.neutral_like(1, 2), SR)
    with pytest.raises(SettingsError, match="mode"):
        render_mix(x, STRIP.neutral_like(1, 2), SR, mode="approx")
    bad = STRIP.neutral_like(1, 2)
    bad[..., STRIP.index("comp.ratio")] = 50.0
    with pytest.raises(SettingsError, match=r"comp\.ratio"):
        render_mix(x, bad, SR)
