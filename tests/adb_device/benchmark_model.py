"""The test device's ``benchmark_model``: runs the pushed .tflite for real on the host
with LiteRT and prints what TFLite's C++ benchmark tool prints, so the harness parses
real measurements. Faults come from the device (MOBILECTL_TEST_DEVICE_FAULTS)."""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

STARTED = time.monotonic()  # before numpy and LiteRT load: a run's whole time heats the SoC

import numpy as np  # noqa: E402


def _stats(samples_us: list[float]) -> str:
    values = np.asarray(samples_us)
    p5, median, p95 = np.percentile(values, [5, 50, 95])
    return (f"count={len(values)} first={values[0]:.0f} curr={values[-1]:.0f} "
            f"min={values.min():.0f} max={values.max():.0f} avg={values.mean():.1f} "
            f"std={values.std():.0f} p5={p5:.0f} median={median:.0f} p95={p95:.0f}")


def _field(width: int, value: object) -> str:
    text = f"{value:.3f}" if isinstance(value, float) else str(value)
    return "\t" + text.rjust(width)


def _op_tables(graph: str, *, threads: int, runs: int) -> str:
    """The C++ tool's op-profiling tables (its stats calculator's layout), each op
    timed for real on this machine (every op alone, as LiteRT runs it)."""
    from device_profiles.op_bench import tflite_ops

    measured = tflite_ops(open(graph, "rb").read(), threads=threads, runs=max(runs, 5),
                          warmup=2)["ops"]
    total = sum(op["ms"] or 0.0 for op in measured) or 1.0
    header = "".join(_field(w, f"[{h}]") for w, h in (
        (24, "node type"), (9, "first"), (9, "avg ms"), (8, "%"), (8, "cdf%"),
        (10, "mem KB"), (9, "times called"))) + "\t[Name]"
    lines, cdf = ["Operator-wise Profiling Info for Regular Benchmark Runs:",
                  "=" * 30 + " Run Order " + "=" * 30, header], 0.0
    by_type: dict[str, list[float]] = {}
    for op in measured:
        ms = op["ms"] or 0.0
        cdf += ms
        by_type.setdefault(op["kind"], []).append(ms)
        lines.append(_field(24, op["kind"]) + _field(9, ms) + _field(9, ms)
                     + _field(7, 100 * ms / total) + "%" + _field(7, 100 * cdf / total) + "%"
                     + _field(10, 0.0) + _field(9, 1) + f"\t[{op['name']}]:{op['index']}")
    lines += ["", "=" * 30 + " Summary by node type " + "=" * 30, "".join(
        _field(w, f"[{h}]") for w, h in ((24, "Node type"), (9, "count"), (10, "avg ms"),
                                          (11, "avg %"), (11, "cdf %"), (10, "mem KB"),
                                          (10, "times called")))]
    cdf = 0.0
    for kind, times in sorted(by_type.items(), key=lambda kv: -sum(kv[1])):
        cdf += sum(times)
        lines.append(_field(24, kind) + _field(9, len(times)) + _field(10, sum(times))
                     + _field(10, 100 * sum(times) / total) + "%"
                     + _field(10, 100 * cdf / total) + "%" + _field(10, 0.0)
                     + _field(9, len(times)))
    lines += ["", f"Timings (microseconds): count={runs} avg={total * 1000:.0f}",
              f"{len(measured)} nodes observed", ""]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--graph", required=True)
    parser.add_argument("--num_threads", type=int, default=1)
    parser.add_argument("--num_runs", type=int, default=50)
    parser.add_argument("--warmup_runs", type=int, default=1)
    for flag in ("--use_xnnpack", "--use_gpu", "--use_nnapi"):
        parser.add_argument(flag, default="false")
    parser.add_argument("--input_layer", default="")  # names, comma-separated
    parser.add_argument("--input_layer_shape", default="")  # shapes, colon-separated
    parser.add_argument("--enable_op_profiling", default="false")
    args = parser.parse_args()
    print("INFO: STARTING!")
    print(f"INFO: Graph: [{args.graph}]")
    print(f"INFO: Num threads: [{args.num_threads}]")
    if "benchmark_error" in os.environ.get("MOBILECTL_TEST_DEVICE_FAULTS", ""):
        print("ERROR: Failed to allocate tensors!", flush=True)
        return 1
    if not os.path.isfile(args.graph):
        print(f"ERROR: Could not open '{args.graph}'.")
        return 1
    from ai_edge_litert.interpreter import Interpreter

    start = time.perf_counter()
    interpreter = Interpreter(model_path=args.graph, num_threads=args.num_threads)
    if args.input_layer:  # as the C++ tool: resize the named inputs, then allocate
        print(f"INFO: Input layers: [{args.input_layer}]")
        print(f"INFO: Input shapes: [{args.input_layer_shape}]")
        index = {d["name"]: d["index"] for d in interpreter.get_input_details()}
        for name, shape in zip(args.input_layer.split(","), args.input_layer_shape.split(":")):
            interpreter.resize_tensor_input(index[name], [int(d) for d in shape.split(",")])
    interpreter.allocate_tensors()
    init_us = (time.perf_counter() - start) * 1e6
    print(f"INFO: Loaded model {args.graph}")
    print(f"INFO: Initialized session in {init_us / 1000:.3f}ms.")
    detail = interpreter.get_input_details()[0]
    x = np.zeros(detail["shape"], dtype=detail["dtype"])

    def run(n: int) -> list[float]:
        samples = []
        for _ in range(max(n, 1)):
            t0 = time.perf_counter()
            interpreter.set_tensor(detail["index"], x)
            interpreter.invoke()
            samples.append((time.perf_counter() - t0) * 1e6)
        return samples

    print("INFO: Running benchmark for at least 1 iterations and at least 0.5 seconds "
          "but terminate if exceeding 150 seconds.")
    warm = run(args.warmup_runs)
    print(f"INFO: {_stats(warm)}")
    print(f"INFO: Running benchmark for at least {args.num_runs} iterations and at least "
          "1 seconds but terminate if exceeding 150 seconds.")
    timed = run(args.num_runs)
    root = os.environ.get("MOBILECTL_TEST_DEVICE_ROOT")
    if root:  # the SoC heats by the seconds this run kept it busy (tests/adb_device/soc.py)
        with open(os.path.join(root, "work.log"), "a", encoding="ascii") as log:
            log.write(f"{time.monotonic() - STARTED:.6f}\n")
    print(f"INFO: {_stats(timed)}")
    print(f"INFO: Inference timings in us: Init: {init_us:.0f}, First inference: {warm[0]:.0f}, "
          f"Warmup (avg): {np.mean(warm):.1f}, Inference (avg): {np.mean(timed):.1f}")
    if args.enable_op_profiling == "true" and "no_op_profiling" not in os.environ.get(
            "MOBILECTL_TEST_DEVICE_FAULTS", ""):
        print(_op_tables(args.graph, threads=args.num_threads, runs=args.num_runs), end="")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("INFO: Memory footprint delta from the start of the tool (MB): "
          f"init={peak_mb:.4f} overall={peak_mb:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
