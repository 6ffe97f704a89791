"""The ONNX format: Keras -> ONNX with tf2onnx (explicit batch-1 input signature,
opset 17), run and inspected with onnxruntime, metadata in ``metadata_props``.

``layout="nchw"`` makes the input NCHW (``inputs_as_nchw``), as ONNX convs are; the
lean-graph passes (:mod:`exporter.onnx_lean`) then remove what tf2onnx leaves of the
Keras graph's NHWC layout, and :mod:`exporter.onnx_mobile` records how the artifact
would run with onnxruntime's mobile EPs.
fp16, dynamic and int8 come from :mod:`quant.onnx_quant`; :data:`FORMAT` is this
module's row of the exporter's format table.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import re
import zlib
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np

from exporter import onnx_lean, onnx_mobile
from exporter.options import ExportFormat, ExportOptions, Progress
from mobilectl.core.manifest import QuantRecipe, TensorInfo, TensorIO
from mobilectl.core.tfenv import third_party_output
from mobilectl.core.types import Activations, Format, LayerPrecision, Layout, Precision, QuantFormat
from quant import onnx_quant

DEFAULT_OPSET = 17
INPUT_NAME = "input"
#: ONNX element types as numpy dtype names (``tensor(float)`` is float32).
DTYPES = {"float": "float32", "float16": "float16", "double": "float64", "int8": "int8",
          "uint8": "uint8", "int32": "int32", "int64": "int64", "bool": "bool"}


def convert(model: Any, *, opset: int = DEFAULT_OPSET, layout: Layout = Layout.NHWC,
            fuse_hard_activations: bool = False, qat_weight_bits: int | None = None) -> Any:
    """Convert a Keras model to an ``onnx.ModelProto`` with input ``input``, lean
    (:mod:`exporter.onnx_lean`; hard-swish fused into one op if asked; a
    quantization-aware model's weights stored as integers on their trained grid)."""
    import tensorflow as tf  # heavy: TF and tf2onnx load only when a model is converted
    import tf2onnx

    spec = (tf.TensorSpec((1, *model.input_shape[1:]), tf.float32, name=INPUT_NAME),)
    nchw = [INPUT_NAME] if layout == Layout.NCHW else None
    # tf2onnx numbers the names it makes with a process-wide counter: restart it, so
    # the same model gives the same bytes in one process as in a fresh one.
    tf2onnx.utils.INTERNAL_NAME = 1
    with third_party_output(), _transposes_past_scalar_adds(), _nodes_hashed_by_name():
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset,
                                              inputs_as_nchw=nchw)
    if qat_weight_bits is not None:
        onnx_quant.trained_weights(proto, bits=qat_weight_bits)
    # from canonical names and order, so the passes are deterministic
    onnx_lean.lean(canonicalize(proto), fuse_hard_activations=fuse_hard_activations)
    return canonicalize(proto)


@contextlib.contextmanager
def _transposes_past_scalar_adds() -> Iterator[None]:
    """tf2onnx's transpose optimiser, able to pass an ``Add`` of a 0-d constant.

    tf2onnx 1.17 tries to fold ``Conv -> Transpose -> Add(constant)`` into the conv's
    bias and fails with ``max() arg is an empty sequence`` when the constant is a scalar
    (hard-swish's ``x + 3`` right after a conv); the exception aborts the whole pass,
    leaving every layout Transpose in the graph (123 in MobileNet V3 Large in NCHW, its
    squeeze-excite as ``ReduceMean``). Here such a constant is given the shape ``[1]``
    first: the same broadcast and numbers, no bias fold, and the pass goes on. The
    handler is restored afterwards."""
    from tf2onnx.optimizer.transpose_optimizer import TransposeOptimizer  # heavy: tf2onnx

    original = TransposeOptimizer._add_handler  # noqa: SLF001 (the failing handler)

    def handler(self: Any, trans: Any, node: Any) -> Any:
        constant = node.inputs[1]
        if constant.is_const():
            value = constant.get_tensor_value(as_list=False)
            if value.ndim == 0:
                constant.set_tensor_value(value.reshape(1))
        with _bias_fold_keeps_the_name(self._g, trans.inputs[0]):  # noqa: SLF001
            return original(self, trans, node)

    TransposeOptimizer._add_handler = handler  # noqa: SLF001
    try:
        yield
    finally:
        TransposeOptimizer._add_handler = original  # noqa: SLF001


@contextlib.contextmanager
def _bias_fold_keeps_the_name(graph: Any, conv: Any) -> Iterator[None]:
    """The conv tf2onnx makes when it folds an ``Add`` into ``conv``'s bias named after
    ``conv`` (it would get a generated ``Conv__N``, and per-layer latency could no longer
    tell which Keras layer it computes)."""
    make_node = graph.make_node

    def named(op_type: str, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        if conv is not None and op_type == conv.type and not kwargs.get("name"):
            kwargs["name"] = f"{conv.name}_biased"
        return make_node(op_type, inputs, *args, **kwargs)

    graph.make_node = named
    try:
        yield
    finally:
        del graph.make_node  # the class's method again


@contextlib.contextmanager
def _nodes_hashed_by_name() -> Iterator[None]:
    """tf2onnx's graph nodes hashed by their name instead of their memory address.

    Its transpose optimiser walks a ``set`` of nodes, so the order it rewrites parallel
    branches in (and, where two rewrites compete, the graph it ends with) followed the
    addresses of the node objects: NASNet's ONNX graph differed from run to run. Names
    are deterministic (the name counter is reset before each conversion), so the walk
    and the graph are too. Equality stays identity; the hash is restored afterwards."""
    from tf2onnx.graph import Node  # heavy: tf2onnx

    original = Node.__hash__
    Node.__hash__ = lambda node: zlib.crc32(node.name.encode())  # noqa: ARG005
    try:
        yield
    finally:
        Node.__hash__ = original


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
    import onnxruntime as ort  # heavy: native runtime

    data = model if isinstance(model, bytes) else serialize(model)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def io_details(model: Any) -> TensorIO:
    """Inputs and outputs: name, shape, dtype (QDQ models keep float I/O)."""
    session = _session(model)

    def info(arg: Any) -> TensorInfo:
        kind = re.fullmatch(r"tensor\((\w+)\)", arg.type)
        dtype = DTYPES.get(kind.group(1), kind.group(1)) if kind else arg.type
        return TensorInfo(arg.name, tuple(arg.shape), dtype)

    return TensorIO(tuple(info(a) for a in session.get_inputs()),
                    tuple(info(a) for a in session.get_outputs()))


def run(model: Any, x: np.ndarray, *, layout: Layout = Layout.NHWC) -> np.ndarray:
    """Run an ONNX model (proto or bytes) on each row of NHWC ``x`` with onnxruntime."""
    session = _session(model)
    name = session.get_inputs()[0].name
    x = onnx_quant.to_nchw(x) if layout == Layout.NCHW else np.asarray(x, dtype=np.float32)
    rows = [session.run(None, {name: row[None]})[0] for row in x.astype(np.float32)]
    return np.concatenate(rows).astype(np.float32)


def quantize(proto: Any, options: ExportOptions, calibration: np.ndarray) -> Any:
    """fp16 / dynamic / int8 (QDQ, per-channel) of the float graph (fp32: as it is)."""
    if options.precision == Precision.FP16:  # sorted: the converter appends its casts
        return canonicalize(onnx_quant.to_fp16(proto))
    if options.precision == Precision.DYNAMIC:
        return onnx_quant.quantize_dynamic(proto)
    if options.precision == Precision.INT8:
        return canonicalize(onnx_quant.quantize_int8(
            proto, calibration, layout=options.layout, keep_float=float_layers(options),
            activations=options.activations, method=options.calib_method,
            symmetric=options.symmetric, quant_format=options.quant_format))
    return proto


def float_layers(options: ExportOptions) -> tuple[str, ...]:
    """The layers left in float: ``--keep-float`` and a mixed recipe's float layers."""
    return (*options.keep_float,
            *(name for name, p in options.layer_precisions if p == LayerPrecision.FLOAT))


def _convert_artifact(model: Any, *, options: ExportOptions, calibration: np.ndarray,
                      metadata: dict[str, Any], progress: Progress) -> bytes:
    progress(f"convert {model.name} to ONNX")
    proto = convert(model, layout=options.layout,
                    fuse_hard_activations=options.fuse_hard_activations,
                    qat_weight_bits=options.qat_weight_bits)
    if options.qat_weight_bits is None:  # a QAT model's QDQ graph is already integer
        if options.precision != Precision.FP32:
            progress(f"quantize ONNX {options.precision}")
        proto = quantize(proto, options, calibration)
    text = {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True)
            for k, v in metadata.items()}
    return serialize(embed_metadata(proto, text))


def recipe(options: ExportOptions) -> QuantRecipe | None:
    """How int8 ONNX is quantized for ``options``' target (None for other precisions)."""
    if options.precision != Precision.INT8:
        return None
    if options.qat_weight_bits is not None:  # tf2onnx's QDQ of the trained ranges: uint8
        return QuantRecipe(activations=Activations.UINT8, weights=f"int{options.qat_weight_bits}",
                           format=str(QuantFormat.QDQ), target=options.target,
                           trained_ranges=True)
    chosen = onnx_quant.recipe(options.activations, options.calib_method, target=options.target,
                               symmetric=options.symmetric, quant_format=options.quant_format)
    return replace(chosen, layers=options.layer_precisions)


FORMAT = ExportFormat(name=Format.ONNX, title="ONNX",
                      accepts=frozenset({"layout", "keep_float", "activations", "calib_method",
                                         "quant_format", "symmetric",
                                         "fuse_hard_activations"}),
                      convert=_convert_artifact, run=run, io_details=io_details, recipe=recipe,
                      mobile=onnx_mobile.usability,
                      layer_precisions=frozenset({LayerPrecision.INT8, LayerPrecision.FLOAT}))
