"""Multitrack training data: find songs (:mod:`.layout`), decode them once into a
memory-mapped cache (:mod:`.cache`), cut seeded random excerpts (:mod:`.excerpts`);
:class:`MultitrackData` ties them together for the Hydra ``data:`` config group."""
from automix.data.cache import AudioCache, CachedSong
from automix.data.excerpts import ExcerptDataset, ExcerptSampler, FixedExcerpts, collate_excerpts
from automix.data.layout import Song, scan_folder, scan_musdb, split_songs
from automix.data.multitrack import MultitrackData

__all__ = ["AudioCache", "CachedSong", "ExcerptDataset", "ExcerptSampler", "FixedExcerpts",
           "collate_excerpts", "Song", "scan_folder", "scan_musdb", "split_songs", "MultitrackData"]
