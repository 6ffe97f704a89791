"""Per-op time on this machine, run in its own process by the host backend
(``python -m device_profiles.op_bench --model F ...``); prints one JSON object.

- ``.tflite``: LiteRT's Python API has no op profiler and its benchmark tool has no op
  profiling, so each op is cut from the flatbuffer into a model of its own (its real
  tensors: shapes, types, quantization, constant weights) and timed with LiteRT's
  interpreter as the whole model runs (default delegates, same threads). Whether
  XNNPACK took the op is read from the interpreter's execution plan. The whole model is
  timed the same way, so the report can say how the sum of the parts compares to it.
- ``.onnx``: onnxruntime's own session profiling (per-node kernel times, after the
  session's graph optimisations: fused nodes carry the name of what they replaced).

Every time is a median over ``--runs`` invocations after ``--warmup``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import numpy as np


def ready_interpreter(content: bytes, threads: int) -> Any:
    """LiteRT's interpreter on ``content``, tensors allocated, inputs filled with seeded
    random values of their types."""
    from ai_edge_litert.interpreter import Interpreter  # heavy: native runtime

    runtime = Interpreter(model_content=content, num_threads=threads)
    runtime.allocate_tensors()
    rng = np.random.default_rng(0)
    for detail in runtime.get_input_details():
        dtype = np.dtype(detail["dtype"])
        if dtype.kind == "f":
            value = rng.uniform(-1, 1, detail["shape"])
        elif dtype in (np.int8, np.uint8, np.int16):
            info = np.iinfo(dtype)
            value = rng.integers(info.min, info.max, detail["shape"], endpoint=True)
        else:  # indices, shapes: zeros are valid
            value = np.zeros(detail["shape"])
        runtime.set_tensor(detail["index"], value.astype(dtype))
    return runtime


def time_invoke(runtime: Any, *, runs: int, warmup: int) -> float:
    """Median ms of ``runtime.invoke()``."""
    for _ in range(warmup):
        runtime.invoke()
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        runtime.invoke()
        samples.append(time.perf_counter_ns() - start)
    return float(np.median(samples)) / 1e6


def single_op_models(data: bytes) -> list[tuple[str, str, bytes | None]]:
    """(op type, output tensor name, a model of that op alone) for each op of the first
    subgraph, in execution order; ``None`` where the op cannot stand alone (it calls
    other subgraphs)."""
    from ai_edge_litert.tools import flatbuffer_utils  # heavy: flatbuffer object API

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    graph = model.subgraphs[0]
    found = []
    for index, op in enumerate(graph.operators):
        kind = flatbuffer_utils.opcode_to_name(model, op.opcodeIndex) or "CUSTOM"
        out = graph.tensors[op.outputs[0]].name.decode() if len(op.outputs) else kind
        found.append((kind, out, _cut_or_none(model, (index,))))
    return found


def group_models(data: bytes, groups: Sequence[Sequence[int]]) -> list[bytes | None]:
    """For each group of op indices of the first subgraph (a kernel the runtime runs as
    one, e.g. a swish's LOGISTIC and MUL), a model of those ops alone, in their order;
    ``None`` where one cannot stand alone. The file is read once for all groups."""
    from ai_edge_litert.tools import flatbuffer_utils  # heavy: flatbuffer object API

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    return [_cut_or_none(model, tuple(group)) for group in groups]


def _cut_or_none(model: Any, ops: tuple[int, ...]) -> bytes | None:
    try:
        return _cut(model, model.subgraphs[0], [model.subgraphs[0].operators[i] for i in ops])
    except (TypeError, ValueError, IndexError):
        return None


def _cut(model: Any, graph: Any, ops: Sequence[Any]) -> bytes | None:
    """The ops alone: their tensors renumbered, their constant buffers kept; inputs are
    the tensors they read and none of them writes, outputs those none of them reads."""
    from ai_edge_litert import schema_py_generated as schema  # heavy: generated schema
    from ai_edge_litert.tools import flatbuffer_utils  # heavy: flatbuffer object API

    if any(model.operatorCodes[op.opcodeIndex].builtinCode in _SUBGRAPH_OPS for op in ops):
        return None
    written = {t for op in ops for t in op.outputs}
    read = {t for op in ops for t in op.inputs}
    used = list(dict.fromkeys(t for op in ops for t in (*op.inputs, *op.outputs) if t >= 0))
    renumber = {t: i for i, t in enumerate(used)}
    buffers, tensors = [schema.BufferT()], []
    for t in used:
        tensor = copy.copy(graph.tensors[t])
        data = model.buffers[tensor.buffer].data
        if data is not None and len(data):
            buffers.append(model.buffers[tensor.buffer])
            tensor.buffer = len(buffers) - 1
        else:
            tensor.buffer = 0
        tensors.append(tensor)
    sub = schema.SubGraphT()
    sub.tensors, sub.operators = tensors, [_renumbered(op, renumber) for op in ops]
    sub.inputs = [renumber[t] for t in used if t not in written and tensors[renumber[t]].buffer == 0]
    sub.outputs = [renumber[t] for t in used if t in written and t not in read]
    cut = copy.copy(model)
    cut.subgraphs, cut.buffers, cut.signatureDefs = [sub], buffers, []
    cut.metadata, cut.metadataBuffer = [], []
    return bytes(flatbuffer_utils.convert_object_to_bytearray(cut))


def _renumbered(op: Any, renumber: dict[int, int]) -> Any:
    single = copy.copy(op)
    single.inputs = [renumber.get(t, -1) for t in op.inputs]
    single.outputs = [renumber[t] for t in op.outputs]
    return single


#: builtin codes of ops that call other subgraphs (IF, WHILE, CALL_ONCE)
_SUBGRAPH_OPS = {118, 119, 129}


def tflite_ops(data: bytes, *, threads: int, runs: int, warmup: int) -> dict[str, Any]:
    """Each op's median ms alone and whether XNNPACK ran it, and the whole model's
    median timed the same way."""
    rows = []
    for index, (kind, name, cut) in enumerate(single_op_models(data)):
        row: dict[str, Any] = {"index": index, "kind": kind, "name": name, "ms": None,
                               "kernel": None}
        if cut is not None:
            try:
                runtime = ready_interpreter(cut, threads)
            except (RuntimeError, ValueError) as exc:
                row["error"] = str(exc).splitlines()[0][:200]
            else:
                row["ms"] = time_invoke(runtime, runs=runs, warmup=warmup)
                plan = {d["op_name"] for d in runtime._get_ops_details()}  # noqa: SLF001
                row["kernel"] = "xnnpack" if "DELEGATE" in plan else "builtin"
        rows.append(row)
    whole = time_invoke(ready_interpreter(data, threads), runs=runs, warmup=warmup)
    return {"ops": rows, "whole_ms": whole,
            "method": "each op cut out of the flatbuffer and timed alone with LiteRT"}


def onnx_nodes(path: Path, *, threads: int, runs: int, warmup: int) -> dict[str, Any]:
    """onnxruntime's session profiling: each profiled node's median kernel ms over the
    timed runs, and the median ``model_run``."""
    import onnxruntime as ort  # heavy: native runtime

    with tempfile.TemporaryDirectory(prefix="mobilectl-ortprof-") as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.log_severity_level = 3
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feeds = {i.name: np.random.default_rng(0).uniform(-1, 1, [
            d if isinstance(d, int) else 1 for d in i.shape]).astype(_ORT_TYPES.get(
                i.type, np.float32)) for i in session.get_inputs()}
        for _ in range(warmup + runs):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    return _onnx_rows(events, warmup=warmup)


_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
              "tensor(int8)": np.int8, "tensor(uint8)": np.uint8}


def _onnx_rows(events: list[dict[str, Any]], *, warmup: int) -> dict[str, Any]:
    order: dict[str, dict[str, Any]] = {}
    runs: list[float] = []
    for event in events:
        if event.get("cat") == "Session" and event.get("name") == "model_run":
            runs.append(event["dur"] / 1e3)
        elif event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            name = event["name"].removesuffix("_kernel_time")
            row = order.setdefault(name, {"index": len(order), "kind": event["args"].get(
                "op_name", "?"), "name": name, "kernel": event["args"].get("provider"),
                "samples": []})
            row["samples"].append(event["dur"] / 1e3)
    rows = []
    for row in order.values():
        samples = row.pop("samples")[warmup:] or [0.0]
        rows.append({**row, "ms": float(np.median(samples))})
    return {"ops": rows, "whole_ms": float(np.median(runs[warmup:] or runs or [0.0])),
            "method": "onnxruntime session profiling (per-node kernel time)"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="op_bench")
    parser.add_argument("--model", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args(argv)
    path = Path(args.model)
    knobs = {"threads": args.threads, "runs": args.runs, "warmup": args.warmup}
    if path.suffix == ".onnx":
        result = onnx_nodes(path, **knobs)
    else:
        result = tflite_ops(path.read_bytes(), **knobs)
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
