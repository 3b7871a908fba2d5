"""A generated corpus of bad (and awkward but valid) input for the command line.

Nothing binary is committed: every case is written by :func:`build` into a fresh folder
(``tmp_path``) from seeded synthetic audio, so the same call writes the same bytes.

A :class:`Workspace` holds the good inputs every verb needs -- a song folder of stems
(``data/song/``, which is also a one-song data set for ``automix evaluate``), a mix to master
or analyse, a settings file for ``automix render``, a tiny mix model -- and an empty output
folder ``out/``. A case then replaces or adds one thing:

* ``audio`` cases: one file (``ws.subject``) that is both the mix (``ws.mix``) and the only
  stem of the song (the song folder holds nothing else; the settings file names it);
* ``stems`` cases: the song folder (mixed rates, lengths, 70 stems, clutter...);
* ``output`` cases: where the output goes (``ws.output`` for the verb's suffix: see
  :meth:`Workspace.output_for`);
* ``settings``, ``model`` and ``reference`` cases: one file of that kind.

The tests (``tests/test_corpus.py``) run every verb over every case and check the exit
status, the one error line, the inputs' hashes and that no temporary file is left.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf

#: Rate of the corpus audio (Hz): low, so that every verb runs fast.
RATE = 22050
#: Length of the good audio (s): above mastering's 3 s minimum.
SECONDS = 4.0


def tone(seconds: float = SECONDS, rate: int = RATE, channels: int = 2, seed: int = 0,
         level_db: float = -12.0) -> np.ndarray:
    """A small piece of music, ``(channels, samples)`` float64 peaking at ``level_db`` dBFS: a
    decaying bass note per beat, a chord and a little noise (seeded)."""
    rng = np.random.default_rng(seed)
    n = max(int(round(seconds * rate)), 1)
    t = np.arange(n) / rate
    beat = (t * 2.0) % 1.0
    x = 0.6 * np.exp(-4 * beat) * np.sin(2 * np.pi * 82.4 * t)
    x += sum(0.15 * np.sin(2 * np.pi * f * t) for f in (261.6, 329.6, 392.0))
    x = np.stack([x + 0.02 * rng.standard_normal(n) for _ in range(channels)])
    peak = np.max(np.abs(x))
    return x / peak * 10 ** (level_db / 20)


def write(path: Path, samples: np.ndarray, rate: int = RATE, subtype: str = "PCM_24") -> Path:
    """``samples`` ``(channels, n)`` to ``path`` with soundfile (independent of automix.audio)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.asarray(samples).T, rate, subtype=subtype)
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def hash_tree(root: Path, skip: Path | None = None) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``root`` (``skip`` folder excluded)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if skip is not None and (p == skip or skip in p.parents):
            continue
        if p.is_file() and not p.is_symlink():
            out[str(p.relative_to(root))] = digest(p)
    return out


@dataclass
class Workspace:
    """The inputs of one case, under ``root``.

    Attributes
    ----------
    root : Path
    song : Path
        Folder of stems (``root/data/song``).
    data : Path
        One-song data set (``root/data``) for ``automix evaluate``.
    mix : Path
        File to master / analyse.
    settings : Path
        Settings for ``automix render`` (one neutral entry per stem of ``song``).
    model : Path
        Mix model for ``mix``, ``suggest`` and ``evaluate``.
    reference : Path or None
        A ``--reference`` for ``mix`` and ``master`` when the case is about one.
    mastering_model : Path or None
        A ``--model`` for ``master`` when the case is about one.
    out : Path
        Output folder (empty).
    output : Path or None
        The case's own output path (output cases), else ``out/`` + a name per verb.
    subject : Path or None
        The file the case is about: the one error line must name it.
    """

    root: Path
    song: Path
    data: Path
    mix: Path
    settings: Path
    model: Path
    out: Path
    reference: Path | None = None
    mastering_model: Path | None = None
    output: Path | None = None
    subject: Path | None = None
    extra: dict = field(default_factory=dict)

    def output_for(self, suffix: str) -> Path:
        """The output path for a verb writing ``suffix`` files (``.wav``, ``.json``, ``.png``)."""
        if self.output is not None:
            return self.output.with_suffix(suffix) if self.output.suffix != suffix else self.output
        return self.out / f"result{suffix}"


def neutral_settings(path: Path, files: list[str], **top) -> Path:
    """A settings file (JSON or YAML by suffix) with every stem at its neutral strip."""
    from automix.dsp.params import STRIP

    doc = {"automix_settings": 1, "sample_rate": RATE,
           "stems": [{"file": f, "role": "other", "strip": STRIP.to_dict(STRIP.neutral)} for f in files]}
    doc.update(top)
    if path.suffix == ".json":
        path.write_text(json.dumps(doc, indent=2))
    else:
        import yaml

        path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


_MODEL_CACHE: dict[str, bytes] = {}


def tiny_model_bytes() -> bytes:
    """A small random mix-model checkpoint (built once per process)."""
    if "m" not in _MODEL_CACHE:
        import tempfile

        from mix_models import opinionated_model_checkpoint

        with tempfile.TemporaryDirectory() as tmp:
            _MODEL_CACHE["m"] = opinionated_model_checkpoint(Path(tmp), seed=3).read_bytes()
    return _MODEL_CACHE["m"]


def base_workspace(root: Path, stems: dict[str, np.ndarray] | None = None) -> Workspace:
    """Good inputs: three stems, a 4 s mix, matching neutral settings, a tiny model, empty ``out/``."""
    root.mkdir(parents=True, exist_ok=True)
    song = root / "data" / "song"
    song.mkdir(parents=True)
    if stems is None:
        stems = {"kick.wav": tone(2.0, seed=1), "bass.wav": tone(2.0, seed=2), "keys.wav": tone(2.0, seed=3)}
    for name, x in stems.items():
        write(song / name, x)
    mix = write(root / "mix.wav", tone(seed=4))
    model = root / "model.pt"
    model.write_bytes(tiny_model_bytes())
    settings = neutral_settings(root / "settings.json", sorted(stems))
    out = root / "out"
    out.mkdir()
    return Workspace(root, song, root / "data", mix, settings, model, out)


def _single(root: Path, name: str, make: Callable[[Path], None]) -> Workspace:
    """A workspace whose song is the one file ``name`` (made by ``make(path)``), also the mix."""
    root.mkdir(parents=True, exist_ok=True)
    song = root / "data" / "song"
    song.mkdir(parents=True)
    path = song / name
    make(path)
    model = root / "model.pt"
    model.write_bytes(tiny_model_bytes())
    settings = neutral_settings(root / "settings.json", [name])
    out = root / "out"
    out.mkdir()
    return Workspace(root, song, root / "data", path, settings, model, out, subject=path)


# ------------------------------------------------------------------------------ audio cases
def _zero_bytes(p: Path) -> None:
    p.write_bytes(b"")


def _truncated(p: Path) -> None:
    write(p, tone(), subtype="PCM_16")
    data = p.read_bytes()
    p.write_bytes(data[: 64 + (len(data) - 64) * 4 // 10])  # the header still promises 4 s


def _random_bytes(p: Path) -> None:
    p.write_bytes(np.random.default_rng(7).integers(0, 256, 8192, dtype=np.uint8).tobytes())


def _text(p: Path) -> None:
    p.write_text("These are the lyrics, not the audio.\n" * 40)


def _silent(p: Path) -> None:
    write(p, np.zeros((2, int(SECONDS * RATE))))


def _non_finite(value: float) -> Callable[[Path], None]:
    def make(p: Path) -> None:
        x = tone()
        x[:, 1000:1010] = value
        write(p, x, subtype="FLOAT")
    return make


def _frames(seconds: float) -> Callable[[Path], None]:
    def make(p: Path) -> None:
        write(p, tone(seconds=seconds))
    return make


def _one_sample(p: Path) -> None:
    write(p, np.full((2, 1), 0.25))


def _channels(n: int) -> Callable[[Path], None]:
    def make(p: Path) -> None:
        write(p, tone(channels=n))
    return make


def _subtype(subtype: str) -> Callable[[Path], None]:
    def make(p: Path) -> None:
        write(p, tone(), subtype=subtype)
    return make


def _dc_offset(p: Path) -> None:
    write(p, tone() + 0.1, subtype="FLOAT")


def _clipped(p: Path) -> None:
    write(p, np.clip(tone(level_db=0.0) * 6.0, -1.0, 1.0), subtype="PCM_16")


@dataclass(frozen=True)
class AudioCase:
    """One audio file of the corpus: ``name`` as written, ``make(path)`` writes it."""

    id: str
    name: str
    make: Callable[[Path], None]


AUDIO_CASES: tuple[AudioCase, ...] = (
    AudioCase("zero_bytes", "empty.wav", _zero_bytes),
    AudioCase("truncated_wav", "truncated.wav", _truncated),
    AudioCase("truncated_aiff", "truncated.aiff", _truncated),
    AudioCase("random_wav", "noise.wav", _random_bytes),
    AudioCase("random_flac", "noise.flac", _random_bytes),
    AudioCase("random_mp3", "noise.mp3", _random_bytes),
    AudioCase("random_ogg", "noise.ogg", _random_bytes),
    AudioCase("text_wav", "lyrics.wav", _text),
    AudioCase("silent", "silence.wav", _silent),
    AudioCase("nan", "nan.wav", _non_finite(float("nan"))),
    AudioCase("inf", "inf.wav", _non_finite(float("inf"))),
    AudioCase("one_sample", "blip.wav", _one_sample),
    AudioCase("half_second", "short.wav", _frames(0.5)),
    AudioCase("six_channels", "surround.wav", _channels(6)),
    AudioCase("pcm_u8", "eight_bit.wav", _subtype("PCM_U8")),
    AudioCase("pcm_32", "int32.wav", _subtype("PCM_32")),
    AudioCase("float64", "double.wav", _subtype("DOUBLE")),
    AudioCase("dc_offset", "offset.wav", _dc_offset),
    AudioCase("clipped", "clipped.wav", _clipped),
    AudioCase("unicode_name", "Bässe & Ünïcødé ♪ take 2.wav", _subtype("PCM_24")),
)


# ------------------------------------------------------------------------------ stem-folder cases
def _mixed_rates(root: Path) -> Workspace:
    ws = base_workspace(root, stems={})
    for name, rate in (("kick.wav", 22050), ("bass.wav", 44100), ("keys.wav", 48000), ("hats.wav", 96000)):
        write(ws.song / name, tone(seconds=1.0, rate=rate), rate)
    neutral_settings(ws.settings, sorted(os.listdir(ws.song)))
    ws.mix = write(root / "mix96k.wav", tone(rate=96000), 96000)
    ws.reference = write(root / "ref22k.wav", tone(seed=9, rate=RATE))
    ws.extra["analyze_files"] = sorted(ws.song.iterdir())
    return ws


def _lengths(root: Path) -> Workspace:
    ws = base_workspace(root, stems={"kick.wav": tone(seconds=0.3), "bass.wav": tone(seconds=1.0),
                                     "pad.wav": tone(seconds=12.0)})
    ws.subject = ws.song / "pad.wav"
    return ws


def _many(count: int) -> Callable[[Path], Workspace]:
    def make(root: Path) -> Workspace:
        x = tone(seconds=0.5, channels=1)
        ws = base_workspace(root, stems={f"stem {i:02d}.wav": x * (0.5 + 0.5 * (i % 3)) for i in range(count)})
        return ws
    return make


def _clutter(root: Path) -> Workspace:
    ws = base_workspace(root)
    (ws.song / "old takes").mkdir()
    write(ws.song / "old takes" / "kick take 1.wav", tone(seed=5))
    (ws.song / "notes.txt").write_text("kick: more click\n")
    (ws.song / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))
    (ws.song / ".DS_Store").write_bytes(bytes(64))
    return ws


def _one_bad_stem(root: Path) -> Workspace:
    """Good stems plus one damaged file: the mix skips it, named, and mixes the others."""
    ws = base_workspace(root)
    (ws.song / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    ws.subject = ws.song / "broken.wav"
    neutral_settings(ws.settings, ["bass.wav", "keys.wav", "kick.wav"])
    return ws


# ------------------------------------------------------------------------------ output cases
def _output(where: Callable[[Workspace], Path]) -> Callable[[Path], Workspace]:
    def make(root: Path) -> Workspace:
        ws = base_workspace(root)
        ws.output = where(ws)
        ws.subject = ws.output
        return ws
    return make


def _existing(ws: Workspace) -> Path:
    for suffix in (".wav", ".json", ".png", ".yaml"):
        (ws.out / f"result{suffix}").write_bytes(b"an earlier result, keep me\n")
    return ws.out / "result.wav"


def _parent_is_file(ws: Workspace) -> Path:
    (ws.root / "afile").write_text("I am a file, not a folder\n")
    return ws.root / "afile" / "result.wav"


def _read_only(ws: Workspace) -> Path:
    """An output folder nobody may write to (chmod for ordinary users, a read-only mount for root)."""
    folder = ws.root / "locked"
    folder.mkdir()
    ws.extra["read_only"] = folder
    return folder / "result.wav"


def _full_disk(ws: Workspace) -> Path:
    folder = ws.root / "full"
    folder.mkdir()
    ws.extra["full_disk"] = folder
    return folder / "result.wav"


# ------------------------------------------------------------------------------ settings cases
def _settings(edit: Callable[[dict], dict | str], suffix: str = ".json") -> Callable[[Path], Workspace]:
    def make(root: Path) -> Workspace:
        ws = base_workspace(root)
        doc = json.loads(ws.settings.read_text())
        ws.settings.unlink()
        result = edit(doc)
        path = root / f"edited{suffix}"
        if isinstance(result, str):
            path.write_text(result)
        elif suffix == ".json":
            path.write_text(json.dumps(result, indent=2))
        else:
            import yaml

            path.write_text(yaml.safe_dump(result))
        ws.settings = ws.subject = path
        return ws
    return make


def _out_of_range(doc: dict) -> dict:
    doc["stems"][0]["strip"]["gain_db"] = 40.0
    return doc


def _missing_keys(doc: dict) -> dict:
    return {"automix_settings": 1, "sample_rate": doc["sample_rate"]}


def _wrong_type(doc: dict) -> dict:
    doc["stems"][1]["strip"]["pan"] = "left"
    return doc


def _unknown_stem(doc: dict) -> dict:
    doc["stems"][2]["file"] = "cowbell.wav"
    return doc


def _broken_json(doc: dict) -> str:
    return json.dumps(doc, indent=2)[:-40]


def _broken_yaml(doc: dict) -> str:
    return "stems:\n  - file: kick.wav\n    strip: {gain_db: 1.0\n  - file: [bass.wav\n"


# ------------------------------------------------------------------------------ model cases
class Payload:
    """An arbitrary class: pickling it makes a checkpoint that would run code on a plain load."""

    def __init__(self) -> None:
        self.note = "not weights"


def _model(kind: str) -> Callable[[Path], Workspace]:
    def make(root: Path) -> Workspace:
        ws = base_workspace(root)
        path = root / f"{kind}.pt"
        if kind == "corrupt_model":
            path.write_bytes(tiny_model_bytes()[:3000])
        else:
            import torch

            torch.save({"format": "automix-mixer", "object": Payload()}, path)
        ws.model = ws.mastering_model = ws.subject = path
        return ws
    return make


# ------------------------------------------------------------------------------ reference cases
def _reference(kind: str) -> Callable[[Path], Workspace]:
    def make(root: Path) -> Workspace:
        ws = base_workspace(root)
        if kind == "silent_reference":
            ws.reference = write(root / "silent ref.wav", np.zeros((2, int(SECONDS * RATE))))
        else:
            ws.reference = root / "corrupt ref.flac"
            _random_bytes(ws.reference)
        ws.subject = ws.reference
        return ws
    return make


#: Every case but the audio ones: id -> builder of its workspace.
OTHER_CASES: dict[str, Callable[[Path], Workspace]] = {
    "mixed_rates": _mixed_rates,
    "different_lengths": _lengths,
    "64_stems": _many(64),
    "70_stems": _many(70),
    "clutter_in_folder": _clutter,
    "one_bad_stem": _one_bad_stem,
    "output_is_input": _output(lambda ws: ws.mix),
    "output_missing_folder": _output(lambda ws: ws.root / "new" / "folder" / "result.wav"),
    "output_read_only": _output(_read_only),
    "output_parent_is_file": _output(_parent_is_file),
    "output_exists": _output(_existing),
    "output_full_disk": _output(_full_disk),
    "settings_out_of_range": _settings(_out_of_range),
    "settings_missing_keys": _settings(_missing_keys),
    "settings_wrong_type": _settings(_wrong_type),
    "settings_unknown_stem": _settings(_unknown_stem),
    "settings_broken_json": _settings(_broken_json),
    "settings_broken_yaml": _settings(_broken_yaml, ".yaml"),
    "corrupt_model": _model("corrupt_model"),
    "pickled_model": _model("pickled_model"),
    "silent_reference": _reference("silent_reference"),
    "corrupt_reference": _reference("corrupt_reference"),
}

#: Every case id, audio cases first.
CASE_IDS: tuple[str, ...] = tuple(c.id for c in AUDIO_CASES) + tuple(OTHER_CASES)


def build(case_id: str, root: Path) -> Workspace:
    """Write case ``case_id``'s workspace under ``root`` (which must not exist yet or be empty)."""
    for case in AUDIO_CASES:
        if case.id == case_id:
            return _single(root, case.name, case.make)
    return OTHER_CASES[case_id](root)


__all__ = ["AUDIO_CASES", "CASE_IDS", "OTHER_CASES", "Payload", "Workspace", "build", "digest", "hash_tree"]
