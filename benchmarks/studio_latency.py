"""Latency of an edit in ``automix studio``: re-render + encode of the preview after one stem changes.

Workload (issue 13): 8 stereo stems at 44.1 kHz (24-bit WAV, synthesised as in
``benchmarks/mix_speed.py``), a 30 s preview region in the middle of the song. Every stem has
every processor on (high-pass, shelves, three bells, compressor, saturation, fader, pan), so
re-processing a stem costs what it can cost.

* **edit** -- one stem's EQ changes (``eq.peak2.gain_db``, a new value each time): the studio
  re-processes that stem only (the other seven come from its cache), sums the 8 stems with their
  faders and pans, measures the loudness for the equal-loudness switch and encodes the 32-bit
  float WAV the page decodes (:meth:`StudioSession.take` + :func:`wav_bytes`).
* **fader edit** -- one stem's fader changes: nothing is re-processed, only summed and encoded.
* **baseline** -- a plain read + sum + write of the same preview: soundfile reads the 30 s region
  of each of the 8 files, sums them and writes a 32-bit float WAV.
* **through the API** -- the edit as the page makes it (POST the setting, GET ``edit.wav``)
  through the FastAPI app in this process.

Prints each time (median and best of ``--repeats``, interleaved; wall clock and this process's
CPU time, all threads) and the ratio edit / baseline (target <= 2) and the edit's milliseconds
(target < 300 ms on this CPU).

Usage: ``python benchmarks/studio_latency.py [--stems 8] [--song-seconds 60] [--preview-seconds 30] [--repeats 7]``
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mix_speed import ROLES, synth_stem  # noqa: E402


def processed_strip(n_stems: int, rng: np.random.Generator):
    """Strip settings ``[S, P]`` with every processor of every stem switched on."""
    import torch

    from automix.dsp.params import STRIP

    rows = []
    for _ in range(n_stems):
        v = STRIP.to_dict(STRIP.neutral)
        v.update({"eq.hpf.freq_hz": 40.0, "eq.hpf.mix": 1.0, "eq.low_shelf.gain_db": rng.uniform(-4, 4),
                  "eq.peak1.gain_db": rng.uniform(-4, 4), "eq.peak2.gain_db": rng.uniform(-4, 4),
                  "eq.peak3.gain_db": rng.uniform(-4, 4), "eq.high_shelf.gain_db": rng.uniform(-4, 4),
                  "comp.threshold_db": -24.0, "comp.ratio": 3.0, "comp.makeup_db": 2.0,
                  "sat.drive_db": 6.0, "sat.mix": 0.3, "gain_db": rng.uniform(-9, 0), "pan": rng.uniform(-0.5, 0.5)})
        rows.append(STRIP.from_dict(v))
    return torch.stack(rows)


def baseline(files: list[Path], start: int, stop: int, out: Path) -> None:
    """Read the region of every stem, sum, write a float WAV."""
    import soundfile as sf

    total = None
    for f in files:
        x, _ = sf.read(f, start=start, stop=stop, dtype="float32", always_2d=True)
        total = x if total is None else total + x
    sf.write(out, total, 44100, subtype="FLOAT")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stems", type=int, default=8)
    parser.add_argument("--song-seconds", type=float, default=60.0)
    parser.add_argument("--preview-seconds", type=float, default=30.0)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    import soundfile as sf
    import torch

    from automix.dsp.params import STRIP
    from automix.mixing import load_stems
    from automix.studio.preview import wav_bytes
    from automix.studio.session import StudioSession

    sr = 44100
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "song"
        folder.mkdir()
        files = []
        for i in range(args.stems):
            role = ROLES[i % len(ROLES)]
            path = folder / f"{i:02d}_{role}.wav"
            sf.write(path, synth_stem(role, args.song_seconds, sr, rng).T, sr, subtype="PCM_24")
            files.append(path)
        stems = load_stems(folder)
        session = StudioSession(stems, processed_strip(stems.num_stems, rng), song_dir=folder,
                                out_dir=Path(tmp) / "out", preview_seconds=args.preview_seconds)
        session.set_region(args.song_seconds / 2)
        region = session.renderer.region
        for v in session.versions():  # first renders fill the caches (and compile the kernels)
            session.take(v)
        name = stems.files[3 % stems.num_stems]
        index = stems.files.index(name)
        peak = STRIP.index("eq.peak2.gain_db")

        def edit_eq(k: int) -> int:
            session.set_strip(name, {"eq.peak2.gain_db": float(-6.0 + 12.0 * ((k * 0.37) % 1.0))})
            renders = session.renderer.renders
            body = wav_bytes(session.take("edit").audio, sr)
            assert session.renderer.renders == renders + 1 and len(body) > region.length * 8
            return len(body)

        def edit_fader(k: int) -> int:
            session.set_strip(name, {"gain_db": float(-10.0 + (k % 5))})
            renders = session.renderer.renders
            body = wav_bytes(session.take("edit").audio, sr)
            assert session.renderer.renders == renders
            return len(body)

        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # starlette's note about httpx
            from fastapi.testclient import TestClient

        from automix.studio.app import create_app

        client = TestClient(create_app(session))

        def edit_api(k: int) -> int:
            r = client.post(f"/api/stems/{name}/strip", json={"values": {"eq.peak2.gain_db": float(5.5 - (k % 7))}})
            assert r.status_code == 200, r.text
            return len(client.get("/api/audio/edit.wav").content)

        times: dict[str, list[float]] = {"edit": [], "fader edit": [], "baseline": [], "through the API": []}
        cpu: dict[str, list[float]] = {k: [] for k in times}
        out = Path(tmp) / "baseline.wav"
        for k in range(args.repeats):
            for label, fn in (("baseline", lambda k: baseline(files, region.start, region.stop, out)),
                              ("edit", edit_eq), ("fader edit", edit_fader), ("through the API", edit_api)):
                c0, t0 = time.process_time(), time.perf_counter()
                fn(k)
                times[label].append(time.perf_counter() - t0)
                cpu[label].append(time.process_time() - c0)
        assert float(session.base[index, peak]) != 0.0
        del torch

    from automix.studio.preview import PIECES, preroll_seconds

    print(f"{args.stems} stereo stems, {args.song_seconds:g} s at {sr} Hz; preview {args.preview_seconds:g} s "
          f"from {region.start / sr:g} s, a stem rendered in up to {PIECES} pieces with "
          f"{preroll_seconds(session.suggested[index]):g} s pre-roll each; {args.repeats} interleaved repeats")
    print(f"{'':18s} {'median ms':>10s} {'best ms':>8s} {'/ baseline':>11s} {'CPU ms (median)':>16s}")
    base = statistics.median(times["baseline"])
    for label, ts in times.items():
        med = statistics.median(ts)
        print(f"{label:18s} {1000 * med:10.1f} {1000 * min(ts):8.1f} {med / base:11.2f} "
              f"{1000 * statistics.median(cpu[label]):16.1f}")
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    print(f"load average {load} on {os.cpu_count()} CPUs (wall times stretch on a busy machine; CPU ms do not)")
    ratio = statistics.median(times["edit"]) / base
    ms = 1000 * statistics.median(times["edit"])
    print(f"edit / baseline = {ratio:.2f} (target <= 2: {'met' if ratio <= 2 else 'missed'}); "
          f"edit = {ms:.0f} ms (target < 300 ms: {'met' if ms < 300 else 'missed'})")


if __name__ == "__main__":
    main()
