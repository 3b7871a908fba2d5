"""`automix demo`: the README's main job mixes and masters the shipped example into one folder."""
import json

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf
import torch

from automix.demo import example_song, run_demo
from automix.errors import AutomixError, OutputExistsError
from automix.loudness import true_peak_dbtp
from automix.model.checkpoint import save_checkpoint
from automix.model.mixnet import MixModel, MixModelConfig


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    torch.manual_seed(0)
    model = MixModel(MixModelConfig(d_model=32, n_heads=2, n_layers=1))
    return save_checkpoint(tmp_path_factory.mktemp("model") / "m.pt", model, {"sample_rate": 22050})


@pytest.fixture(scope="module")
def demo(tmp_path_factory, model_path):
    return run_demo(tmp_path_factory.mktemp("out") / "demo", model=model_path)


def test_shipped_example_is_real_multitrack_audio():
    song = example_song()
    stems = sorted(song.glob("*.flac"))
    assert len(stems) >= 4
    for path in stems:
        audio, rate = sf.read(path)
        assert rate == 44100 and len(audio) > 10 * rate
        assert np.abs(audio).max() > 0.01  # not silent


def test_demo_writes_mix_master_stems_settings_and_report(demo):
    assert demo.mix_path.is_file() and demo.master_path.is_file()
    stems = sorted(demo.stems_dir.glob("*.wav"))
    assert len(stems) == len(list(example_song().glob("*.flac")))
    mix, rate = sf.read(demo.mix_path)
    total = sum(sf.read(p)[0] for p in stems)
    assert np.max(np.abs(total - mix)) < 1e-3  # processed stems sum to the mix (24-bit mix file)
    settings = json.loads(demo.settings_paths[0].read_text())
    assert settings and demo.settings_paths[1].read_text().strip()
    assert list(demo.report_dir.glob("*.json")) and list(demo.report_dir.glob("*.png"))
    assert (demo.report_dir / "settings.png").is_file()
    session = (demo.folder / "session.RPP").read_text()
    assert session.count("<TRACK") == len(stems) and all(str(p.resolve()) in session for p in stems)


def test_demo_master_lands_on_spotify_loudness_below_ceiling(demo):
    master, rate = sf.read(demo.master_path)
    lufs = pyloudnorm.Meter(rate).integrated_loudness(master)
    assert abs(lufs - (-14.0)) <= 0.15
    assert true_peak_dbtp(master.T.astype(np.float32), rate) <= -1.0 + 0.05


def test_second_run_refuses_to_overwrite(demo, model_path):
    with pytest.raises(OutputExistsError):
        run_demo(demo.folder, model=model_path)


def test_unknown_example_song_is_a_clear_error():
    with pytest.raises(AutomixError, match="no example song"):
        example_song("no-such-song")
