"""automix.mixing: loading any stems, predicting, amount/trims, full-length rendering, outputs, bad input."""
import json

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf
import torch
from mix_models import opinionated_model_checkpoint

from automix.dsp.params import STRIP
from automix.errors import AudioError, ModelError, OutputExistsError, SettingsError
from automix.mixing import apply_amount_and_trims, load_stems, mix, render, suggest
from automix.model.roles import ROLES
from automix.settings_io import load_settings, save_settings

torch.set_num_threads(1)
SR = 22050


def _signal(kind: str, seconds: float, sr: int = SR, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    if kind == "kick":
        mono = 0.6 * np.exp(-20 * ((t * 2) % 1)) * np.sin(2 * np.pi * 60 * t)
    elif kind == "bass":
        mono = 0.3 * np.sin(2 * np.pi * 82.4 * t)
    elif kind == "vocals":
        mono = sum(0.1 / k * np.sin(2 * np.pi * 220 * k * t) for k in range(1, 8)) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))
    else:
        mono = 0.05 * rng.standard_normal(len(t))
    return np.stack([mono, 0.9 * mono]).T.astype(np.float32)


def _write_song(folder, names=("kick.wav", "bass.wav", "vocals.wav"), seconds=1.5, sr=SR):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        kind = name.split(".")[0]
        sf.write(folder / name, _signal(kind, seconds, sr, seed=i), sr, subtype="FLOAT")
    return folder


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return opinionated_model_checkpoint(tmp_path_factory.mktemp("model"), seed=0)


def _read(path):
    data, sr = sf.read(path, dtype="float32", always_2d=True)
    return data.T, sr


def test_mix_writes_mix_stems_and_settings_that_agree(tmp_path, model_path):
    song = _write_song(tmp_path / "song")
    report = mix(song, tmp_path / "mix.wav", model=model_path, stems_out=tmp_path / "stems",
                 settings_out=tmp_path / "settings.json", subtype="FLOAT")
    mixed, sr = _read(tmp_path / "mix.wav")
    assert sr == SR and mixed.shape == (2, int(1.5 * SR))
    stems = [_read(tmp_path / "stems" / n)[0] for n in ("kick.wav", "bass.wav", "vocals.wav")]
    assert np.abs(np.sum(stems, axis=0) - mixed).max() < 1e-5  # processed stems sum to the mix
    plain_sum = sum(_read(song / n)[0] for n in ("kick.wav", "bass.wav", "vocals.wav"))
    assert np.abs(mixed - plain_sum).max() > 1e-2  # the model really changed the mix
    saved = json.loads((tmp_path / "settings.json").read_text())
    assert [s["file"] for s in saved["stems"]] == ["bass.wav", "kick.wav", "vocals.wav"]
    assert {s["role"] for s in saved["stems"]} == {"kick", "bass", "vocals"}
    assert report.settings_path == tmp_path / "settings.json"
    meter = pyloudnorm.Meter(SR)
    assert abs(report.loudness_lufs - meter.integrated_loudness(mixed.T)) < 0.5
    # Rendering the saved settings reproduces the mix exactly (the render half of suggest -> edit -> render).
    again = mix(song, tmp_path / "again.wav", settings=tmp_path / "settings.json", subtype="FLOAT")
    assert np.abs(_read(again.mix_path)[0] - mixed).max() < 1e-6


def test_blockwise_render_equals_one_block(tmp_path, model_path):
    stems = load_stems(_write_song(tmp_path / "song", seconds=1.0))
    settings, _ = suggest(stems, model=model_path)
    values = settings.strip_values()
    whole, per_stem = render(stems, values, keep_stems=True, block_seconds=10.0)
    blocks, _ = render(stems, values, block_seconds=0.13)
    assert torch.allclose(whole, blocks, atol=1e-5)
    assert torch.allclose(per_stem.sum(0), whole, atol=1e-5)


def test_amount_zero_is_the_plain_sum_and_amount_interpolates(tmp_path, model_path):
    song = _write_song(tmp_path / "song")
    mix(song, tmp_path / "zero.wav", model=model_path, amount_percent=0, subtype="FLOAT")
    plain_sum = load_stems(song).audio.sum(0).numpy()  # the stems as loaded (DC offsets removed)
    assert np.abs(_read(tmp_path / "zero.wav")[0] - plain_sum).max() < 1e-4
    full, _ = suggest(song, model=model_path)
    half, _ = suggest(song, model=model_path, amount_percent=50)
    f, h = full.strip_values(), half.strip_values()
    g = STRIP.index("gain_db")
    assert torch.allclose(h[:, g], f[:, g] / 2, atol=1e-3)
    q = STRIP.index("eq.peak2.freq_hz")  # log-scaled: geometric mean with neutral
    assert torch.allclose(h[:, q], torch.sqrt(f[:, q] * STRIP.neutral[q]), rtol=1e-3)
    assert half.amount_percent == 50


def test_group_trims_move_only_their_group(tmp_path, model_path):
    import re

    song = _write_song(tmp_path / "song")
    before = mix(song, tmp_path / "a.wav", model=model_path, stems_out=tmp_path / "a", subtype="FLOAT")
    report = mix(song, tmp_path / "b.wav", model=model_path, stems_out=tmp_path / "b", subtype="FLOAT",
                 group_trims_db={"vocals": 4.0, "bass": -3.0}, settings_out=tmp_path / "b.yaml")
    meter = pyloudnorm.Meter(SR)
    change = {n: meter.integrated_loudness(_read(tmp_path / "b" / n)[0].T) - meter.integrated_loudness(
        _read(tmp_path / "a" / n)[0].T) for n in ("kick.wav", "bass.wav", "vocals.wav")}

    def headroom_trim(r) -> float:  # "every fader lowered by X dB so the mix peaks at ..." (0 when absent)
        found = [float(m.group(1)) for n in r.notes for m in [re.search(r"every fader lowered by ([0-9.]+) dB", n)] if m]
        return -found[0] if found else 0.0

    # the untouched group moves only by the difference of the two mixes' common headroom trims
    common = headroom_trim(report) - headroom_trim(before)
    assert abs(change["kick.wav"] - common) < 0.1  # the notes round to 0.1 dB
    # relative to it, the trimmed groups move by exactly their trims
    assert abs(change["vocals.wav"] - change["kick.wav"] - 4.0) < 0.05
    assert abs(change["bass.wav"] - change["kick.wav"] + 3.0) < 0.05
    saved = load_settings(tmp_path / "b.yaml")
    assert saved.group_trims_db["vocals"] == 4.0 and report.settings.group_trims_db["bass"] == -3.0


def test_apply_amount_and_trims_validates():
    values = STRIP.neutral.repeat(2, 1)
    with pytest.raises(SettingsError, match="between 0 and 100"):
        apply_amount_and_trims(values, [1, 16], amount_percent=120)
    with pytest.raises(SettingsError, match="unknown group 'horns'"):
        apply_amount_and_trims(values, [1, 16], group_trims_db={"horns": 1})
    # Faders stay inside their range.
    out = apply_amount_and_trims(values, [1, 16], group_trims_db={"drums": 100})
    assert out[0, STRIP.index("gain_db")] == STRIP.spec("gain_db").maximum


# ----------------------------------------------------------------------------- bad input
def test_empty_folder_and_missing_path(tmp_path, model_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no audio here")
    with pytest.raises(AudioError, match="no audio files in folder"):
        mix(tmp_path / "empty", tmp_path / "m.wav", model=model_path)
    with pytest.raises(AudioError, match="does not exist"):
        load_stems(tmp_path / "nope")


def test_one_stem(tmp_path, model_path):
    song = _write_song(tmp_path / "song", names=("vocals.wav",))
    report = mix(song, tmp_path / "m.wav", model=model_path, stems_out=tmp_path / "s", subtype="FLOAT")
    mixed, _ = _read(report.mix_path)
    assert np.abs(mixed - _read(tmp_path / "s" / "vocals.wav")[0]).max() < 1e-6
    assert mixed.shape[-1] == int(1.5 * SR) and np.abs(mixed).max() > 1e-3


def test_peaks_measured_while_reading_are_the_loaded_audio_peaks(tmp_path):
    """The reader's peaks (from the decoders, or re-measured after resampling / DC removal)
    equal the peaks of the audio handed to the model, which tidy_settings relies on."""
    song = _write_song(tmp_path / "song", names=("kick.wav", "bass.wav"))
    sf.write(song / "pad.wav", _signal("noise", 1.0, 44100) + 0.05, 44100, subtype="PCM_24")  # resampled, DC
    sf.write(song / "keys.wav", _signal("vocals", 1.5), SR, subtype="PCM_16")
    stems = load_stems(song)
    measured = 20 * np.log10(stems.audio.abs().amax(dim=(1, 2)).numpy())
    assert len(stems.peaks_dbfs) == stems.num_stems == 4
    np.testing.assert_allclose(stems.peaks_dbfs, measured, atol=1e-4)


def test_different_sample_rates_are_resampled(tmp_path, model_path):
    song = tmp_path / "song"
    song.mkdir()
    sf.write(song / "bass.wav", _signal("bass", 1.0, 44100), 44100, subtype="PCM_24")
    sf.write(song / "kick.wav", _signal("kick", 1.0, 44100), 44100, subtype="PCM_24")
    sf.write(song / "vocals.flac", _signal("vocals", 1.0, 22050), 22050)
    stems = load_stems(song)
    assert stems.sample_rate == 44100 and stems.audio.shape == (3, 2, 44100)
    assert any("vocals.flac resampled from 22050 Hz to 44100 Hz" in n for n in stems.notes)
    # The resampled vocal keeps its pitch: strongest bin still at 220 Hz.
    spectrum = np.abs(np.fft.rfft(stems.audio[2, 0].numpy()))
    assert abs(np.argmax(spectrum) * 44100 / 44100 - 220) < 2
    report = mix(stems, tmp_path / "m.wav", model=model_path)
    assert _read(report.mix_path)[1] == 44100
    forced = load_stems(song, sample_rate=22050)
    assert forced.sample_rate == 22050 and forced.audio.shape[-1] == 22050


def test_silent_stem_is_left_untouched_and_reported(tmp_path, model_path):
    song = _write_song(tmp_path / "song")
    sf.write(song / "guitar.wav", np.zeros((SR, 2), np.float32), SR)
    report = mix(song, tmp_path / "m.wav", model=model_path, stems_out=tmp_path / "s",
                 settings_out=tmp_path / "s.json", subtype="FLOAT")
    assert any("guitar.wav is silent" in n for n in report.notes)
    entry = next(s for s in report.settings.stems if s.file == "guitar.wav")
    assert entry.silent and torch.allclose(entry.values(), STRIP.neutral)
    assert np.abs(_read(tmp_path / "s" / "guitar.wav")[0]).max() == 0
    # The silent stem does not change the others' settings.
    without, _ = suggest([song / n for n in ("bass.wav", "kick.wav", "vocals.wav")], model=model_path)
    others = [s for s in report.settings.stems if s.file != "guitar.wav"]
    mixed, suggested = torch.stack([s.values() for s in others]), without.strip_values()
    # `mix` may lower every fader by one headroom trim (noted) that `suggest` does not apply
    gain = STRIP.index("gain_db")
    trim = mixed[:, gain] - suggested[:, gain]
    assert torch.allclose(trim, trim[0].expand_as(trim), atol=1e-4) and float(trim[0]) <= 1e-4
    if float(trim[0]) < -1e-4:
        assert any("every fader lowered by" in n for n in report.notes)
    keep = [k for k in range(STRIP.size) if k != gain]
    assert torch.allclose(mixed[:, keep], suggested[:, keep], atol=1e-4)


def test_corrupt_file_is_named_and_the_rest_are_mixed(tmp_path, model_path):
    song = _write_song(tmp_path / "song")
    (song / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    report = mix(song, tmp_path / "m.wav", model=model_path)
    assert [s.file for s in report.settings.stems] == ["bass.wav", "kick.wav", "vocals.wav"]
    assert any("broken.wav" in n and "skipped" in n for n in report.notes)
    assert _read(report.mix_path)[0].shape[-1] == int(1.5 * SR)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.wav").write_bytes(b"garbage")
    with pytest.raises(AudioError, match="a.wav"):
        load_stems(tmp_path / "bad")


def test_more_than_64_stems_is_a_clear_error(tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    short = _signal("noise", 0.05)
    for i in range(65):
        sf.write(folder / f"s{i:02d}.wav", short, SR)
    with pytest.raises(AudioError, match="65 stems given, but automix mixes at most 64"):
        load_stems(folder)


def test_much_longer_stem_sets_the_length(tmp_path, model_path):
    song = _write_song(tmp_path / "song", seconds=1.0)
    sf.write(song / "pad.wav", _signal("noise", 6.0), SR, subtype="FLOAT")
    report = mix(song, tmp_path / "m.wav", model=model_path, stems_out=tmp_path / "s", subtype="FLOAT")
    mixed, _ = _read(report.mix_path)
    assert mixed.shape[-1] == 6 * SR
    assert any("pad.wav is much longer" in n for n in report.notes)
    kick, _ = _read(tmp_path / "s" / "kick.wav")
    assert kick.shape[-1] == 6 * SR and np.abs(kick[:, int(1.2 * SR):]).max() < 1e-3  # padding stays quiet
    assert np.abs(mixed[:, 3 * SR:]).max() > 1e-3  # the long stem plays to the end


# ----------------------------------------------------------------------------- outputs and model
def test_outputs_are_never_overwritten_silently(tmp_path, model_path):
    song = _write_song(tmp_path / "song")
    mix(song, tmp_path / "m.wav", model=model_path)
    with pytest.raises(OutputExistsError, match="already exists"):
        mix(song, tmp_path / "m.wav", model=model_path)
    with pytest.raises(OutputExistsError, match="input"):
        mix(song, song / "kick.wav", model=model_path, overwrite=True)
    mix(song, tmp_path / "m.wav", model=model_path, overwrite=True)


def test_missing_weights_fail_clearly(tmp_path):
    song = _write_song(tmp_path / "song")
    with pytest.raises(ModelError, match="no mix-model weights"):
        mix(song, tmp_path / "m.wav", model=tmp_path / "nothing.pt")
    assert not (tmp_path / "m.wav").exists()


def test_settings_must_match_the_stems(tmp_path, model_path):
    song = _write_song(tmp_path / "song")
    settings, _ = suggest(song, model=model_path)
    settings.stems[0].file = "other_name.wav"
    save_settings(tmp_path / "s.json", settings)
    with pytest.raises(SettingsError, match="no settings for stem.*bass.wav.*not given: other_name.wav"):
        mix(song, tmp_path / "m.wav", settings=tmp_path / "s.json")


def test_reference_mix_conditions_the_settings(tmp_path, model_path):
    song = _write_song(tmp_path / "song")
    ref = tmp_path / "ref.wav"
    sf.write(ref, _signal("noise", 2.0, 44100), 44100)
    with_ref, _ = suggest(song, model=model_path, reference=ref)
    plain, _ = suggest(song, model=model_path)
    assert with_ref.strip_values().shape == plain.strip_values().shape
    assert not torch.allclose(with_ref.strip_values(), plain.strip_values())


def test_reference_mix_moves_the_faders_toward_its_balance(tmp_path, model_path):
    """A reference of the same stems with the vocals 12 dB down: fitting the faders to it
    (the default) lowers the vocals against kick and bass compared with the model alone."""
    song = _write_song(tmp_path / "song", seconds=2.0)
    parts = {n: _signal(n, 2.0, seed=i) for i, n in enumerate(("kick", "bass", "vocals"))}
    ref = tmp_path / "ref.wav"
    sf.write(ref, parts["kick"] + parts["bass"] + 10 ** (-12 / 20) * parts["vocals"], SR, subtype="FLOAT")
    fitted, _ = suggest(song, model=model_path, reference=ref)
    model_only, _ = suggest(song, model=model_path, reference=ref, match_reference=False)

    def vocals_vs_rest(settings):
        gains = {st.file: st.strip["gain_db"] for st in settings.stems}
        return gains["vocals.wav"] - 0.5 * (gains["kick.wav"] + gains["bass.wav"])

    assert vocals_vs_rest(fitted) < vocals_vs_rest(model_only) - 2.0


def test_roles_come_from_names(tmp_path):
    stems = load_stems(_write_song(tmp_path / "song"))
    assert [ROLES[r] for r in stems.roles] == ["bass", "kick", "vocals"]


def test_mix_then_master_to_a_platform_target(tmp_path, model_path):
    song = _write_song(tmp_path / "song", seconds=3.0)
    report = mix(song, tmp_path / "m.wav", model=model_path,
                 master={"output": tmp_path / "m.master.wav", "target": "spotify"})
    assert report.master_path == tmp_path / "m.master.wav"
    mastered, sr = _read(report.master_path)
    assert sr == SR and mastered.shape[-1] == 3 * SR
    assert abs(pyloudnorm.Meter(SR).integrated_loudness(mastered.T) - (-14.0)) < 1.0
    assert 20 * np.log10(np.abs(mastered).max()) <= -0.9  # true-peak ceiling -1 dBTP
    assert not list(tmp_path.glob(".*float*"))  # the temporary float copy is gone


def test_tidy_switches_off_only_inaudible_processing():
    from automix.mixing import tidy_settings

    i = STRIP.index
    v = STRIP.neutral.repeat(3, 1)
    v[:, i("comp.ratio")] = torch.tensor([1.03, 4.0, 1.03])
    v[:, i("comp.threshold_db")] = torch.tensor([-0.6, -20.0, -30.0])
    v[:, i("sat.mix")] = torch.tensor([0.005, 0.5, 0.005])
    v[:, i("sat.drive_db")] = 6.0
    out = tidy_settings(v, torch.tensor([-6.0, -6.0, -3.0]))
    # Stem 0: 1.03:1 above a threshold the peaks never reach -> off; 0.5 % wet saturation -> off.
    assert out[0, i("comp.ratio")] == 1.0 and out[0, i("sat.mix")] == 0.0
    # Stem 1: real compression and saturation stay.
    assert out[1, i("comp.ratio")] == 4.0 and out[1, i("sat.mix")] == 0.5
    # Stem 2: 1.03:1 with peaks 27 dB over the threshold reduces up to 0.8 dB -> kept.
    assert out[2, i("comp.ratio")] == pytest.approx(1.03)


def test_model_mix_leaves_headroom_and_settings_still_reproduce_it(tmp_path, model_path):
    """Loud stems: the faders all come down by one amount so the mix peaks at -1 dBFS, no clipping."""
    song = tmp_path / "song"
    song.mkdir()
    for i, name in enumerate(("kick.wav", "bass.wav", "vocals.wav")):
        audio = _signal(name.split(".")[0], 1.5, seed=i)
        sf.write(song / name, 0.99 * audio / np.abs(audio).max(), SR, subtype="FLOAT")  # each stem near full scale
    plain = mix(song, tmp_path / "plain.wav", model=model_path, amount_percent=0.0, subtype="FLOAT")
    assert plain.peak_dbfs == pytest.approx(-1.0, abs=0.01)  # the plain sum (~+6 dBFS) was brought down
    loud = {g: 12.0 for g in ("vocals", "bass", "drums", "music", "fx")}  # push the model's faders up
    report = mix(song, tmp_path / "mix.wav", model=model_path, group_trims_db=loud, settings_out=tmp_path / "s.json",
                 subtype="PCM_24")
    mixed, _ = _read(tmp_path / "mix.wav")
    assert 20 * np.log10(np.abs(mixed).max()) == pytest.approx(-1.0, abs=0.01)
    assert any("fader" in n and "balance unchanged" in n for n in report.notes)
    # Relative faders are the model's; the saved settings render the same (headroom included) mix.
    again = mix(song, tmp_path / "again.wav", settings=tmp_path / "s.json", subtype="PCM_24")
    assert np.abs(_read(again.mix_path)[0] - mixed).max() < 1e-4
    unscaled = suggest(song, model=model_path, group_trims_db=loud)[0]
    offsets = [a.strip["gain_db"] - b.strip["gain_db"] for a, b in zip(report.settings.stems, unscaled.stems)]
    assert max(offsets) - min(offsets) < 1e-4 and offsets[0] < -0.5


def test_dc_offset_is_removed_and_reported_other_stems_untouched(tmp_path):
    from scipy.signal import welch

    song = tmp_path / "song"
    song.mkdir()
    t = np.arange(2 * SR) / SR
    tone = 0.3 * np.sin(2 * np.pi * 110 * t)
    gate = (t % 0.5) < 0.25  # the offset comes and goes with the notes (like a kick sample with DC)
    dirty = np.stack([tone + 0.02 * gate, tone + 0.02 * gate]).T.astype(np.float32)
    clean = _signal("bass", 2.0)
    sf.write(song / "kick.wav", dirty, SR, subtype="FLOAT")
    sf.write(song / "bass.wav", clean, SR, subtype="FLOAT")
    stems = load_stems(song)
    kick = stems.audio[stems.files.index("kick.wav")].numpy().astype(np.float64)
    assert abs(kick.mean()) < min(1e-3, abs(dirty.mean()) / 10)  # below analyze's DC warning level
    # The music is kept: the 110 Hz tone's level is unchanged within 0.05 dB.
    f, p_in = welch(dirty[:, 0], SR, nperseg=8192)
    _, p_out = welch(kick[0], SR, nperseg=8192)
    k = np.argmin(np.abs(f - 110))
    assert abs(10 * np.log10(p_out[k - 1:k + 2].sum() / p_in[k - 1:k + 2].sum())) < 0.05
    assert np.array_equal(stems.audio[stems.files.index("bass.wav")].numpy(), clean.T)  # no DC: bit-exact
    assert any("kick.wav had a DC offset of 1.00%" in n for n in stems.notes)
