"""Benchmark: wall time of `mobilectl --help` and `--version` (TensorFlow stays unloaded).

Runs each command N times in fresh processes and prints median and spread (min, max,
p10-p90) in milliseconds. Usage: python scripts/bench_cli_startup.py [--runs 15] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time


def time_command(argv: list[str], runs: int) -> dict[str, float]:
    """Run argv `runs` times (after one warm-up) and summarise the wall times in ms."""
    subprocess.run(argv, capture_output=True, check=True)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        samples.append((time.perf_counter() - start) * 1000)
    deciles = statistics.quantiles(samples, n=10)
    return {"median_ms": statistics.median(samples), "min_ms": min(samples),
            "max_ms": max(samples), "p10_ms": deciles[0], "p90_ms": deciles[-1], "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    exe = shutil.which("mobilectl") or sys.exit("mobilectl is not installed: pip install -e .")
    results = {flag: time_command([exe, flag], args.runs) for flag in ("--help", "--version")}
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for flag, r in results.items():
        print(f"mobilectl {flag:<9} median {r['median_ms']:.0f} ms  "
              f"(p10-p90 {r['p10_ms']:.0f}-{r['p90_ms']:.0f}, min {r['min_ms']:.0f}, "
              f"max {r['max_ms']:.0f}, n={r['runs']})")


if __name__ == "__main__":
    main()
