"""The onnxruntime latency runner, executed in its own process by the host backend
(``python -m device_profiles.ort_bench``): the same warm-up / runs / threads protocol
as LiteRT's benchmark tool. Prints one JSON object: per-run times in ms and the session
init time (the host backend reads the process's peak RSS itself)."""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
          "tensor(int8)": np.int8, "tensor(uint8)": np.uint8}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ort_bench")
    parser.add_argument("--model", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--input-shape", action="append", default=[], metavar="NAME=D,D,...",
                        help="the shape of a dynamic input (repeatable)")
    args = parser.parse_args(argv)
    given = {name: [int(d) for d in dims.split(",")]
             for name, _, dims in (s.partition("=") for s in args.input_shape)}

    import onnxruntime as ort  # heavy: loaded after the arguments are checked

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    start = time.perf_counter()
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    init_ms = (time.perf_counter() - start) * 1e3
    feeds = {}
    rng = np.random.default_rng(0)
    for arg in session.get_inputs():
        shape = given.get(arg.name) or [d if isinstance(d, int) else 1 for d in arg.shape]
        feeds[arg.name] = rng.uniform(-1, 1, shape).astype(DTYPES.get(arg.type, np.float32))
    start = time.perf_counter()
    session.run(None, feeds)  # the first run: allocations and kernel selection
    first_ms = (time.perf_counter() - start) * 1e3
    for _ in range(max(args.warmup - 1, 0)):
        session.run(None, feeds)
    samples = []
    for _ in range(args.runs):
        t0 = time.perf_counter_ns()
        session.run(None, feeds)
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    json.dump({"samples_ms": samples, "init_ms": init_ms, "first_ms": first_ms}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
