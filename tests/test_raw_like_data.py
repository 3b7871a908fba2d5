"""The data pipeline with raw-like stems: cached once, next to the plain cache, target = real mix."""
from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest
import torch

from automix.data import AudioCache, MultitrackData, collate_excerpts, scan_folder
from automix.errors import DatasetError
from automix.raw_like import RawLike
from multitrack_synth import write_dataset

torch.set_num_threads(1)
SR = 16000


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("rl") / "songs", n_songs=3, seconds=3.0, sample_rate=SR)


def test_raw_like_cache_sits_next_to_the_plain_one_and_keeps_the_real_mix(root, tmp_path):
    songs = scan_folder(root)
    plain = AudioCache(tmp_path / "c", SR).prepare(songs)
    raw = AudioCache(tmp_path / "c", SR, raw_like=RawLike(stem_lufs=-24.0)).prepare(songs)
    other = AudioCache(tmp_path / "c", SR, raw_like=RawLike(stem_lufs=-20.0)).prepare(songs)
    dirs = {s.directory for s in plain} | {s.directory for s in raw} | {s.directory for s in other}
    assert len(dirs) == 9  # three settings, three songs: nine entries
    assert not plain[0].has_target_stems and raw[0].has_target_stems
    meter = pyloudnorm.Meter(SR)
    for p, r in zip(plain, raw):
        originals = np.asarray(r.target_stems, np.float32)
        np.testing.assert_allclose(originals, np.asarray(p.stems, np.float32), atol=1e-6)
        np.testing.assert_allclose(np.asarray(r.mix, np.float32), originals.sum(0), atol=2e-3)
        for stem in np.asarray(r.stems, np.float64):
            assert abs(meter.integrated_loudness(stem.T) + 24.0) < 0.1
        assert r.stems.shape == p.stems.shape


def test_multitrack_data_reads_raw_like_settings_and_returns_original_stems(root, tmp_path):
    data = MultitrackData(root=str(root), sample_rate=SR, excerpt_seconds=0.5, valid_fraction=0.0,
                          cache_dir=str(tmp_path / "cache"), raw_like={"tone_amount": 0.25, "_target_": "x"})
    assert data.raw_like == RawLike(tone_amount=0.25) and not data.target_is_sum
    songs = data.prepare(("train",))["train"]
    ds = data.dataset(songs)
    items = [ds[(0, 1000)], ds[(1, 2000)]]
    song = songs[0]
    n = data.excerpt_samples
    np.testing.assert_allclose(items[0]["target_mix"].numpy(),
                               np.asarray(song.mix[:, 1000:1000 + n], np.float32), atol=1e-6)
    torch.testing.assert_close(items[0]["target_stems"].sum(0), items[0]["target_mix"], atol=3e-3, rtol=0)
    assert not torch.allclose(items[0]["stems"], items[0]["target_stems"], atol=1e-2)
    batch = collate_excerpts(items)
    assert batch["target_stems"].shape == batch["stems"].shape
    assert MultitrackData(root=str(root), raw_like=None).target_is_sum
    assert MultitrackData(root=str(root), raw_like=True).raw_like == RawLike()
    with pytest.raises(DatasetError, match="raw_like"):
        MultitrackData(root=str(root), raw_like={"loudness": -23})


def test_training_runs_end_to_end_on_raw_like_stems(root, tmp_path):
    """``python -m train data.raw_like={...} trainer=smoke`` (the Hydra app, in process)."""
    from hydra import compose, initialize_config_dir

    from train.__main__ import CONFIG_DIR, run

    overrides = [f"data.root={root}", f"data.cache_dir={tmp_path / 'cache'}", f"run_dir={tmp_path / 'run'}",
                 f"data.sample_rate={SR}", "data.excerpt_seconds=0.5", "data.excerpts_per_epoch=4",
                 "data.valid_fraction=0.34", "data.valid_excerpts_per_song=1",
                 "~data.raw_like", "+data.raw_like={dynamics_amount:0.4}",  # whatever the default is
                 "trainer=smoke", "trainer.max_steps=2", "trainer.batch_size=2", "trainer.progress=false",
                 "model.d_model=32", "model.n_layers=1", "loss.terms.stft.fft_sizes=[512,128]"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    trainer = run(cfg, tmp_path / "run")
    assert trainer.step == 2
    assert "raw_like" in (tmp_path / "run" / "config.yaml").read_text()
