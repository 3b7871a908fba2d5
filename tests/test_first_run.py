"""A mix's first run after install (issue 17): its paths without compiled kernels equal the kernels.

While a Numba kernel is not in the on-disk cache, ``automix mix`` takes a path that needs no
compiling (:mod:`automix.precompile`): the console strip through scipy's ``sosfilt`` and numpy
(:mod:`automix.dsp.strip_uncompiled`), the decoders, the loudness meter and the PCM writer in
numpy. These tests hold each to its kernel, and the command's first run to its second.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from automix import audio, loudness, precompile
from automix.audio_kernels import float_block_to_planar, int_block_to_planar, pcm24_block_to_planar
from automix.dsp import kernels
from automix.dsp.console import kernel_arguments
from automix.dsp.params import STRIP
from automix.dsp.strip_uncompiled import channel_strip_uncompiled

SR = 44100


def _signal(s, c, t, seed):
    """Bursts, a bass tone and noise per channel, with digital silence and a float tail in the middle."""
    rng = np.random.default_rng(seed)
    time = np.arange(t) / SR
    x = (0.3 * np.exp(-30.0 * (time % 0.2)) * rng.standard_normal((s, c, t))
         + 0.2 * np.sin(2 * np.pi * rng.uniform(40, 300, (s, 1, 1)) * time))
    x[..., t // 3: t // 2] *= np.exp(-np.arange(t // 2 - t // 3) / 200.0)  # a release tail
    x[..., t // 2: 2 * t // 3] = 0.0  # digital silence
    return x.astype(np.float32)


def _settings(s, seed):
    """Numpy settings with every processor on; one compressor off (ratio 1) with make-up gain,
    one dry saturator."""
    rng = np.random.default_rng(seed)
    unit = 0.05 + 0.9 * rng.random((s, STRIP.size))
    lo = np.array([spec.minimum for spec in STRIP.specs])
    hi = np.array([spec.maximum for spec in STRIP.specs])
    v = lo + unit * (hi - lo)
    v[:, STRIP.index("comp.threshold_db")] = rng.uniform(-35.0, -15.0, s)
    v[:, STRIP.index("gain_db")] = np.clip(v[:, STRIP.index("gain_db")], -20, 0)
    v[0, STRIP.index("comp.ratio")] = 1.0
    v[0, STRIP.index("comp.makeup_db")] = 3.0
    v[-1, STRIP.index("sat.mix")] = 0.0
    return v


@pytest.mark.parametrize("channels,n_stems", [(2, 5), (1, 3)])
def test_uncompiled_strip_equals_the_fused_kernel(channels, n_stems):
    t = 3 * (1 << 14) + 777  # three full chunks of the uncompiled strip and a partial one
    x = _signal(n_stems, channels, t, seed=channels)
    args = kernel_arguments(_settings(n_stems, seed=n_stems), STRIP, SR, channels)
    results = []
    for strip in (kernels.channel_strip, channel_strip_uncompiled):
        state = (np.zeros((n_stems, channels, 6, 2)), np.zeros(n_stems))
        y = np.empty((n_stems, 2, t), dtype=np.float32)
        half = t // 2 + 5  # two blocks: the states carry across
        with kernels.slp_vectorisation():
            strip(np.ascontiguousarray(x[..., :half]), *args, *state, y[..., :half])
            strip(np.ascontiguousarray(x[..., half:]), *args, *state, y[..., half:])
        results.append((y, state))
    (y_fused, (sos_fused, g_fused)), (y_plain, (sos_plain, g_plain)) = results
    assert np.abs(y_fused).max() > 0.05  # audible
    assert np.any(g_fused < -1.0)  # and compressed: the comparison is not of a bypass
    assert np.max(np.abs(y_fused - y_plain)) < 1e-6
    assert np.max(np.abs(sos_fused - sos_plain)) < 1e-9
    assert np.max(np.abs(g_fused - g_plain)) < 1e-9


def _decoded(kernel, flat, channels, frames, scale=None):
    out = np.full((channels, frames + 3), 7.0, dtype=np.float32)
    integer = scale is not None
    extremes = np.empty((channels, 2), dtype=np.int64 if integer else np.float64)
    extremes[:] = (np.iinfo(np.int32).min, np.iinfo(np.int32).max) if integer else (-np.inf, np.inf)
    args = (flat, channels, frames, out, 1, extremes) + ((scale,) if integer else ())
    kernel(*args)
    return out, extremes


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_numpy_decoders_equal_the_kernels(channels):
    rng = np.random.default_rng(channels)
    frames = 1000
    cases = [(int_block_to_planar, rng.integers(-2**15, 2**15, frames * channels).astype(np.int16), 2.0**-15),
             (int_block_to_planar, (rng.integers(-2**23, 2**23, frames * channels) << 8).astype(np.int32), 2.0**-31),
             (pcm24_block_to_planar, rng.integers(0, 256, 3 * frames * channels).astype(np.uint8), 2.0**-31)]
    floats = rng.standard_normal(frames * channels).astype(np.float32)
    floats[::7] *= np.float32(1e-13)  # below FLOAT_FLOOR (2**-40): read as 0
    floats[::11] = np.float32(1e-40)  # subnormal
    floats[5] = -0.0
    cases.append((float_block_to_planar, floats, None))
    with_nan = floats.copy()
    with_nan[channels * 10] = np.nan
    cases.append((float_block_to_planar, with_nan, None))
    for kernel, flat, scale in cases:
        out_k, ext_k = _decoded(kernel, flat, channels, frames, scale)
        out_n, ext_n = _decoded(audio._block_to_planar_numpy, flat, channels, frames, scale)
        assert np.array_equal(out_k, out_n, equal_nan=True), kernel
        assert np.array_equal(np.signbit(out_k), np.signbit(out_n))
        assert np.array_equal(ext_k, ext_n, equal_nan=True), (kernel, ext_k, ext_n)


def test_first_run_meter_and_writer_equal_the_kernels(monkeypatch):
    x = _signal(1, 2, 5 * SR + 123, seed=3)[0]
    kernel_energies, hop = loudness.hop_energies(x, SR)
    kernel_codes = [audio.interleaved_codes(x * 4.0, bits, dither=False) for bits in (16, 24)]
    monkeypatch.setattr(precompile, "ready", lambda kernel, *args: False)  # nothing compiled
    plain_energies, _ = loudness.hop_energies(x, SR)
    assert kernel_energies.max() > 1.0  # a real signal
    # equal to float64 rounding (in the silent stretch the plain path zeroes states below 1e-20)
    assert np.allclose(plain_energies, kernel_energies, rtol=1e-12, atol=1e-15 * kernel_energies.max())
    for bits, (codes, clipped) in zip((16, 24), kernel_codes):
        plain, plain_clipped = audio.interleaved_codes(x * 4.0, bits, dither=False)
        assert clipped > 0 and plain_clipped == clipped
        assert plain.flags.c_contiguous and np.array_equal(plain, codes)


def test_ready_loads_from_the_cache_or_says_no(tmp_path):
    """In a fresh process with an empty cache a first run's check compiles nothing and says no;
    after the kernel is compiled there, a fresh process's check loads it (a cache hit)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba_cache"))
    code = """
import numpy as np
from automix import precompile
from automix.dsp.kernels import _smooth_chunk
precompile.enable_first_run()
args = (np.zeros(8), 8, 0.5, 0.5, 0.0)
print(precompile.ready(_smooth_chunk, *args), sum(_smooth_chunk.stats.cache_hits.values()),
      len(_smooth_chunk.overloads), sorted(precompile.MISSED))
"""
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert first.stdout.split()[:3] == ["False", "0", "0"], first.stderr[-2000:]
    assert "automix.dsp.kernels._smooth_chunk" in first.stdout
    compile_it = "import numpy as np; from automix.dsp.kernels import _smooth_chunk; _smooth_chunk(np.zeros(8), 8, 0.5, 0.5, 0.0)"
    subprocess.run([sys.executable, "-c", compile_it], check=True, env=env, timeout=300)
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert second.stdout.split()[:3] == ["True", "1", "1"], second.stderr[-2000:]


@pytest.mark.slow
def test_first_mix_compiles_nothing_then_the_background_compile_serves_the_second(tmp_path):
    """``automix mix`` with an empty cache: the mix is written, a detached background compile
    then fills the cache (the console strip among what it compiled: the mix did not), and the
    second run -- loading the kernels without installing Numba's compile-time registries --
    writes the same mix, as does a third through Numba's own loading (AUTOMIX_PRECOMPILE=0)."""
    rng = np.random.default_rng(0)
    song = tmp_path / "song"
    song.mkdir()
    t = np.arange(3 * SR) / SR
    for i, f0 in enumerate((55.0, 220.0, 660.0)):
        x = 0.3 * np.sin(2 * np.pi * f0 * t) * np.exp(-8.0 * (t % 0.5)) + 0.01 * rng.standard_normal(t.size)
        sf.write(song / f"{i}_{['bass', 'keys', 'vocals'][i]}.wav", np.stack([x, 0.8 * x], 1), SR, subtype="PCM_24")
    cache = tmp_path / "numba_cache"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    outputs = []
    for run in range(3):
        out = tmp_path / f"mix{run}.wav"
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "automix", "mix", str(song), "-o", str(out),
                               "-q"], capture_output=True, text=True, timeout=600,
                              env=dict(env, AUTOMIX_PRECOMPILE="0") if run == 2 else env)
        assert proc.returncode == 0, proc.stderr[-2000:]
        if run:  # numba.np.arraymath: imported by Numba's context refresh (run 2: Numba's own loading)
            assert ("numba.np.arraymath" in proc.stderr) == (run == 2), run
        outputs.append(sf.read(out, dtype="int32")[0])
        pid_files = list(cache.rglob(precompile.PID_FILE))
        if run == 0:
            assert len(pid_files) == 1  # started, and the command did not wait for it
            status = precompile.wait_for_background(pid_files[0].parent)
            assert status is not None and status["ok"], status
            assert "automix.dsp.kernels._strip_groups" in status["compiled"]
        else:
            assert not pid_files  # everything loaded from the cache: nothing left to compile
    assert np.array_equal(outputs[0], outputs[1]) and np.array_equal(outputs[1], outputs[2])
    assert np.abs(outputs[0]).max() > 2**28  # a real mix, not silence


def test_the_command_can_turn_the_first_run_paths_off(monkeypatch):
    monkeypatch.setenv(precompile.SWITCH, "0")
    monkeypatch.setitem(precompile._STATE, "first_run", False)
    assert precompile.enable_first_run() is False
    assert precompile.ready(kernels._strip_groups) is True  # compile in process, as before
    assert json.dumps(precompile.compile_in_background()) == "null"
