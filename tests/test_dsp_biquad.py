"""Biquad design, response and filtering against scipy.signal (independent reference)."""
import math

import numpy as np
import pytest
import scipy.signal as ss
import torch

from automix.dsp import biquad as bq

SR = 44100


def _cookbook_numpy(kind, f0, gain_db, q, fs=SR):
    """Independent numpy transcription of the RBJ cookbook (b, a), un-normalised."""
    A = 10 ** (gain_db / 40)
    w0 = 2 * math.pi * f0 / fs
    c, s = math.cos(w0), math.sin(w0)
    al = s / (2 * q)
    if kind == "hp":
        return [(1 + c) / 2, -(1 + c), (1 + c) / 2], [1 + al, -2 * c, 1 - al]
    if kind == "lp":
        return [(1 - c) / 2, 1 - c, (1 - c) / 2], [1 + al, -2 * c, 1 - al]
    if kind == "peak":
        return [1 + al * A, -2 * c, 1 - al * A], [1 + al / A, -2 * c, 1 - al / A]
    sa = 2 * math.sqrt(A) * al
    if kind == "ls":
        return ([A * ((A + 1) - (A - 1) * c + sa), 2 * A * ((A - 1) - (A + 1) * c), A * ((A + 1) - (A - 1) * c - sa)],
                [(A + 1) + (A - 1) * c + sa, -2 * ((A - 1) + (A + 1) * c), (A + 1) + (A - 1) * c - sa])
    return ([A * ((A + 1) + (A - 1) * c + sa), -2 * A * ((A - 1) + (A + 1) * c), A * ((A + 1) + (A - 1) * c - sa)],
            [(A + 1) - (A - 1) * c + sa, 2 * ((A - 1) - (A + 1) * c), (A + 1) - (A - 1) * c - sa])


def _design(kind, f0, gain_db, q):
    f, g, qq = (torch.tensor(v, dtype=torch.float64) for v in (f0, gain_db, q))
    if kind == "hp":
        return bq.design_highpass(f, qq, SR)
    if kind == "lp":
        return bq.design_lowpass(f, qq, SR)
    if kind == "peak":
        return bq.design_peaking(f, g, qq, SR)
    if kind == "ls":
        return bq.design_low_shelf(f, g, SR, qq)
    return bq.design_high_shelf(f, g, SR, qq)


CASES = [("hp", 80.0, 0.0, 0.7071), ("hp", 20.0, 0.0, 0.7071), ("lp", 5000.0, 0.0, 0.7071),
         ("peak", 40.0, 12.0, 10.0), ("peak", 1000.0, -15.0, 0.3), ("peak", 12000.0, 6.0, 2.0),
         ("ls", 100.0, 9.0, 0.7071), ("ls", 300.0, -15.0, 0.7071), ("hs", 6000.0, 15.0, 0.7071),
         ("hs", 2000.0, -8.0, 0.7071)]


@pytest.mark.parametrize("kind,f0,gain_db,q", CASES)
def test_magnitude_matches_scipy_freqz(kind, f0, gain_db, q):
    b_ref, a_ref = _cookbook_numpy(kind, f0, gain_db, q)
    b, a = _design(kind, f0, gain_db, q)
    freqs = np.geomspace(10, 21000, 400)
    _, h_ref = ss.freqz(b_ref, a_ref, worN=freqs, fs=SR)
    h = bq.biquad_response(b, a, torch.from_numpy(freqs), SR)
    mag_ref = 20 * np.log10(np.maximum(np.abs(h_ref), 1e-12))
    mag = bq.magnitude_db(h).numpy()
    sel = mag_ref > -100  # compare in dB where the response is not essentially zero
    assert np.max(np.abs(mag[sel] - mag_ref[sel])) < 0.1
    np.testing.assert_allclose(np.angle(h.numpy()[sel]), np.angle(h_ref[sel]), atol=1e-6)
    # the design meets its spec: peak/shelf gain at its frequency, -3 dB at the high-pass cutoff
    at = bq.magnitude_db(bq.biquad_response(b, a, torch.tensor([f0], dtype=torch.float64), SR)).item()
    expected = {"hp": -3.01, "lp": -3.01, "peak": gain_db, "ls": gain_db / 2, "hs": gain_db / 2}[kind]
    assert at == pytest.approx(expected, abs=0.05)


def test_design_broadcasts_over_leading_shapes():
    f = torch.tensor([[100.0, 200.0, 300.0]] * 2, dtype=torch.float64)
    b, a = bq.design_peaking(f, torch.tensor(3.0), 1.0, SR)
    assert b.shape == (2, 3, 3) and torch.all(a[..., 0] == 1)
    sos = torch.stack([bq.to_sos(*bq.design_highpass(f, 0.7, SR)), bq.to_sos(b, a)], dim=-2)
    assert sos.shape == (2, 3, 2, 6)
    freqs = torch.linspace(20, 20000, 64)
    h = bq.sos_response(sos, freqs, SR)
    assert h.shape == (2, 3, 64)
    _, h_ref = ss.sosfreqz(sos[1, 2].double().numpy(), worN=freqs.double().numpy(), fs=SR)
    np.testing.assert_allclose(np.abs(h[1, 2].numpy()), np.abs(h_ref), rtol=1e-4, atol=1e-6)


def test_filtering_matches_scipy_lfilter_and_sosfilt():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 8000))
    sections = [_cookbook_numpy(*c) for c in CASES[:6]]
    sos = np.array([np.r_[b, a] for b, a in sections])  # (6, 6) cascade
    y = bq.apply_sos(torch.from_numpy(x), torch.from_numpy(sos)).numpy()
    ref = x
    for b, a in sections:
        ref = ss.lfilter(b, a, ref, axis=-1)
    assert np.max(np.abs(y - ref)) < 1e-5
    # one biquad, float32 signal (float64 coefficients) -> float32 out, within 1e-5 of lfilter
    b, a = sections[3]
    y1 = bq.apply_biquad(torch.from_numpy(x).float(), torch.tensor(b, dtype=torch.float64),
                         torch.tensor(a, dtype=torch.float64))
    assert y1.dtype == torch.float32
    assert np.max(np.abs(y1.double().numpy() - ss.lfilter(b, a, x, axis=-1))) < 1e-5


def test_per_row_coefficients_and_carried_state_equal_one_piece():
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.standard_normal((2, 3, 5000)))
    f = torch.tensor([[50.0, 500.0, 5000.0], [80.0, 800.0, 8000.0]], dtype=torch.float64)
    sos = torch.stack([bq.to_sos(*bq.design_peaking(f, 6.0, 4.0, SR)),
                       bq.to_sos(*bq.design_highpass(f / 2, 0.7, SR))], dim=-2)  # (2, 3, 2, 6)
    whole = bq.apply_sos(x, sos)
    for r in range(2):
        for c in range(3):
            ref = ss.sosfilt(sos[r, c].numpy(), x[r, c].numpy())
            assert np.max(np.abs(whole[r, c].numpy() - ref)) < 1e-9
    parts, state = [], None
    for start in range(0, 5000, 1234):
        y, state = bq.apply_sos(x[..., start:start + 1234], sos, zi=state, return_state=True)
        parts.append(y)
    assert torch.max(torch.abs(torch.cat(parts, -1) - whole)) < 1e-12


def test_filter_gradients_match_finite_differences():
    torch.manual_seed(0)
    x = torch.randn(2, 60, dtype=torch.float64, requires_grad=True)
    f = torch.tensor([300.0, 2000.0], dtype=torch.float64, requires_grad=True)
    g = torch.tensor([4.0, -3.0], dtype=torch.float64, requires_grad=True)
    q = torch.tensor([2.0, 0.5], dtype=torch.float64, requires_grad=True)

    def run(x, f, g, q):
        sos = torch.stack([bq.to_sos(*bq.design_peaking(f, g, q, 8000)),
                           bq.to_sos(*bq.design_low_shelf(f / 2, g, 8000))], dim=-2)
        return bq.apply_sos(x, sos)

    assert torch.autograd.gradcheck(run, (x, f, g, q), eps=1e-6, atol=1e-6)
