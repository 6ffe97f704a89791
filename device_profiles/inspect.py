"""What an artifact file is, read from the file itself: is it a model the runtime can
load, and at which precision do its tensors compute. A file's name says nothing
trustworthy (``model.tflite`` may hold int8), so the precision comes from the tensor
types, and a file that does not load is refused before anything runs or is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from device_profiles.onnx_cost import graph_dims, graph_inputs
from mobilectl.core.errors import UserError, first_line
from mobilectl.core.tfenv import third_party_output
from mobilectl.core.types import Format, Precision

COMPUTE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")
INTEGER = (np.int8, np.uint8, np.int16)


def precision_of(path: Path, fmt: Format) -> Precision:
    """The precision ``path`` computes at; a file its runtime cannot load is a
    UserError naming it."""
    return _tflite_precision(path) if fmt == Format.TFLITE else _onnx_precision(path)


def tflite_runtime(path: Path) -> Any:
    """A LiteRT interpreter of ``path`` (LiteRT verifies the whole flatbuffer), or a
    UserError naming the file."""
    from ai_edge_litert.interpreter import Interpreter  # heavy: native runtime

    try:
        with third_party_output():
            return Interpreter(model_path=str(path))
    except Exception as exc:  # LiteRT raises ValueError/RuntimeError for broken files
        raise UserError(f"{path}: not a valid .tflite model ({first_line(exc)})") from None


def load_onnx(path: Path) -> Any:
    """The ModelProto of a readable .onnx file with a graph, or a UserError naming it."""
    import onnx  # heavy: protobuf model loading

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError, IO errors
        raise UserError(f"{path}: not a valid .onnx model ({first_line(exc)})") from None
    if not model.graph.node:
        raise UserError(f"{path}: not a valid .onnx model (its graph has no nodes)")
    return model


def _tflite_precision(path: Path) -> Precision:
    runtime = tflite_runtime(path)
    ops = runtime._get_ops_details()  # noqa: SLF001
    tensors = {t["index"]: t for t in runtime.get_tensor_details()}
    compute = [op for op in ops if op["op_name"] in COMPUTE_OPS]
    outputs = [_dtype(tensors, i) for op in compute for i in op["outputs"]]
    weights = [_dtype(tensors, op["inputs"][1]) for op in compute if len(op["inputs"]) > 1]
    if any(d in INTEGER for d in outputs):
        return Precision.INT8
    if any(d in INTEGER for d in weights):
        return Precision.DYNAMIC
    if any(t["dtype"] == np.float16 for t in tensors.values()):
        return Precision.FP16
    return Precision.FP32


Dims = tuple[int | None, ...]


def input_dims(path: Path, fmt: Format) -> list[tuple[str, Dims]]:
    """Each graph input's name and shape, ``None`` for a dynamic dimension (an ONNX
    ``dim_param``, a TFLite ``shape_signature`` of -1)."""
    if fmt == Format.ONNX:
        return [(v.name, tuple(graph_dims(v))) for v in graph_inputs(load_onnx(path))]
    return [(d["name"], tuple(None if s < 0 else int(s) for s in d["shape_signature"]))
            for d in tflite_runtime(path).get_input_details()]


def _dtype(tensors: dict[int, dict[str, Any]], index: int) -> Any:
    return tensors[index]["dtype"] if index in tensors else None


QDQ_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul"}
DYNAMIC_OPS = {"DynamicQuantizeLinear", "MatMulInteger", "ConvInteger"}


def _onnx_precision(path: Path) -> Precision:
    import onnx  # heavy: the TensorProto type codes

    model = load_onnx(path)
    ops = {node.op_type for node in model.graph.node}
    if ops & DYNAMIC_OPS:
        return Precision.DYNAMIC
    if ops & QDQ_OPS:
        return Precision.INT8
    if any(init.data_type == onnx.TensorProto.FLOAT16 for init in model.graph.initializer):
        return Precision.FP16
    return Precision.FP32
