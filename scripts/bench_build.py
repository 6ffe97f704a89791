"""Benchmark `mobilectl build`: a first build, a rebuild with nothing changed (every
artifact reused from the cache) and a clean rebuild (same bytes?). Fresh processes,
several repetitions, medians with the range.

    python scripts/bench_build.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEC = """
[defaults]
formats = ["tflite", "onnx"]
calib_samples = 32

[[artifact]]
name = "mobilenet_v2"
model = "mobilenet_v2"
knobs = { width_multiplier = 0.5, resolution = 160 }
precisions = ["int8", "fp32"]

[[artifact]]
name = "shufflenet_v2"
model = "shufflenet_v2"
knobs = { width_multiplier = 0.5, resolution = 128 }
precisions = ["int8"]
"""


def build(root: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mobilectl.cli", "build", str(root / "mobilectl.toml"),
                    "--out", str(root / "dist"), "--cache", str(root / "cache")],
                   check=True, capture_output=True)
    return time.perf_counter() - start


def shas(root: Path) -> dict[str, str]:
    manifest = json.loads((root / "dist" / "manifest.json").read_text())
    return {a["path"]: a["sha256"] for a in manifest["artifacts"]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    first, cached, identical = [], [], True
    for _ in range(args.repeats):
        root = Path(tempfile.mkdtemp(prefix="mobilectl-bench-build-"))
        (root / "mobilectl.toml").write_text(SPEC)
        first.append(build(root))
        reference = shas(root)
        cached.append(build(root))
        shutil.rmtree(root / "dist")
        shutil.rmtree(root / "cache")
        build(root)
        identical &= shas(root) == reference
        shutil.rmtree(root)

    def fmt(xs: list[float]) -> str:
        return f"median {statistics.median(xs):.1f} s (range {min(xs):.1f}-{max(xs):.1f}, n={len(xs)})"

    print(f"first build   : {fmt(first)}")
    print(f"cached rebuild: {fmt(cached)} = {statistics.median(cached) / statistics.median(first):.1%} of the first")
    print(f"clean rebuild byte-identical: {identical}")


if __name__ == "__main__":
    main()
