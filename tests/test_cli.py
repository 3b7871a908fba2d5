"""The command line: help teaches, errors are one line and exit 2."""
import subprocess
import sys


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "automix", *args], capture_output=True, text=True, timeout=120
    )


def test_help_lists_usage_and_exits_zero():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "usage: automix" in result.stdout


def test_no_command_prints_help_and_fails():
    result = run_cli()
    assert result.returncode == 2
    assert "usage: automix" in result.stdout
