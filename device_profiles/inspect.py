"""What an artifact file is, read from the file itself: is it a model the runtime can
load, and at which precision do its tensors compute. A file's name says nothing
trustworthy (``model.tflite`` may hold int8), so the precision comes from the tensor
types, and a file that does not load is refused before anything runs or is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mobilectl.core.errors import UserError
from mobilectl.core.tfenv import third_party_output
from mobilectl.core.types import Format, Precision

COMPUTE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")
INTEGER = (np.int8, np.uint8, np.int16)


def precision_of(path: Path, fmt: Format) -> Precision:
    """The precision ``path`` computes at; a file its runtime cannot load is a
    UserError naming it."""
    return _tflite_precision(path) if fmt == Format.TFLITE else _onnx_precision(path)


def _first_line(exc: Exception) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0][:200] if lines else type(exc).__name__


def _tflite_precision(path: Path) -> Precision:
    from ai_edge_litert.interpreter import Interpreter  # heavy: native runtime

    try:
        with third_party_output():
            runtime = Interpreter(model_path=str(path))
            ops = runtime._get_ops_details()  # noqa: SLF001
            tensors = {t["index"]: t for t in runtime.get_tensor_details()}
    except Exception as exc:  # LiteRT raises ValueError/RuntimeError for broken files
        raise UserError(f"{path}: not a valid .tflite model ({_first_line(exc)})") from None
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
        import onnx  # heavy: protobuf model loading

        graph = onnx.load(str(path), load_external_data=False).graph
        constants = {i.name for i in graph.initializer}
        return [(v.name, tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0
                               else None for d in v.type.tensor_type.shape.dim))
                for v in graph.input if v.name not in constants]
    from ai_edge_litert.interpreter import Interpreter  # heavy: native runtime

    with third_party_output():
        details = Interpreter(model_path=str(path)).get_input_details()
    return [(d["name"], tuple(None if s < 0 else int(s) for s in d["shape_signature"]))
            for d in details]


def _dtype(tensors: dict[int, dict[str, Any]], index: int) -> Any:
    return tensors[index]["dtype"] if index in tensors else None


QDQ_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul"}
DYNAMIC_OPS = {"DynamicQuantizeLinear", "MatMulInteger", "ConvInteger"}


def _onnx_precision(path: Path) -> Precision:
    import onnx  # heavy: protobuf model loading

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError, IO errors
        raise UserError(f"{path}: not a valid .onnx model ({_first_line(exc)})") from None
    if not model.graph.node:
        raise UserError(f"{path}: not a valid .onnx model (its graph has no nodes)")
    ops = {node.op_type for node in model.graph.node}
    if ops & DYNAMIC_OPS:
        return Precision.DYNAMIC
    if ops & QDQ_OPS:
        return Precision.INT8
    if any(init.data_type == onnx.TensorProto.FLOAT16 for init in model.graph.initializer):
        return Precision.FP16
    return Precision.FP32
