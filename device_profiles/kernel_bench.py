"""Kernel timing on this machine, in its own process (``python -m
device_profiles.kernel_bench --threads N --runs R --warmup W FILE...``): each .tflite
(one kernel each, cut by the calibration) is loaded into LiteRT's interpreter and its
median ``invoke()`` time printed as one JSON line as soon as it is known, so the caller
shows progress and keeps what finished. A file that does not load prints its error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from device_profiles.op_bench import ready_interpreter, time_invoke


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kernel_bench")
    parser.add_argument("files", nargs="+")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args(argv)
    for file in args.files:
        row: dict[str, object] = {"file": Path(file).name}
        try:
            runtime = ready_interpreter(Path(file).read_bytes(), args.threads)
            row["ms"] = time_invoke(runtime, runs=args.runs, warmup=args.warmup)
        except (RuntimeError, ValueError, OSError) as exc:
            row["error"] = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
