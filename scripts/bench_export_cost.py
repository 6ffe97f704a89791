"""What one export costs against the plain TF converter on the same architecture.

    python scripts/bench_export_cost.py [--repeats 3]

Each run is a fresh process, timed from start to exit, its peak RSS from the kernel
(``wait4``): ``mobilectl export mobilenet_v2`` (224x224, fresh weights; TFLite fp32,
TFLite int8, and both formats fp32), against a process that imports TensorFlow, builds
``keras.applications.MobileNetV2(weights=None)`` and converts it with
``TFLiteConverter.from_keras_model`` (fp32, and int8 with 64 random calibration
inputs, the sample count mobilectl uses by default). Interleaved: every repetition
runs every command once. Targets: at most 1.3x the converter's peak RSS and 1.25x its
wall time.

Writes ``bench/export_cost.json`` and ``bench/export_cost.md`` and puts the latter into
BENCHMARKS.md between its export-cost markers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from bench_common import log, splice  # noqa: E402  (scripts/ helpers)

START, END = "<!-- export-cost -->", "<!-- /export-cost -->"
PLAIN = """
import sys, numpy as np, tensorflow as tf, keras
model = keras.applications.MobileNetV2(weights=None)
converter = tf.lite.TFLiteConverter.from_keras_model(model)
if sys.argv[1] == "int8":
    rng = np.random.default_rng(0)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: (
        [rng.uniform(-1, 1, (1, 224, 224, 3)).astype("float32")] for _ in range(64))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
open(sys.argv[2], "wb").write(converter.convert())
"""
#: (job, ours or the plain converter, command after the Python executable)
JOBS = (
    ("tflite fp32", "ours", ["-m", "mobilectl.cli", "export", "mobilenet_v2", "--format", "tflite"]),
    ("tflite fp32", "converter", ["-c", PLAIN, "fp32"]),
    ("tflite int8", "ours", ["-m", "mobilectl.cli", "export", "mobilenet_v2", "--format", "tflite",
                             "--int8"]),
    ("tflite int8", "converter", ["-c", PLAIN, "int8"]),
    ("tflite + onnx fp32", "ours", ["-m", "mobilectl.cli", "export", "mobilenet_v2"]),
)


def run(argv: list[str], work: Path) -> tuple[float, float]:
    """(wall s, peak RSS MB) of one fresh process."""
    out = work / f"out-{time.monotonic_ns()}"
    extra = ["--out", str(out)] if "mobilectl.cli" in argv else [str(out) + ".tflite"]
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, *argv, *extra], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{' '.join(argv[:4])} failed with status {status}")
    return wall, usage.ru_maxrss / 1024


def cell(values: list[float], digits: int) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def markdown(rows: dict[tuple[str, str], dict[str, list[float]]], s: dict[str, Any]) -> str:
    lines = ["## What an export costs against the plain TF converter", "",
             f"`python scripts/bench_export_cost.py` ({s['repeats']} interleaved repetitions, "
             "each a fresh process; median (range)). MobileNet V2 224x224, fresh weights; the "
             "converter: `keras.applications.MobileNetV2` through `TFLiteConverter` (int8 with "
             "64 calibration inputs). Targets: ours at most 1.3x the converter's peak RSS and "
             "1.25x its wall time.", "",
             "| job | who | wall s | peak RSS MB | ours / converter: wall | RSS |",
             "|---|---|---|---|---|---|"]
    for (job, who), values in rows.items():
        peer = rows.get((job, "converter"))
        ratio = "- | -" if who == "converter" or peer is None else (
            f"{statistics.median(values['wall']) / statistics.median(peer['wall']):.2f}x | "
            f"{statistics.median(values['rss']) / statistics.median(peer['rss']):.2f}x")
        lines.append(f"| {job} | {who} | {cell(values['wall'], 1)} | {cell(values['rss'], 0)} "
                     f"| {ratio} |")
    lines.append("")
    lines.append("Both formats have no single-converter peer: the row shows what the second "
                 "format adds.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="mobilectl-export-cost-"))
    rows: dict[tuple[str, str], dict[str, list[float]]] = {}
    for r in range(args.repeats):
        for job, who, argv in JOBS:
            log(f"repetition {r + 1}/{args.repeats}: {who} {job}")
            wall, rss = run(argv, work)
            row = rows.setdefault((job, who), {"wall": [], "rss": []})
            row["wall"].append(wall)
            row["rss"].append(rss)
    settings = {"repeats": args.repeats, "wall_time_s": time.perf_counter() - started}
    text = markdown(rows, settings)
    (ROOT / "bench").mkdir(exist_ok=True)
    (ROOT / "bench" / "export_cost.md").write_text(text)
    data = {"settings": settings,
            "rows": [{"job": j, "who": w, **v} for (j, w), v in rows.items()]}
    (ROOT / "bench" / "export_cost.json").write_text(json.dumps(data, indent=2) + "\n")
    splice(text, ROOT / "BENCHMARKS.md", start=START, end=END)
    log(f"done in {settings['wall_time_s'] / 60:.1f} min")


if __name__ == "__main__":
    main()
