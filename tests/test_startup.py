"""Start-up of ``automix mix`` (issue 17): what a mix imports and what numba's start-up costs.

A short session's command time is mostly start-up (Python, numpy, numba), so the modules a
mix does not need must stay out of it -- torch among them: the model runs in numpy.
"""
import subprocess
import sys

import numpy as np
import soundfile as sf

from mix_models import opinionated_model_checkpoint

#: Modules a plain ``automix mix`` must not import (each costs 0.05-0.5 s of start-up).
NOT_IMPORTED = ("torch", "scipy.linalg", "torchaudio", "matplotlib", "fastapi", "hydra", "pandas", "pedalboard",
                "pyloudnorm", "automix.studio", "automix.mastering", "automix.plots")


def _imported_modules(stderr: str) -> set[str]:
    """Module names from ``python -X importtime`` output."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def test_mix_command_imports_only_what_a_mix_needs(tmp_path):
    rng = np.random.default_rng(0)
    song = tmp_path / "song"
    song.mkdir()
    for name in ("kick", "bass", "vocals"):
        sf.write(song / f"{name}.wav", 0.1 * rng.standard_normal((44100, 2)), 44100, subtype="PCM_24")
    model = opinionated_model_checkpoint(tmp_path, seed=1)
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "automix", "mix", str(song), "-o",
                           str(tmp_path / "mix.wav"), "--model", str(model), "-q"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "mix.wav").is_file()
    modules = _imported_modules(proc.stderr)
    assert "numba" in modules and "soundfile" in modules  # the parse found the imports
    # a package's own entry is logged whenever any of its modules loads (numba's blocked
    # BLAS probe, scipy.linalg.cython_blas, is logged alone: it never loaded)
    unwanted = [n for n in NOT_IMPORTED if n in modules]
    assert not unwanted, f"a mix imported {unwanted}"


def test_mix_with_the_shipped_model_and_common_options_imports_no_torch(tmp_path):
    """The shipped ensemble (models/mixer.pt), --stems-out, --settings-out, --amount, a group trim,
    16-bit output, the settings table printed: all without torch (the model, features, settings
    and console run in numpy); then ``automix suggest`` and ``automix render`` of those settings too."""
    rng = np.random.default_rng(1)
    song = tmp_path / "song"
    song.mkdir()
    for name in ("kick", "bass", "gtr_1", "gtr_2", "bgvox"):
        sf.write(song / f"{name}.wav", 0.1 * rng.standard_normal((48000, 2)), 48000, subtype="FLOAT")
    code = ("import sys; sys.argv = ['automix'] + sys.argv[1:]; "
            "from automix.cli import main; code = main(); "
            "assert 'torch' not in sys.modules, 'torch was imported'; print('no torch'); sys.exit(code)")
    proc = subprocess.run([sys.executable, "-c", code, "mix", str(song), "-o", str(tmp_path / "mix.wav"),
                           "--stems-out", str(tmp_path / "stems"), "--settings-out", str(tmp_path / "s.json"),
                           "--amount", "80", "--vocals", "1.5", "--bit-depth", "16"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "gtr_2.wav" in proc.stdout and proc.stdout.strip().endswith("no torch")  # the table, then the check
    assert (tmp_path / "mix.wav").is_file() and len(list((tmp_path / "stems").glob("*.wav"))) == 5
    assert (tmp_path / "s.json").is_file()
    for command in (["suggest", str(song), "-o", str(tmp_path / "suggested.json")],
                    ["render", str(song), "--settings", str(tmp_path / "s.json"), "-o", str(tmp_path / "r.wav")]):
        proc = subprocess.run([sys.executable, "-c", code, *command], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0 and proc.stdout.strip().endswith("no torch"), (command[0], proc.stderr[-2000:])


def test_numba_start_up_without_blas_probe_leaves_scipy_and_jitted_dot_working():
    """In a fresh process: the decoder warm-up does not import scipy.linalg; afterwards
    scipy.linalg imports and a jitted ``np.dot`` compiles and is right."""
    code = """
import sys
import numpy as np
from automix.audio_kernels import warm_up
warm_up()
assert "scipy.linalg" not in sys.modules, "warm-up imported scipy.linalg"
assert sys.modules.get("scipy.linalg.cython_blas", 0) is not None or "scipy.linalg.cython_blas" not in sys.modules
import scipy.linalg
from numba import njit
dot = njit(lambda a, b: np.dot(a, b))
a = np.arange(6.0).reshape(2, 3)
b = np.arange(3.0)
assert np.allclose(dot(a, b), a @ b)
assert np.allclose(scipy.linalg.solve(np.eye(2) * 2.0, np.ones(2)), 0.5)
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_precompile_helper_fills_the_cache_the_mix_then_loads(tmp_path):
    """First run after install: with an empty numba cache the console kernel is reported
    uncached; ``python -m automix.precompile`` (what a first ``automix mix`` starts in the
    background) compiles it, the decoders, the loudness meter and the PCM writer into the
    cache; a fresh process then loads them without compiling."""
    import os

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba_cache"))
    check = "from automix.precompile import console_kernel_cached; print(console_kernel_cached())"
    run = lambda *args: subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,  # noqa: E731
                                       timeout=600)
    assert run("-c", check).stdout.strip() == "False"
    helper = run("-m", "automix.precompile")
    assert helper.returncode == 0, helper.stderr[-2000:]
    assert run("-c", check).stdout.strip() == "True"
    code = """
from automix.precompile import compile_kernels, _kernels
compile_kernels()
for kernel in _kernels():
    stats = kernel.stats
    assert not stats.cache_misses and sum(stats.cache_hits.values()) >= 1, (kernel, stats)
print("ok")
"""
    loaded = run("-c", code)
    assert loaded.returncode == 0 and loaded.stdout.strip() == "ok", loaded.stderr[-2000:]
