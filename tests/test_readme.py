"""The README's examples are generated from real runs and kept current; the quick
start works as printed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_fast_readme_examples_are_current() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "readme_examples.py"),
                           "--check", "--only", "info"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr


def test_quick_start_digits_example_gives_verified_int8(tmp_path: Path) -> None:
    """examples/digits.py trains, exports with its own calibration, and every artifact
    passes verification (enforced: trained weights); the run says where they went."""
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "digits.py"), "--out",
                           str(tmp_path / "d")], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    accuracy = float(re.search(r"float model: ([\d.]+)% top-1", done.stdout).group(1))
    assert accuracy > 60  # ten classes: chance is 10%
    rows = [line for line in done.stdout.splitlines() if "_int8." in line]
    assert len(rows) == 2 and all(": ok" in row for row in rows), done.stdout
    assert f"next: mobilectl profile {tmp_path / 'd' / 'artifacts' / 'manifest.json'}" in done.stderr
    assert "warning" not in done.stderr and "Traceback" not in done.stderr


def test_readme_test_command_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    command = "pip install -e '.[test]' && python -m pytest -n 2"
    assert command in readme and command in ci
