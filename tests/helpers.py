"""Helpers shared by the CLI tests: run the CLI in-process, read its one error line."""

from __future__ import annotations

import pytest

from mobilectl.cli import main


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run ``mobilectl ARGV``; return exit code, stdout and stderr."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    captured = capsys.readouterr()
    return exited.value.code, captured.out, captured.err


def error_line(code: int, err: str) -> str:
    """The single ``error:`` line of a bad-input run (exit 2, no traceback)."""
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]
