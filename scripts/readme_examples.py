"""Write (or check) the README's console examples from real runs, so no example is
typed by hand.

Each example sits between ``<!-- example: NAME -->`` and ``<!-- /example -->`` in
README.md and is rebuilt here: the command as a user types it, then what this
checkout prints for it (80 columns).

    python scripts/readme_examples.py            # rewrite the examples in README.md
    python scripts/readme_examples.py --check    # exit 1 if one is out of date
    python scripts/readme_examples.py --check --only info   # the fast ones (tests)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
ENV = {**os.environ, "COLUMNS": "80", "TF_CPP_MIN_LOG_LEVEL": "3"}


def _run(argv: list[str], *, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=ENV, timeout=900)


def _mobilectl(*args: str) -> subprocess.CompletedProcess[str]:
    return _run([sys.executable, "-m", "mobilectl.cli", *args])


def info_example() -> str:
    """The FLOPs proxy as JSON, and one bad input."""
    macs = json.loads(_mobilectl("info", "mobilenet_v1", "--width-multiplier", "0.5",
                                 "--json").stdout)["macs"]
    bad = _mobilectl("info", "mobilenet_v1", "--width-multiplier", "7")
    return "\n".join([
        "$ mobilectl info mobilenet_v1 --width-multiplier 0.5 --json | jq .macs", str(macs),
        "$ mobilectl info mobilenet_v1 --width-multiplier 7",
        *[line for line in bad.stderr.splitlines() if line.startswith("error:")],
        "$ echo $?", str(bad.returncode)])


def digits_example() -> str:
    """examples/digits.py: train on the digits, export int8 with its own calibration."""
    with tempfile.TemporaryDirectory(prefix="mobilectl-readme-") as tmp:
        done = _run([sys.executable, str(ROOT / "examples" / "digits.py"), "--out", "digits"],
                    cwd=Path(tmp))
        if done.returncode != 0:
            raise SystemExit(f"examples/digits.py failed:\n{done.stderr[-2000:]}")
    hint = [line for line in done.stderr.splitlines() if line.startswith("wrote ")]
    return "\n".join(["$ python examples/digits.py", done.stdout.rstrip(), *hint])


def info_file_example() -> str:
    """The FLOPs proxy read from exported files, next to the zoo model's count."""
    with tempfile.TemporaryDirectory(prefix="mobilectl-readme-") as tmp:
        knobs = ["-w", "0.25", "-r", "96"]
        export = _run([sys.executable, "-m", "mobilectl.cli", "export", "mobilenet_v1", *knobs,
                       "--int8", "--out", "mnv1"], cwd=Path(tmp))
        if export.returncode != 0:
            raise SystemExit(f"export failed:\n{export.stderr[-2000:]}")
        stem = "mnv1/mobilenet_v1-w0.25-r96_int8"
        table = _run([sys.executable, "-m", "mobilectl.cli", "info", f"{stem}.tflite"],
                     cwd=Path(tmp)).stdout.rstrip()
        macs = [json.loads(_run([sys.executable, "-m", "mobilectl.cli", "info", *argv, "--json"],
                                cwd=Path(tmp)).stdout)["macs"]
                for argv in (["mobilenet_v1", *knobs], [f"{stem}.onnx"])]
    return "\n".join([
        "$ mobilectl export mobilenet_v1 -w 0.25 -r 96 --int8 --out mnv1 > /dev/null",
        f"$ mobilectl info {stem}.tflite", table,
        "$ mobilectl info mobilenet_v1 -w 0.25 -r 96 --json | jq .macs", str(macs[0]),
        f"$ mobilectl info {stem}.onnx --json | jq .macs", str(macs[1])])


EXAMPLES: dict[str, Callable[[], str]] = {"info": info_example, "digits": digits_example,
                                          "info_file": info_file_example}
BLOCK = re.compile(r"(<!-- example: (\w+) -->\n```console\n)(.*?)(```\n<!-- /example -->)",
                   re.DOTALL)


def render(text: str, only: set[str]) -> str:
    """README text with the chosen examples rebuilt."""
    def replace(match: re.Match[str]) -> str:
        name = match.group(2)
        if name not in EXAMPLES:
            raise SystemExit(f"README.md: unknown example {name!r}; known: {', '.join(EXAMPLES)}")
        if only and name not in only:
            return match.group(0)
        return match.group(1) + EXAMPLES[name]().rstrip("\n") + "\n" + match.group(4)

    return BLOCK.sub(replace, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="README examples from real runs")
    parser.add_argument("--check", action="store_true", help="exit 1 if README is stale")
    parser.add_argument("--only", action="append", default=[], choices=sorted(EXAMPLES))
    args = parser.parse_args(argv)
    text = README.read_text(encoding="utf-8")
    new = render(text, set(args.only))
    if args.check:
        if new != text:
            print("README.md examples are out of date: run python scripts/readme_examples.py",
                  file=sys.stderr)
            return 1
        return 0
    README.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
