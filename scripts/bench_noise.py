"""This machine's reproducibility in the stored latency-prediction run
(``bench/predict.json``, written by ``scripts/bench_predict.py``): per precision, the
share of single processes within +-10% of the median of their variant's other
processes, and the median max/min spread of a variant's processes.

Usage: python scripts/bench_noise.py [bench/predict.json]
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from bench_predict import noise_floor  # noqa: E402


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "bench" / "predict.json"
    rows = json.loads(path.read_text())["rows"]
    for precision in ("fp32", "int8"):
        chosen = [r for r in rows if r["precision"] == precision]
        spread = statistics.median(max(r["measured_reps"]) / min(r["measured_reps"]) for r in chosen)
        print(f"{precision}: one process within ±10% of its other processes' median: "
              f"{noise_floor(chosen):.0%}; median max/min of a variant's processes: {spread:.2f}x")


if __name__ == "__main__":
    main()
