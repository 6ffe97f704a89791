"""Keras -> ONNX with tf2onnx (explicit batch-1 input signature, opset 17), then
onnxruntime for the precisions.

- ``fp32``: tf2onnx's graph. ``layout="nchw"`` makes the input NCHW
  (``inputs_as_nchw``): tf2onnx's transpose optimizer then cancels the NHWC<->NCHW
  transposes, since ONNX convs are NCHW already.
- ``fp16``: onnxruntime's float16 converter, float32 inputs and outputs kept.
- ``dynamic``: ``quantize_dynamic`` (int8 weights, activations quantized at run time).
- ``int8``: ``quant_pre_process`` (shape inference + graph optimisation), then
  ``quantize_static`` in QDQ format with per-channel int8 weights and int8 activations
  calibrated on the same samples as TFLite. Named layers can stay float (then the
  pre-processing skips ORT's graph optimiser, which renames the nodes it fuses).
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mobilectl.errors import UserError, nearest

DEFAULT_OPSET = 17
LAYOUTS = ("nhwc", "nchw")
INPUT_NAME = "input"


def convert(model: Any, *, opset: int = DEFAULT_OPSET, layout: str = "nhwc") -> Any:
    """Convert a Keras model to an ``onnx.ModelProto`` with input ``input``."""
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec((1, *model.input_shape[1:]), tf.float32, name=INPUT_NAME),)
    nchw = [INPUT_NAME] if layout == "nchw" else None
    # tf2onnx numbers the names it makes with a process-wide counter: restart it, so
    # the same model gives the same bytes in one process as in a fresh one.
    tf2onnx.utils.INTERNAL_NAME = 1
    with _quiet_stdout():
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset,
                                              inputs_as_nchw=nchw)
    return canonicalize(proto)


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    from exporter.tflite import _quiet

    with _quiet():
        yield


def to_nchw(x: np.ndarray) -> np.ndarray:
    """NHWC batch -> NCHW batch."""
    return np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2)))


class _Reader:
    """onnxruntime CalibrationDataReader over the calibration rows, one at a time."""

    def __init__(self, rows: np.ndarray, name: str) -> None:
        self._rows = iter([{name: row[None].astype(np.float32)} for row in rows])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._rows, None)


COMPUTE_OPS = ("Conv", "MatMul", "Gemm")


def nodes_of_layers(proto: Any, layers: Sequence[str]) -> list[str]:
    """Names of the ONNX nodes computing the named Keras layers.

    tf2onnx names nodes after the TF ops they came from, but a conv fused with its batch
    norm may come out as a plain ``Conv``: then the layer is found through its block
    (``stem.conv`` -> nodes named ``stem.*``, e.g. the ``stem.act`` Relu) and the first
    Conv/MatMul/Gemm upstream of them.
    """
    owners: dict[str, list[str]] = {}
    for node in proto.graph.node:
        for label in (node.name, *node.output):
            for segment in re.split(r"[/;:]", label):
                owners.setdefault(re.sub(r"_\d+$", "", segment), []).append(node.name)
    chosen: set[str] = set()
    for name in layers:
        block = name.rsplit(".", 1)[0] + "."
        nodes = owners.get(name) or [n for key, ns in owners.items()
                                     if key.startswith(block) for n in ns]
        if not nodes:
            raise UserError(f"--keep-float {name}: no such layer in the ONNX graph"
                            f"{nearest(name, owners)}")
        chosen.update(nodes)
        chosen.update(_compute_upstream(proto, set(nodes)))
    return sorted(chosen)


def _compute_upstream(proto: Any, names: set[str]) -> list[str]:
    """The nearest Conv/MatMul/Gemm feeding the given nodes (through non-compute ops)."""
    by_output = {out: node for node in proto.graph.node for out in node.output}
    by_name = {node.name: node for node in proto.graph.node}
    if any(by_name[n].op_type in COMPUTE_OPS for n in names if n in by_name):
        return []
    found, frontier, seen = [], [by_name[n] for n in names if n in by_name], set()
    while frontier:
        node = frontier.pop()
        for tensor in node.input:
            src = by_output.get(tensor)
            if src is None or src.name in seen:
                continue
            seen.add(src.name)
            if src.op_type in COMPUTE_OPS:
                found.append(src.name)
            elif src.op_type not in ("Transpose", "Reshape", "Squeeze", "Unsqueeze"):
                frontier.append(src)
    return found


def quantize_int8(proto: Any, calibration: np.ndarray, *, layout: str = "nhwc",
                  keep_float: Sequence[str] = ()) -> Any:
    """Static int8 quantization (QDQ, per-channel weights) after ORT's pre-processing."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_static

    rows = to_nchw(calibration) if layout == "nchw" else calibration
    nodes_of_layers(proto, keep_float)  # a bad name fails before any work
    with tempfile.TemporaryDirectory(prefix="mobilectl-ort-") as tmp:
        src, pre, dst = (Path(tmp) / n for n in ("float.onnx", "pre.onnx", "int8.onnx"))
        onnx.save(proto, src)
        with _quiet_stdout():
            # ORT's optimiser renames what it fuses, losing layer names: with layers to
            # keep in float, pre-process without it so the names can be found.
            quant_pre_process(src, pre, skip_optimization=bool(keep_float))
            prepared = expand_scalar_biases(onnx.load(pre))  # ORT's fusion makes some
            onnx.save(prepared, pre)
            exclude = nodes_of_layers(prepared, keep_float) if keep_float else None
            quantize_static(pre, dst, _Reader(rows, proto.graph.input[0].name),
                            quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            nodes_to_exclude=exclude)
        return onnx.load(dst)


def expand_scalar_biases(proto: Any) -> Any:
    """Give every Conv and Gemm a per-channel bias: ORT's pre-processing fuses a scalar constant
    add (hard-sigmoid's +3) into a scalar (0-d) bias, which ONNX broadcasts but ORT's
    int32 bias quantizer indexes per channel (and fails on). Same numbers, one value per
    output channel."""
    from onnx import numpy_helper

    inits = {init.name: init for init in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 3 or node.input[2] not in inits:
            continue
        bias = numpy_helper.to_array(inits[node.input[2]])
        weight = inits.get(node.input[1])
        if bias.ndim == 0 and weight is not None:
            trans_b = any(a.name == "transB" and a.i for a in node.attribute)
            axis = 0 if node.op_type == "Conv" or trans_b else 1
            channels = int(weight.dims[axis])
            expanded = numpy_helper.from_array(np.full(channels, bias, dtype=bias.dtype),
                                               name=f"{node.input[2]}_per_channel_{channels}")
            if expanded.name not in inits:
                proto.graph.initializer.append(expanded)
                inits[expanded.name] = expanded
            node.input[2] = expanded.name
    return proto


def quantize_dynamic(proto: Any) -> Any:
    """Dynamic-range quantization: int8 weights, activations quantized at run time."""
    import onnx
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_dynamic

    with tempfile.TemporaryDirectory(prefix="mobilectl-ort-") as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "dynamic.onnx"
        onnx.save(proto, src)
        with _quiet_stdout():
            ort_dynamic(src, dst, weight_type=QuantType.QUInt8)
        return onnx.load(dst)


def to_fp16(proto: Any) -> Any:
    """float16 weights and activations; float32 inputs and outputs are kept."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with _quiet_stdout():
        return convert_float_to_float16(proto, keep_io_types=True)


def embed_metadata(proto: Any, metadata: dict[str, str]) -> Any:
    """Set ``metadata_props`` (sorted by key, so the file is deterministic)."""
    del proto.metadata_props[:]
    for key in sorted(metadata):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(metadata[key])
    return proto


def canonicalize(proto: Any) -> Any:
    """Rename what tf2onnx names arbitrarily, so equal graphs give equal bytes.

    tf2onnx merges duplicate constants keeping one of their names at random and numbers
    generated names with a counter; the graph is the same, its bytes are not.
    Initializers become ``const_K`` in order of first use, generated ``__N`` suffixes
    are dropped (then made unique in node order), and initializers are sorted. Graph
    inputs/outputs and the layer-derived names stay as they are.
    """
    graph = proto.graph
    fixed = {v.name for v in graph.input} | {v.name for v in graph.output}
    inits = {i.name for i in graph.initializer}
    mapping: dict[str, str] = {}
    used: set[str] = set(fixed)

    def rename(name: str) -> str:
        if not name or name in fixed:
            return name
        if name not in mapping:
            base = f"const_{len([m for m in mapping if m in inits])}" if name in inits \
                else re.sub(r"__\d+", "", name)
            mapping[name] = _unique(base, used)
        return mapping[name]

    _sort_nodes(graph)
    node_names: set[str] = set()
    for node in graph.node:
        node.input[:] = [rename(n) for n in node.input]
        node.output[:] = [rename(n) for n in node.output]
        node.name = _unique(re.sub(r"__\d+", "", node.name), node_names)
    for init in graph.initializer:
        init.name = rename(init.name)
    ordered = sorted(graph.initializer, key=lambda i: _natural(i.name))
    copies = [type(i)() for i in ordered]
    for copy, init in zip(copies, ordered):
        copy.CopyFrom(init)
    del graph.initializer[:]
    graph.initializer.extend(copies)
    for info in graph.value_info:
        info.name = rename(info.name)
    return proto


def _sort_nodes(graph: Any) -> None:
    """Topological order with ties broken by name (tf2onnx orders parallel branches
    differently from run to run)."""
    import heapq

    nodes = list(graph.node)
    producer = {out: i for i, node in enumerate(nodes) for out in node.output}
    users: dict[int, list[int]] = {i: [] for i in range(len(nodes))}
    pending = [0] * len(nodes)
    for i, node in enumerate(nodes):
        for src in {producer[n] for n in node.input if n in producer}:
            users[src].append(i)
            pending[i] += 1

    def key(i: int) -> tuple[str, str, int]:
        return (re.sub(r"__\d+", "", nodes[i].name), nodes[i].op_type, i)

    ready = [key(i) for i in range(len(nodes)) if pending[i] == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)[2]
        order.append(i)
        for user in users[i]:
            pending[user] -= 1
            if pending[user] == 0:
                heapq.heappush(ready, key(user))
    copies = [type(nodes[i])() for i in order]
    for copy, i in zip(copies, order):
        copy.CopyFrom(nodes[i])
    del graph.node[:]
    graph.node.extend(copies)


def _unique(base: str, used: set[str]) -> str:
    name, k = base, 1
    while name in used:
        name, k = f"{base}__{k}", k + 1
    used.add(name)
    return name


def _natural(name: str) -> tuple[str, int]:
    match = re.fullmatch(r"(.*?)(\d+)", name)
    return (match.group(1), int(match.group(2))) if match else (name, -1)


def serialize(proto: Any) -> bytes:
    """Deterministic serialization of a ModelProto."""
    return proto.SerializeToString(deterministic=True)


def op_types(proto: Any) -> list[tuple[str, str]]:
    """(domain, op type) of every node; the standard domain is ``""``."""
    return [(node.domain, node.op_type) for node in proto.graph.node]


def _session(model: Any) -> Any:
    import onnxruntime as ort

    data = model if isinstance(model, bytes) else serialize(model)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def io_details(model: Any) -> dict[str, list[dict[str, Any]]]:
    """Inputs and outputs: name, shape, dtype (QDQ models keep float I/O)."""
    session = _session(model)

    def info(arg: Any) -> dict[str, Any]:
        dtype = re.sub(r"tensor\((\w+)\)", r"\1", arg.type).replace("float", "float32")
        return {"name": arg.name, "shape": list(arg.shape), "dtype": dtype,
                "scale": 0.0, "zero_point": 0}

    return {"inputs": [info(a) for a in session.get_inputs()],
            "outputs": [info(a) for a in session.get_outputs()]}


def run(model: Any, x: np.ndarray, *, layout: str = "nhwc") -> np.ndarray:
    """Run an ONNX model (proto or bytes) on each row of NHWC ``x`` with onnxruntime."""
    session = _session(model)
    name = session.get_inputs()[0].name
    x = to_nchw(x) if layout == "nchw" else np.asarray(x, dtype=np.float32)
    rows = [session.run(None, {name: row[None]})[0] for row in x.astype(np.float32)]
    return np.concatenate(rows).astype(np.float32)
