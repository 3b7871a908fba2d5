"""Keep every core busy during a test (``AUTOMIX_BUSY_CORES=1``): reproducibility under load.

Results that change when the machine is busy (threads that finish in another order, a
thread count chosen from the load) show up only then. With ``AUTOMIX_BUSY_CORES=1`` in the
environment the ``busy_cores`` fixture starts one ``while True: pass`` process per core for
the duration of the test and stops them afterwards; without it the fixture does nothing
(CI runs the tests once, unloaded). The repeated check under load::

    for i in $(seq 20); do AUTOMIX_BUSY_CORES=1 .venv/bin/python -m pytest -q -p no:cacheprovider \\
        tests/test_train_e2e.py::test_train_kill_resume_matches_uninterrupted_run_and_evaluates \\
        tests/test_ddp.py || break; done
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.fixture
def busy_cores():
    """One busy-loop process per core while the test runs (only with ``AUTOMIX_BUSY_CORES=1``)."""
    if os.environ.get("AUTOMIX_BUSY_CORES") != "1":
        yield []
        return
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        yield procs
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()
