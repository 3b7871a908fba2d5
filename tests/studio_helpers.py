"""Starting and stopping the real ``automix studio`` command for the studio tests."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path


def start_studio(song: Path, out: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """``automix studio`` on any free port; returns the process and the page's address."""
    proc = subprocess.Popen([sys.executable, "-m", "automix", "studio", str(song), "--port", "0", "--no-open",
                             "--out", str(out), *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 180
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "open http://" in line:
            return proc, line.split("open ", 1)[1].split()[0]
    proc.kill()
    raise AssertionError("automix studio did not start:\n" + "".join(lines))


def stop_studio(proc: subprocess.Popen) -> str:
    """Ctrl-C, then the rest of its output; asserts a clean stop."""
    proc.send_signal(signal.SIGINT)
    try:
        rest, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("automix studio did not stop on Ctrl-C")
    assert proc.returncode == 0, rest
    assert "studio: stopped" in rest and "Traceback" not in rest
    return rest
