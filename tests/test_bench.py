"""scripts/bench.py --quick runs end to end and writes its report and plots."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_benchmark_writes_report(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench.py"), "--quick",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "benchmarks.json").read_text())
    models = {r["model"] for r in results["latency"] if r["origin"] == "registry"}
    assert models == {"mobilenet_v1", "squeezenet1_0", "shufflenet_v2"}
    assert all(r["latency_ms"]["n"] == 3 and r["latency_ms"]["median"] > 0
               and r["latency_ms"]["ci_low"] <= r["latency_ms"]["median"] <= r["latency_ms"]["ci_high"]
               for r in results["latency"])
    assert {(r["format"], r["precision"]) for r in results["latency"]} == {
        ("tflite", "fp32"), ("tflite", "int8"), ("onnx", "fp32"), ("onnx", "int8")}
    assert results["peers"] and all(p["twin"] == "MobileNet" for p in results["peers"])
    assert all(p["ratio_ci_low"] <= p["latency_ratio"] <= p["ratio_ci_high"]
               for p in results["peers"])
    assert results["export"]["cached_rebuild_s"] < results["export"]["first_build_s"]
    assert {j["status"] for j in results["export"]["cached_jobs"]} == {"reused"}
    assert results["spearman"]["tflite fp32"]["models"] == 3
    assert results["accuracy"][0]["float_top1"] > 0 and "tflite_int8_top1" in results["accuracy"][0]
    text = (tmp_path / "BENCHMARKS.md").read_text()
    assert "## 5. FLOPs against latency" in text
    for png in ("latency_vs_macs.png", "roofline.png"):
        assert (tmp_path / "bench" / png).read_bytes()[:4] == b"\x89PNG"
