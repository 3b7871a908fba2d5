"""The command line: help teaches, errors are one line and exit 2."""
import os
import subprocess
import sys


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "automix", *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_help_lists_usage_and_exits_zero():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "usage: automix" in result.stdout


def test_no_command_prints_help_and_fails():
    result = run_cli()
    assert result.returncode == 2
    assert "usage: automix" in result.stdout


def test_fast_exit_flushes_piped_output_and_keeps_the_status(tmp_path):
    """The command skips the interpreter's teardown (os._exit): everything printed through a
    pipe (no terminal, so block-buffered) must still arrive, and the status must survive."""
    import numpy as np
    import soundfile as sf

    from automix.loudness import integrated_loudness

    sr = 44100
    t = np.arange(sr) / sr
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    path = tmp_path / "tone.wav"
    sf.write(path, np.stack([tone, tone], 1), sr)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # block-buffered pipes
    ok = run_cli("analyze", str(path), env=env)
    assert ok.returncode == 0, ok.stderr
    expected = integrated_loudness(np.stack([tone, tone]), sr)
    assert f"{expected:.1f}" in ok.stdout  # the report reached the pipe, with the measured loudness
    bad = run_cli("analyze", str(tmp_path / "missing.wav"), env=env)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "missing.wav" in bad.stderr


def test_command_process_asks_numpy_for_ordinary_pages():
    """console_main turns off numpy's huge-page requests (compaction stalls on a busy machine)."""
    code = ("import sys, numpy\n"
            "from automix.cli import use_small_pages\n"
            "try:\n    from numpy._core.multiarray import _set_madvise_hugepage\n"
            "except ImportError:\n    from numpy.core.multiarray import _set_madvise_hugepage\n"
            "_set_madvise_hugepage(True)\n"
            "assert use_small_pages() is True\n"
            "assert _set_madvise_hugepage(False) is False\n")  # still off after the call
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
