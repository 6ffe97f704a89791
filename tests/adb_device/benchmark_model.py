"""The test device's ``benchmark_model``: runs the pushed .tflite for real on the host
with LiteRT and prints what TFLite's C++ benchmark tool prints, so the harness parses
real measurements. Faults come from the device (MOBILECTL_TEST_DEVICE_FAULTS).

Per test device (its DeviceConfig):
- MOBILECTL_TEST_DEVICE_BENCH_FORMAT: ``litert`` (today's output, with
  ``--report_peak_memory_footprint`` and ``--max_secs``) or ``tflite-2.4`` (no
  ``INFO:`` prefixes, no percentiles, a one-run warm-up as ``count=1 curr=N``, the old
  ``Peak memory footprint`` line; it knows neither flag and prints its usage text
  when given one, as that release does with a flag it does not know).
- MOBILECTL_TEST_DEVICE_GPU_OPS: the op types its emulated GPU delegate takes
  (comma-separated; empty: none; unset: the device has no GPU delegate). With
  ``--use_gpu=true`` the tool reports the placement in its release's words; the
  times are still the CPU's, measured here (no GPU exists on this machine).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

STARTED = time.monotonic()  # before numpy and LiteRT load: a run's whole time heats the SoC

import numpy as np  # noqa: E402


def _heat(root: str, seconds: float) -> None:
    """Log this run's busy seconds and wait (up to 10 s) until the SoC's thermal thread
    has counted the log up to this line, as a phone is hot when the run ends, not some
    time later."""
    with open(os.path.join(root, "work.log"), "a", encoding="ascii") as log:
        log.write(f"{seconds:.6f}\n")
        logged = log.tell()
    seen, deadline = os.path.join(root, "work.seen"), time.monotonic() + 10.0
    while time.monotonic() < deadline:
        try:
            with open(seen, encoding="ascii") as text:
                if int(text.read() or 0) >= logged:
                    return
        except (OSError, ValueError):
            pass
        time.sleep(0.02)


FORMAT = os.environ.get("MOBILECTL_TEST_DEVICE_BENCH_FORMAT", "litert")
FLAGS = (("num_runs", "50", "int32", "expected number of runs"),
         ("warmup_runs", "1", "int32", "minimum number of runs performed on initialization"),
         ("graph", "", "string", "graph file name"),
         ("num_threads", "-1", "int32", "number of threads"),
         ("use_gpu", "false", "bool", "use gpu"), ("use_nnapi", "false", "bool", "use nnapi"),
         ("use_xnnpack", "false", "bool", "use XNNPack"),
         ("input_layer", "", "string", "input layer names"),
         ("input_layer_shape", "", "string", "input layer shape"),
         ("enable_op_profiling", "false", "bool", "enable op profiling"))
MODERN_FLAGS = (("max_secs", "150", "float", "maximum number of seconds to rerun for"),
                ("report_peak_memory_footprint", "false", "bool",
                 "Report the peak memory footprint by periodically checking the memory "
                 "footprint."))


def _usage(modern: bool) -> str:
    """The tool's usage text (the flags its release knows)."""
    rows = [*FLAGS, *(MODERN_FLAGS if modern else ())]
    return ("usage: benchmark_model\nFlags:\n"
            + "".join(f"\t--{n}={d}\t{t}\toptional\t{h}\n" for n, d, t, h in rows))


def _stats(samples_us: list[float], modern: bool = True) -> str:
    values = np.asarray(samples_us)
    if len(values) == 1 and not modern:  # one run: older releases print only this
        return f"count=1 curr={values[0]:.0f}"
    p5, median, p95 = np.percentile(values, [5, 50, 95])
    line = (f"count={len(values)} first={values[0]:.0f} curr={values[-1]:.0f} "
            f"min={values.min():.0f} max={values.max():.0f} avg={values.mean():.6g} "
            f"std={values.std():.0f}")
    return line + (f" p5={p5:.0f} median={median:.0f} p95={p95:.0f}" if modern else "")


def _graph_ops(graph: str) -> list[str]:
    """The file's op types in execution order (no default delegate applied)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    plain = Interpreter(model_path=graph, experimental_op_resolver_type=
                        OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    return [op["op_name"] for op in plain._get_ops_details()]  # noqa: SLF001


def _gpu_placement(graph: str, modern: bool) -> str:
    """What the emulated GPU delegate reports: which ops it took, in the release's
    words (the graph still runs on the CPU here)."""
    if "MOBILECTL_TEST_DEVICE_GPU_OPS" not in os.environ:
        return "GPU acceleration is unsupported on this platform.\n"
    takes = {t for t in os.environ["MOBILECTL_TEST_DEVICE_GPU_OPS"].split(",") if t}
    ops = _graph_ops(graph)
    taken = [op in takes for op in ops]
    nodes = sum(taken)
    partitions = sum(1 for i, t in enumerate(taken) if t and (i == 0 or not taken[i - 1]))
    refused = sorted({op for op in ops if op not in takes})
    lines = ["INFO: Created TensorFlow Lite delegate for GPU."]
    if refused:
        lines += ["ERROR: Following operations are not supported by GPU delegate:",
                  *(f"{op}: Operation is not supported." for op in refused)]
    if modern:
        if nodes:
            lines.append(f"VERBOSE: Replacing {nodes} out of {len(ops)} node(s) with delegate "
                         f"(TfLiteGpuDelegateV2) node, yielding {partitions} partitions for "
                         "the whole graph.")
        lines.append("INFO: Explicitly applied GPU delegate, and the model graph will be "
                     "completely executed by the delegate." if nodes == len(ops) else
                     "INFO: Explicitly applied GPU delegate, and the model graph will be "
                     f"partially executed by the delegate w/ {partitions} delegate kernels."
                     if nodes else "INFO: Though GPU delegate is explicitly applied, the "
                     "model graph will not be executed by the delegate.")
    else:
        lines.append(f"{nodes} operations will run on the GPU, and the remaining "
                     f"{len(ops) - nodes} operations will run on the CPU.")
        if nodes:
            lines.append(f"INFO: Replacing {nodes} node(s) with delegate (TfLiteGpuDelegateV2) "
                         f"node, yielding {partitions} partitions.")
    return "\n".join(lines) + "\n"


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
    modern = FORMAT != "tflite-2.4"
    if modern:
        parser.add_argument("--report_peak_memory_footprint", default="false")
        parser.add_argument("--max_secs", type=float, default=150.0)
    if "--help" in sys.argv[1:]:
        print(_usage(modern), end="")
        return 0
    args, unknown = parser.parse_known_args()
    if unknown:  # the tool's own behaviour with a flag its release does not know
        print(_usage(modern), end="")
        return 1
    say = (lambda line: print(f"INFO: {line}")) if modern else print
    say("STARTING!")
    say(f"Graph: [{args.graph}]")
    say(f"Num threads: [{args.num_threads}]")
    if "benchmark_error" in os.environ.get("MOBILECTL_TEST_DEVICE_FAULTS", ""):
        print("ERROR: Failed to allocate tensors!", flush=True)
        return 1
    if not os.path.isfile(args.graph):
        print(f"ERROR: Could not open '{args.graph}'.")
        return 1
    from ai_edge_litert.interpreter import Interpreter

    # The phone runs each of its threads on a core of its own; on a host with fewer cores
    # than threads they would spin against each other (4 threads on 2 cores ran the
    # whole model 2-8x slower than its ops one by one), so the real work runs on at most
    # the host's cores.
    threads = min(args.num_threads, len(os.sched_getaffinity(0)))
    start = time.perf_counter()
    interpreter = Interpreter(model_path=args.graph, num_threads=threads)
    if args.input_layer:  # as the C++ tool: resize the named inputs, then allocate
        say(f"Input layers: [{args.input_layer}]")
        say(f"Input shapes: [{args.input_layer_shape}]")
        index = {d["name"]: d["index"] for d in interpreter.get_input_details()}
        for name, shape in zip(args.input_layer.split(","), args.input_layer_shape.split(":")):
            interpreter.resize_tensor_input(index[name], [int(d) for d in shape.split(",")])
    interpreter.allocate_tensors()
    init_us = (time.perf_counter() - start) * 1e6
    say(f"Loaded model {args.graph}")
    if args.use_gpu == "true":
        print(_gpu_placement(args.graph, modern), end="")
    say(f"Initialized session in {init_us / 1000:.3f}ms.")
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

    limit = getattr(args, "max_secs", 150.0)
    say("Running benchmark for at least 1 iterations and at least 0.5 seconds "
        f"but terminate if exceeding {limit:g} seconds.")
    warm = run(args.warmup_runs)
    say(_stats(warm, modern))
    say(f"Running benchmark for at least {args.num_runs} iterations and at least "
        f"1 seconds but terminate if exceeding {limit:g} seconds.")
    timed = run(args.num_runs)
    root = os.environ.get("MOBILECTL_TEST_DEVICE_ROOT")
    if root:  # the SoC heats by the seconds this run kept it busy (tests/adb_device/soc.py)
        _heat(root, time.monotonic() - STARTED)
    say(_stats(timed, modern))
    say(f"Inference timings in us: Init: {init_us:.0f}, First inference: {warm[0]:.0f}, "
        f"Warmup (avg): {np.mean(warm):.6g}, Inference (avg): {np.mean(timed):.6g}")
    if args.enable_op_profiling == "true" and "no_op_profiling" not in os.environ.get(
            "MOBILECTL_TEST_DEVICE_FAULTS", ""):
        print(_op_tables(args.graph, threads=threads, runs=args.num_runs), end="")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if not modern:
        print(f"Peak memory footprint (MB): init={peak_mb:.6g} overall={peak_mb:.6g}")
        return 0
    say("Memory footprint delta from the start of the tool (MB): "
        f"init={peak_mb:.4f} overall={peak_mb:.4f}")
    if args.report_peak_memory_footprint == "true":
        say(f"Overall peak memory footprint (MB) via periodic monitoring: {peak_mb:.6g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
