"""The host backend: this machine, one benchmark process per artifact.

- ``.tflite``: LiteRT's own benchmark tool that ships with ai-edge-litert
  (``python -m ai_edge_litert.tools.benchmark_litert_model ... --result_json=F``).
- ``.onnx``: onnxruntime in ``python -m device_profiles.ort_bench``, with the same
  warm-up / runs / threads protocol.

Each process's peak RSS is its ``VmHWM`` (polled while it runs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from collections.abc import Callable

import numpy as np

from device_profiles.device_state import STATE_SCRIPT, DeviceState, parse_state
from device_profiles.measurement import BackendRun, Latency
from device_profiles.profile import Roofline
from mobilectl.core.errors import UserError
from mobilectl.core.types import Format

TIMEOUT_S = 900
InputShapes = tuple[tuple[str, tuple[int, ...]], ...]  # (input name, shape) of dynamic inputs


class BenchmarkFailed(Exception):
    """A benchmark process failed; the message says which artifact and why."""


def _run(argv: list[str], *, timeout: float = TIMEOUT_S,
         ok_codes: tuple[int, ...] = (0,)) -> tuple[str, str, float]:
    """Run ``argv``; return stdout, stderr and the child's peak RSS in MB (an exit code
    outside ``ok_codes`` raises)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err)
        deadline = time.monotonic() + timeout
        peak_kb = 0
        while True:
            peak_kb = max(peak_kb, _high_water_kb(proc.pid))
            pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                raise BenchmarkFailed(f"timed out after {timeout:.0f}s")
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if proc.returncode not in ok_codes:
        raise BenchmarkFailed(f"exit code {proc.returncode}: {error_line(stderr)}")
    return stdout, stderr, peak_kb / 1024


def error_line(stderr: str) -> str:
    """The line that says what went wrong: the last one naming an error, else the last
    one that is not an INFO line (LiteRT ends with INFO lines after the error)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "failed" in line.lower()]
    others = [line for line in lines if not line.startswith("INFO")]
    return ((errors or others or lines or ["no output"])[-1])[:300]


def _high_water_kb(pid: int) -> int:
    """VmHWM of a running process (Linux): its own peak RSS since exec. (getrusage's
    ru_maxrss would count the parent's pages the child had between fork and exec.)"""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def run_tflite(model: Path, *, threads: int, runs: int, warmup: int,
               input_shapes: InputShapes = ()) -> BackendRun:
    """LiteRT's benchmark tool on ``model``; its JSON has ms with two decimals. The tool
    takes no input shapes: a .tflite with dynamic inputs is measured on an adb device."""
    check_shapes(model, input_shapes)
    with tempfile.TemporaryDirectory(prefix="mobilectl-bench-") as tmp:
        result = Path(tmp) / "result.json"
        _, _, peak = _run([sys.executable, "-m", "ai_edge_litert.tools.benchmark_litert_model",
                           f"--model={model}", f"--num_threads={threads}",
                           f"--num_runs={runs}", f"--warmup_runs={warmup}",
                           f"--result_json={result}"])
        data = json.loads(result.read_text())
    lat = data["latency"]
    latency = Latency(runs=int(lat["num_runs"]), median_ms=float(lat["median_ms"]),
                      p5_ms=lat.get("p5_ms"), p95_ms=lat.get("p95_ms"),
                      mean_ms=float(lat["avg_ms"]), std_ms=float(lat["std_ms"]),
                      min_ms=float(lat["min_ms"]), max_ms=float(lat["max_ms"]))
    return BackendRun(latency, lat.get("init_ms"), peak, "litert benchmark_litert_model",
                      lat.get("warmup_first_ms") if warmup else None)


def check_shapes(model: Path, input_shapes: InputShapes) -> None:
    """A .tflite with dynamic inputs cannot be measured here (a UserError saying where
    it can); an .onnx can."""
    if input_shapes and model.suffix == ".tflite":
        raise UserError(f"{model.name}: LiteRT's benchmark tool on this machine cannot set "
                        "the shape of a dynamic input; profile it on an adb device "
                        "(benchmark_model --input_layer_shape), or export it with fixed shapes")


def run_onnx(model: Path, *, threads: int, runs: int, warmup: int,
             input_shapes: InputShapes = ()) -> BackendRun:
    """onnxruntime (CPU) in its own process on ``model``, dynamic inputs at
    ``input_shapes``."""
    shapes = [arg for name, shape in input_shapes
              for arg in ("--input-shape", f"{name}={','.join(map(str, shape))}")]
    stdout, _, peak = _run([sys.executable, "-m", "device_profiles.ort_bench", "--model",
                            str(model), "--threads", str(threads), "--runs", str(runs),
                            "--warmup", str(warmup), *shapes])
    data = json.loads(stdout)
    return BackendRun(Latency.from_samples(data["samples_ms"]), data["init_ms"], peak,
                      "onnxruntime CPU", data.get("first_ms"))


#: one runner per artifact format
RUNNERS: dict[Format, Callable[..., BackendRun]] = {Format.TFLITE: run_tflite,
                                                    Format.ONNX: run_onnx}


def run_artifact(path: Path, *, threads: int, runs: int, warmup: int,
                 input_shapes: InputShapes = ()) -> BackendRun:
    """Run ``path`` with the runner of its format (dynamic inputs at ``input_shapes``)."""
    runner = RUNNERS.get(path.suffix.lstrip("."))
    if runner is None:
        raise UserError(f"{path}: not a .tflite or .onnx file")
    return runner(path, threads=threads, runs=runs, warmup=warmup, input_shapes=input_shapes)


def run_ops(path: Path, *, threads: int, runs: int, warmup: int) -> dict:
    """Per-op times of ``path`` in their own process (:mod:`device_profiles.op_bench`)."""
    stdout, _, _ = _run([sys.executable, "-m", "device_profiles.op_bench", "--model", str(path),
                         "--threads", str(threads), "--runs", str(runs),
                         "--warmup", str(max(warmup, 3))])
    return json.loads(stdout)


def measure_roofline(*, seconds: float = 1.0) -> Roofline:
    """This machine's float32 peak (a large matmul, GMAC/s) and memory bandwidth
    (a large copy, GB/s, read + write), best of a few repetitions."""
    rng = np.random.default_rng(0)
    n = 1024
    a, b = rng.random((n, n), dtype=np.float32), rng.random((n, n), dtype=np.float32)
    np.dot(a, b)
    best = 0.0
    end = time.monotonic() + seconds / 2
    while time.monotonic() < end:
        t0 = time.perf_counter()
        np.dot(a, b)
        best = max(best, n ** 3 / (time.perf_counter() - t0) / 1e9)
    src = np.ones(64 * 2**20 // 4, dtype=np.float32)
    dst = np.empty_like(src)
    bandwidth = 0.0
    end = time.monotonic() + seconds / 2
    while time.monotonic() < end:
        t0 = time.perf_counter()
        np.copyto(dst, src)
        bandwidth = max(bandwidth, 2 * src.nbytes / (time.perf_counter() - t0) / 1e9)
    return Roofline(best, None, bandwidth, "measured here: numpy float32 matmul and copy")


def read_state() -> DeviceState:
    """This machine's state: the same script a phone runs (no ``dumpsys`` here)."""
    try:
        done = subprocess.run(["/bin/sh", "-c", STATE_SCRIPT], capture_output=True, text=True,
                              timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return parse_state("")
    return parse_state(done.stdout)
