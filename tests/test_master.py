"""Mastering: loudness landing, presets, tonal/width matching, report, album, bad inputs, CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from automix.errors import AudioError, OutputExistsError, SettingsError
from automix.loudness import integrated_loudness, third_octave_spectrum, true_peak_dbtp
from automix.mastering import MasteringOptions, PRESETS_LUFS, master, master_audio, target_lufs
from automix.mastering.landing import land_loudness
from master_signals import song

torch.set_num_threads(1)
SR = 44100


def _tonal_distance(a, b, sr=SR):
    f, x = third_octave_spectrum(a, sr)
    _, y = third_octave_spectrum(b, sr)
    sel = (f >= 31) & (f <= 16200)
    d = (x[sel] - x[sel].mean()) - (y[sel] - y[sel].mean())
    return float(np.sqrt(np.mean(d ** 2)))


# ------------------------------------------------------------------ presets
def test_preset_values():
    assert PRESETS_LUFS["spotify"] == -14 and PRESETS_LUFS["apple"] == -16 and PRESETS_LUFS["deezer"] == -15
    for name in ("youtube", "tidal", "amazon", "soundcloud"):
        assert target_lufs(name) == -14.0
    assert target_lufs("EBU") == target_lufs("broadcast") == -23.0
    assert target_lufs("aes") == -16.0 and target_lufs("cd") == target_lufs("loud") == -9.0
    assert target_lufs("-12.5") == -12.5 and target_lufs("-11 LUFS") == -11.0 and target_lufs(-20) == -20.0
    with pytest.raises(SettingsError, match="unknown loudness target"):
        target_lufs("napster")
    with pytest.raises(SettingsError, match="outside"):
        target_lufs(+3)


# ------------------------------------------------------------------ loudness landing
@pytest.mark.parametrize("target", [-10.0, -14.0, -23.0])
def test_loudness_lands_within_0_1_lu_after_limiting(target):
    x = song(4.0, SR, seed=2, level_db=-24.0)
    out = land_loudness(x, SR, target, ceiling_dbtp=-1.0, max_limiting_db=20.0)
    assert abs(integrated_loudness(out.samples, SR) - target) <= 0.1
    assert true_peak_dbtp(out.samples, SR) <= -1.0
    assert out.reached


def test_too_much_limiting_stops_at_safe_level_with_message():
    x = song(4.0, SR, seed=3, level_db=-30.0)
    out = land_loudness(x, SR, -5.0, ceiling_dbtp=-1.0, max_limiting_db=3.0)
    assert not out.reached
    assert out.max_gain_reduction_db <= 3.0 + 0.1
    assert integrated_loudness(out.samples, SR) < -5.5
    assert any("more than 3 dB of limiting" in w and "safe level" in w for w in out.warnings)
    assert true_peak_dbtp(out.samples, SR) <= -1.0


def test_input_louder_than_target_is_turned_down():
    x = song(4.0, SR, seed=4, level_db=-8.0)
    r = master_audio(x, SR, options=MasteringOptions(target="ebu"))
    assert abs(r.integrated_lufs - (-23.0)) <= 0.1
    assert r.true_peak_dbtp <= -1.0
    assert any("turned down" in w for w in r.warnings)


def test_no_limiter_gives_plain_gain_float_master(tmp_path):
    x = song(4.0, SR, seed=5, level_db=-20.0)
    path = tmp_path / "mix.wav"
    sf.write(path, x.T, SR, subtype="FLOAT")
    r = master(path, tmp_path / "out.wav", target="cd", limiter=False, eq=False, dynamics=False)
    data, rate = sf.read(tmp_path / "out.wav", always_2d=True)
    assert rate == SR
    assert abs(integrated_loudness(data.T, SR) - (-9.0)) <= 0.05
    assert np.abs(data).max() > 1.0  # unlimited: above full scale, kept by the float file
    assert sf.info(str(tmp_path / "out.wav")).subtype == "FLOAT"
    assert r.landing.max_gain_reduction_db == 0.0


# ------------------------------------------------------------------ matching
def test_reference_matching_restores_tone_width_and_loudness():
    ref = song(4.0, SR, seed=6, level_db=-14.0, bright=1.0, width=0.4)
    # the "mix": the same music, dull (-8 dB treble shelf), narrow and 9 dB quieter
    from scipy.signal import sosfilt
    from automix.dsp.biquad import design_high_shelf
    b, a = design_high_shelf(torch.tensor(3000.0, dtype=torch.float64), torch.tensor(-8.0, dtype=torch.float64), SR)
    dull = sosfilt(np.concatenate([b.numpy(), a.numpy()])[None], ref, axis=-1)
    mid, side = 0.5 * (dull[0] + dull[1]), 0.25 * (dull[0] - dull[1])
    mix = (np.stack([mid + side, mid - side]) * 10 ** (-9 / 20)).astype(np.float32)
    r = master_audio(mix, SR, [(ref, SR)])
    assert abs(r.integrated_lufs - integrated_loudness(ref, SR)) <= 0.1
    assert r.true_peak_dbtp <= -1.0
    before, after = _tonal_distance(mix, ref), _tonal_distance(r.samples, ref)
    assert before > 3.0 and after < 1.0
    # narrower mix gets wider: side level raised in the mid region
    assert r.settings.get("width.mid_side_db") > 3.0
    # readable: the parametric bands give a treble boost
    assert r.settings.get("eq.high_shelf.gain_db") > 1.0 or r.settings.get("eq.peak3.gain_db") > 1.0


def test_amount_and_switches():
    ref = song(4.0, SR, seed=7, level_db=-14.0, bright=2.0)
    mix = song(4.0, SR, seed=7, level_db=-20.0, bright=0.5)
    full = master_audio(mix, SR, [(ref, SR)], MasteringOptions(dynamics=False))
    half = master_audio(mix, SR, [(ref, SR)], MasteringOptions(eq_amount=0.5, dynamics=False))
    off = master_audio(mix, SR, [(ref, SR)], MasteringOptions(eq=False, width=False, dynamics=False))
    d_full, d_half, d_off = (_tonal_distance(r.samples, ref) for r in (full, half, off))
    assert d_full < d_half < d_off
    assert off.settings.fine_db is None and not off.settings.eq_active
    assert off.settings.get("width.mid_side_db") == 0.0


def test_several_references_with_weights():
    bright = song(4.0, SR, seed=8, level_db=-16.0, bright=2.5)
    dark = song(4.0, SR, seed=9, level_db=-20.0, bright=0.3)
    mix = song(4.0, SR, seed=10, level_db=-20.0)
    to_bright = master_audio(mix, SR, [(bright, SR), (dark, SR)], MasteringOptions(reference_weights=[1.0, 0.0]))
    to_dark = master_audio(mix, SR, [(bright, SR), (dark, SR)], MasteringOptions(reference_weights=[0.0, 1.0]))
    assert _tonal_distance(to_bright.samples, bright) < _tonal_distance(to_dark.samples, bright)
    assert abs(to_bright.integrated_lufs - integrated_loudness(bright, SR)) <= 0.1
    assert abs(to_dark.integrated_lufs - integrated_loudness(dark, SR)) <= 0.1


def test_reference_at_other_rate_and_mono_is_handled():
    mix = song(4.0, 48000, seed=11, level_db=-20.0)
    ref_mono = song(4.0, 22050, seed=12, level_db=-14.0)[:1]
    r = master_audio(mix, 48000, [(ref_mono, 22050)])
    assert r.sample_rate == 48000 and r.samples.shape == mix.shape  # native rate kept
    assert any("mono" in w for w in r.warnings)
    assert r.settings.get("width.mid_side_db") == 0.0  # a mono reference does not collapse the width
    assert abs(r.integrated_lufs - integrated_loudness(np.repeat(ref_mono, 2, 0), 22050)) <= 0.1


# ------------------------------------------------------------------ bad inputs
@pytest.mark.parametrize("case, message", [
    ("silent", "silent"), ("short", "at least 3 s"), ("nan", "NaN"), ("inf", "NaN or infinite"),
])
def test_bad_inputs_clear_messages(case, message):
    x = song(4.0, SR, seed=13)
    if case == "silent":
        x = np.zeros_like(x)
    elif case == "short":
        x = x[:, : SR * 2]
    elif case == "nan":
        x[0, 100] = np.nan
    elif case == "inf":
        x[1, 5] = np.inf
    with pytest.raises(AudioError, match=message):
        master_audio(x, SR, options=MasteringOptions(target="spotify"))
    good = song(4.0, SR, seed=14)
    with pytest.raises(AudioError, match=message):  # the same checks for a reference
        master_audio(good, SR, [(x, SR)])


def test_clipped_input_is_mastered_with_a_warning():
    x = np.clip(song(4.0, SR, seed=15, level_db=-6.0) * 3.0, -1.0, 1.0)
    r = master_audio(x, SR, options=MasteringOptions(target=-14))
    assert any("clipped" in w for w in r.warnings)
    assert abs(r.integrated_lufs + 14) <= 0.1 and r.true_peak_dbtp <= -1.0


def test_bad_options():
    x = song(4.0, SR, seed=16)
    with pytest.raises(SettingsError, match="eq-amount"):
        master_audio(x, SR, options=MasteringOptions(eq_amount=5.0))
    with pytest.raises(SettingsError, match="ceiling"):
        master_audio(x, SR, options=MasteringOptions(ceiling_dbtp=2.0))


# ------------------------------------------------------------------ files: report, preview, album, CLI
def _write(path, x, rate=SR, subtype="PCM_24"):
    sf.write(path, x.T, rate, subtype=subtype)
    return path


def test_report_and_preview_files(tmp_path):
    mix = _write(tmp_path / "mix.wav", song(4.0, SR, seed=17, level_db=-22.0))
    ref = _write(tmp_path / "ref.flac", song(4.0, SR, seed=18, level_db=-16.0, bright=1.5))
    r = master(mix, tmp_path / "out.flac", reference=ref, bit_depth="16", report_dir=tmp_path / "rep",
               preview_dir=tmp_path / "rep")
    assert sf.info(str(tmp_path / "out.flac")).subtype == "PCM_16"
    data = json.loads((tmp_path / "rep" / "out.report.json").read_text())
    assert data["after"]["integrated_lufs"] == pytest.approx(data["target_lufs"], abs=0.1)
    assert data["before"]["integrated_lufs"] < data["after"]["integrated_lufs"] - 5
    assert data["after"]["true_peak_dbtp"] <= -1.0
    assert "eq.high_shelf.gain_db" in data["settings"] and data["settings_readable"]
    stage = data["loudness_stage"]  # gain reduction and distortion figures of the loudness stage
    assert stage["limiter_gain_reduction_db"] >= 0 and stage["clip_reduction_db"] >= 0
    assert stage["distortion"]["loudest_10pct_db"] <= -12.0 and stage["distortion"]["overall_db"] < 0
    png = (tmp_path / "rep" / "out.report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20000
    a, rate_a = sf.read(tmp_path / "rep" / "out.preview-A-input.wav", always_2d=True)
    b, _ = sf.read(tmp_path / "rep" / "out.preview-B-master.wav", always_2d=True)
    assert rate_a == SR and a.shape == b.shape
    assert integrated_loudness(a.T, SR) == pytest.approx(integrated_loudness(b.T, SR), abs=0.05)
    assert [p.name for p in r.preview_paths] == ["out.preview-A-input.wav", "out.preview-B-master.wav"]
    with pytest.raises(OutputExistsError):
        master(mix, tmp_path / "out.flac", reference=ref)
    with pytest.raises(OutputExistsError, match="input"):
        master(mix, mix, reference=ref, overwrite=True)


def test_preview_picks_loudest_stretch():
    from automix.mastering.preview import loudest_window
    quiet = song(40.0, 8000, seed=19, level_db=-40.0)
    quiet[:, 8000 * 20: 8000 * 35] *= 30.0
    start, stop = loudest_window(quiet, 8000, 10.0)
    assert 8000 * 20 <= start and stop <= 8000 * 35 + 8000


def test_album_consistent_loudness_and_tone(tmp_path):
    from automix.mastering.album import master_album
    paths = [_write(tmp_path / f"t{i}.wav", song(4.0, SR, seed=20 + i, level_db=lvl, bright=br))
             for i, (lvl, br) in enumerate([(-26.0, 0.4), (-12.0, 2.0), (-18.0, 1.0)])]
    album = master_album(paths, tmp_path / "album", target="spotify")
    values = [integrated_loudness(sf.read(r.output_path, always_2d=True)[0].T, SR) for r in album.tracks]
    assert max(values) - min(values) <= 0.2 and abs(np.mean(values) + 14) <= 0.1
    assert album.loudness_spread_lu <= 0.2
    inputs = [sf.read(p, always_2d=True)[0].T for p in paths]
    outs = [r.samples for r in album.tracks]
    assert _tonal_distance(outs[0], outs[1]) < 0.5 * _tonal_distance(inputs[0], inputs[1])


def test_cli_master_and_errors(tmp_path, capsys):
    from automix.cli import main
    mix = _write(tmp_path / "mix.wav", song(4.0, SR, seed=30, level_db=-20.0))
    assert main(["master", str(mix), "-o", str(tmp_path / "m.wav"), "--target", "apple", "--eq-amount", "70%",
                 "--bit-depth", "16"]) == 0
    out = capsys.readouterr().out
    assert "LUFS (target -16.0)" in out
    data, _ = sf.read(tmp_path / "m.wav", always_2d=True)
    assert abs(integrated_loudness(data.T, SR) + 16.0) <= 0.1 and true_peak_dbtp(data.T, SR) <= -1.0
    silent = _write(tmp_path / "silent.wav", np.zeros((2, SR * 4), np.float32))
    assert main(["master", str(silent), "-o", str(tmp_path / "s.wav")]) == 2
    assert "silent" in capsys.readouterr().err
    assert main(["master", str(mix), "-o", str(tmp_path / "x.wav"), "--target", "napster"]) == 2
    assert "unknown loudness target" in capsys.readouterr().err


def test_dc_offset_is_filtered_out_of_the_master_and_reported():
    from automix.dsp.dc import dc_offset

    x = song(4.0, SR, seed=6, level_db=-22.0)
    x = (x - x.mean(axis=-1, keepdims=True)).astype(np.float32)  # the synthetic song itself has 0.1 % DC
    x_dc = (x + 0.02).astype(np.float32)  # +2 % of full scale on both channels
    r = master_audio(x_dc, SR, options=MasteringOptions(target="spotify"))
    assert any("DC offset of 2.00%" in w for w in r.warnings)
    assert dc_offset(r.samples[:, SR:]) < 1e-4  # after the filter settles (5 Hz: well inside 1 s)
    assert abs(r.integrated_lufs - (-14.0)) <= 0.1 and r.true_peak_dbtp <= -1.0
    clean = master_audio(x, SR, options=MasteringOptions(target="spotify"))
    assert not any("DC offset" in w for w in clean.warnings) and clean.settings.dc_cutoff_hz == 0.0
    # The music itself is unchanged by the DC filter: same spectrum as the clean master within 0.2 dB.
    assert _tonal_distance(r.samples[:, SR:], clean.samples[:, SR:]) < 0.2


def test_dc_filter_blockwise_equals_scipy_in_one_piece():
    from scipy.signal import butter, sosfilt

    from automix.dsp.dc import DC_CUTOFF_HZ, remove_dc

    x = (song(3.0, SR, seed=7) + 0.01).astype(np.float32)
    y = remove_dc(x, SR, block=10007)  # odd block size: state carried across uneven blocks
    ref = sosfilt(butter(2, DC_CUTOFF_HZ, btype="highpass", fs=SR, output="sos"), x.astype(np.float64), axis=-1)
    assert np.abs(y - ref).max() < 1e-6
    inplace = x.copy()
    assert remove_dc(inplace, SR, out=inplace) is inplace and np.array_equal(inplace, y)
