"""Datasets: folder and MUSDB layouts, split by song, decoded cache, seeded excerpts."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from automix.data import (AudioCache, ExcerptDataset, ExcerptSampler, FixedExcerpts, MultitrackData,
                          collate_excerpts, scan_folder, scan_musdb, split_songs)
from automix.data.layout import Song
from automix.errors import DatasetError
from automix.model.roles import ROLES
from multitrack_synth import write_dataset, write_song

SR = 16000


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("stems"), n_songs=5, seconds=2.0)


def test_scan_folder_finds_stems_mix_and_roles(dataset_root):
    songs = scan_folder(dataset_root)
    assert [s.name for s in songs] == [f"song{i}" for i in range(5)]
    song = songs[1]
    assert song.stem_names == ("bass", "hats", "keys", "kick", "lead")
    assert song.mix is not None and song.mix.name == "mix.wav"
    assert [ROLES[r] for r in song.roles] == ["bass", "cymbals", "keys", "kick", "lead"]
    assert [s.name for s in scan_folder(dataset_root, exclude=["song0"])][0] == "song1"


def test_scan_folder_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        scan_folder(tmp_path / "nope")
    (tmp_path / "empty_song").mkdir()
    with pytest.raises(DatasetError, match="no songs found"):
        scan_folder(tmp_path)


def test_split_is_deterministic_disjoint_and_order_free():
    songs = [Song(f"s{i:02d}", ()) for i in range(40)]
    a = split_songs(songs, 0.1, 0.1, seed=3)
    b = split_songs(list(reversed(songs)), 0.1, 0.1, seed=3)
    assert {k: [s.name for s in v] for k, v in a.items()} == {k: [s.name for s in v] for k, v in b.items()}
    names = [s.name for part in a.values() for s in part]
    assert sorted(names) == sorted(s.name for s in songs) and len(set(names)) == 40
    assert len(a["valid"]) == 4 and len(a["test"]) == 4
    # adding songs leaves most earlier assignments in place (hash ranks, not positions)
    c = split_songs(songs + [Song("zz_new", ())], 0.1, 0.1, seed=3)
    assert len(set(s.name for s in a["train"]) & set(s.name for s in c["train"])) >= 30
    with pytest.raises(DatasetError, match="too few"):
        split_songs(songs[:2], 0.5, 0.5)


def test_scan_musdb_layout(tmp_path):
    for subset, name in (("train", "A - One"), ("test", "B - Two")):
        folder = tmp_path / subset / name
        folder.mkdir(parents=True)
        for stem in ("drums", "bass", "other", "vocals", "mixture"):
            sf.write(folder / f"{stem}.wav", np.zeros((100, 2), np.float32), SR)
    songs = scan_musdb(tmp_path, "train")
    assert songs[0].stem_names == ("drums", "bass", "other", "vocals")
    assert songs[0].mix.name == "mixture.wav"
    assert [ROLES[r] for r in songs[0].roles] == ["drums", "bass", "other", "vocals"]
    assert scan_musdb(tmp_path, "test")[0].name == "B - Two"


def test_cache_decodes_once_resamples_and_memory_maps(tmp_path, monkeypatch):
    stems = write_song(tmp_path / "data", "tune", seed=7, seconds=1.5, sample_rate=22050)
    song = scan_folder(tmp_path / "data")[0]
    import automix.audio as audio

    calls = []
    real = audio.load_audio
    monkeypatch.setattr(audio, "load_audio", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    cache = AudioCache(tmp_path / "cache", SR, dtype="float32")
    entry = cache.load(song)
    assert len(calls) == 5  # 4 stems + mix
    again = AudioCache(tmp_path / "cache", SR, dtype="float32").load(song)
    assert len(calls) == 5 and again.directory == entry.directory  # no second decode
    assert isinstance(entry.stems, np.memmap) and entry.stems.shape == (4, 2, int(1.5 * SR))
    # independent reference: polyphase resampling of the written audio
    from scipy.signal import resample_poly

    kick = resample_poly(stems["kick"].astype(np.float64), 320, 441, axis=-1)
    i = entry.stem_names.index("kick")
    core = slice(500, kick.shape[-1] - 500)
    err = entry.stems[i][:, core] - kick[:, core]
    assert 10 * np.log10(np.mean(err ** 2) / np.mean(kick[:, core] ** 2)) < -40
    mix = np.asarray(entry.mix)
    assert np.allclose(mix, entry.stems.sum(0), atol=1e-3)
    # touching a stem file invalidates the entry
    sf.write(song.stems[0], (0.5 * stems["bass"]).T, 22050, subtype="FLOAT")
    assert AudioCache(tmp_path / "cache", SR, dtype="float32").load(scan_folder(tmp_path / "data")[0]).directory != entry.directory


def test_cache_float16_mono_silent_and_merge(tmp_path):
    folder = tmp_path / "data" / "song"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    levels = [0.5, 0.2, 0.1, 0.05]
    for i, level in enumerate(levels):
        sf.write(folder / f"track{i}.wav", (level * rng.normal(size=SR)).astype(np.float32), SR, subtype="FLOAT")
    sf.write(folder / "silent.wav", np.zeros(SR, np.float32), SR)
    song = scan_folder(tmp_path / "data")[0]
    entry = AudioCache(tmp_path / "cache", SR, dtype="float16", max_stems=3).load(song)
    assert entry.stems.dtype == np.float16
    assert entry.stem_names == ("track0", "track1", "others")  # silent dropped, two quietest summed
    x = np.stack([sf.read(folder / f"track{i}.wav")[0] for i in range(4)])
    np.testing.assert_allclose(entry.stems[2, 0], x[2] + x[3], atol=2e-3)
    np.testing.assert_allclose(entry.stems[0, 1], x[0], atol=2e-3)  # mono -> both channels


def _cached(tmp_path, n_songs=3, seconds=2.0):
    root = write_dataset(tmp_path / "d", n_songs=n_songs, seconds=seconds)
    return AudioCache(tmp_path / "c", SR).prepare(scan_folder(root))


def test_sampler_seeded_sharded_resumable(tmp_path):
    songs = _cached(tmp_path)
    n = SR // 2
    full = ExcerptSampler(songs, n, 20, seed=1)
    full.set_epoch(0)
    first = list(full)
    assert first == list(ExcerptSampler(songs, n, 20, seed=1))
    full.set_epoch(1)
    assert list(full) != first
    ranks = [ExcerptSampler(songs, n, 20, seed=1, rank=r, world_size=2) for r in range(2)]
    shards = [list(s) for s in ranks]
    assert len(shards[0]) == len(shards[1]) == 10
    assert sorted(shards[0] + shards[1]) == sorted(first)
    ranks[0].set_epoch(0, skip=4)
    assert list(ranks[0]) == shards[0][4:]
    for song, start in first:
        assert 0 <= start <= songs[song].num_samples - n


def test_sampler_skips_silence(tmp_path):
    folder = tmp_path / "d" / "late"
    folder.mkdir(parents=True)
    x = np.zeros((2, 4 * SR), np.float32)
    x[:, 2 * SR:] = 0.3 * np.sin(2 * np.pi * 440 * np.arange(2 * SR) / SR)
    sf.write(folder / "keys.wav", x.T, SR, subtype="FLOAT")
    songs = AudioCache(tmp_path / "c", SR).prepare(scan_folder(tmp_path / "d"))
    starts = [s for _, s in ExcerptSampler(songs, SR // 2, 50, seed=0)]
    assert min(starts) >= 2 * SR - SR // 4  # no excerpt starts in the silent first half


def test_dataset_slices_targets_and_collate(tmp_path):
    songs = _cached(tmp_path, n_songs=2)
    n = SR // 2
    ds = ExcerptDataset(songs, n, target="sum")
    item = ds[(1, 1000)]
    assert item["stems"].shape == (5, 2, n) and item["stems"].dtype == torch.float32
    np.testing.assert_allclose(item["stems"].numpy(), np.asarray(songs[1].stems[:, :, 1000:1000 + n], np.float32))
    torch.testing.assert_close(item["target_mix"], item["stems"].sum(0))
    mixed = ExcerptDataset(songs, n, target="mix")[(1, 1000)]
    torch.testing.assert_close(mixed["target_mix"], item["target_mix"], atol=2e-3, rtol=0)
    with_ref = ExcerptDataset(songs, n, target="sum", with_reference=True)[(1, 1000)]
    other = (1000 + songs[1].num_samples // 2) % (songs[1].num_samples - n)
    np.testing.assert_allclose(with_ref["reference"].numpy(),
                               np.asarray(songs[1].stems[:, :, other:other + n], np.float32).sum(0), atol=1e-6)
    assert "reference" in collate_excerpts([with_ref, with_ref]) and "reference" not in item
    # past the end: zero padded
    tail = ds[(0, songs[0].num_samples - 100)]
    assert tail["stems"].shape[-1] == n and float(tail["stems"][..., 100:].abs().max()) == 0
    batch = collate_excerpts([ds[(0, 0)], ds[(1, 0)]])
    assert batch["stems"].shape == (2, 5, 2, n)
    assert batch["mask"].tolist() == [[True] * 4 + [False], [True] * 5]
    # hats are silent between bursts: an excerpt inside a gap masks them
    fixed = FixedExcerpts(songs, n, per_song=3, rank=1, world_size=2)
    assert len(fixed) == 3


def test_multitrack_data_prepares_splits(tmp_path, dataset_root):
    data = MultitrackData(root=str(dataset_root), sample_rate=SR, excerpt_seconds=0.5, valid_fraction=0.2,
                          cache_dir=str(tmp_path / "cache"))
    songs = data.prepare()
    assert len(songs["train"]) == 4 and len(songs["valid"]) == 1
    assert data.excerpt_samples == SR // 2
    with pytest.raises(DatasetError, match="mix file"):
        folder = tmp_path / "nomix"
        write_song(folder, "a", seed=0, seconds=1.0, with_mix=False)
        write_song(folder, "b", seed=1, seconds=1.0, with_mix=False)
        d = MultitrackData(root=str(folder), sample_rate=SR, valid_fraction=0.0, target="mix",
                           cache_dir=str(tmp_path / "cache"))
        d.dataset(d.prepare(("train",))["train"])


def test_several_roots_are_pooled_and_split_each(tmp_path, dataset_root):
    other = write_dataset(tmp_path / "more", n_songs=3, seconds=1.0)
    data = MultitrackData(root=[str(dataset_root), str(other)], sample_rate=SR, valid_fraction=0.2,
                          exclude=["song1"], cache_dir=str(tmp_path / "cache"))
    split = data.songs()
    names = sorted(s.name for part in split.values() for s in part)
    stems_name, more_name = dataset_root.name, other.name
    assert names == sorted([f"{stems_name}/song{i}" for i in (0, 2, 3, 4)] + [f"{more_name}/song{i}" for i in (0, 2)])
    assert {s.name.split("/")[0] for s in split["valid"]} == {stems_name, more_name}  # each root holds out songs
