"""Keras -> TFLite with TensorFlow's converter, builtin ops only.

Precisions: ``fp32``, ``fp16`` (float16 weights), ``dynamic`` (int8 weights, float
activations) and ``int8`` (full integer: per-channel int8 weights, int8 activations
calibrated on a representative set; ``io`` sets the input/output tensor types). The
model is traced with a fixed batch-1 signature, so shapes are static. Conversion never
falls back to Flex (SELECT_TF_OPS): a graph that would need it fails, naming the ops.
Layers named in ``keep_float`` stay float (mixed precision) through TF's quantization
debugger, the converter's own mechanism for it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from mobilectl.errors import UserError

PRECISIONS = ("fp32", "fp16", "dynamic", "int8")
IO_TYPES = ("float", "int8", "uint8")
METADATA_NAME = "mobilectl"


class FlexOpsError(UserError):
    """The graph needs TensorFlow ops outside TFLite's builtins."""


def _batch_one(model: Any) -> Any:
    import keras

    inputs = keras.Input(batch_shape=(1, *model.input_shape[1:]), name="input")
    return keras.Model(inputs, model(inputs, training=False), name=model.name)


def make_converter(model: Any, *, precision: str, calibration: np.ndarray | None = None,
                   io_type: str = "float") -> Any:
    """A configured ``tf.lite.TFLiteConverter`` for ``precision``."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(_batch_one(model))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if precision == "fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif precision == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif precision == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative(calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io_dtype = {"float": tf.float32, "int8": tf.int8, "uint8": tf.uint8}[io_type]
        converter.inference_input_type = io_dtype
        converter.inference_output_type = io_dtype
    return converter


def representative(calibration: np.ndarray | None):
    """The converter's representative dataset: one batch-1 sample at a time, in order."""
    if calibration is None or len(calibration) == 0:
        raise UserError("int8 conversion needs calibration samples")

    def samples() -> Iterator[list[np.ndarray]]:
        for row in calibration:
            yield [row[None].astype(np.float32)]

    return samples


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep stdout for results: Keras' export prints a banner and every captured
    variable from Python, the converter's C++ side prints its quantization settings on
    file descriptor 1. Both are dropped while converting (errors still raise)."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def convert(model: Any, *, precision: str = "fp32", calibration: np.ndarray | None = None,
            io_type: str = "float", keep_float: Sequence[str] = ()) -> bytes:
    """Convert a Keras model to a .tflite flatbuffer (builtin ops only)."""
    converter = make_converter(model, precision=precision, calibration=calibration,
                               io_type=io_type)
    try:
        with _quiet():
            if keep_float:
                return _mixed_precision(converter, calibration, keep_float, model,
                                        io_type=io_type)
            return converter.convert()
    except UserError:
        raise
    except Exception as exc:  # the converter raises ConverterError with the op list
        raise _conversion_error(model.name, str(exc)) from None


def convert_float(model: Any) -> bytes:
    """Convert a Keras model to a float32 .tflite flatbuffer (builtin ops only)."""
    return convert(model, precision="fp32")


def _conversion_error(name: str, message: str) -> UserError:
    flex = sorted(set(re.findall(r"\btf\.([A-Z]\w+)", message)))
    if flex:
        return FlexOpsError(f"{name} needs TensorFlow ops outside TFLite's builtins: "
                            f"{', '.join(flex)} (Flex ops are not allowed)")
    first = next((line.strip() for line in message.splitlines() if "error" in line.lower()),
                 message.strip().splitlines()[0] if message.strip() else "unknown error")
    return UserError(f"{name} failed to convert to TFLite: {first}")


def _mixed_precision(converter: Any, calibration: np.ndarray, keep_float: Sequence[str],
                     model: Any, *, io_type: str) -> bytes:
    import tensorflow as tf

    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                           tf.lite.OpsSet.TFLITE_BUILTINS]
    quantized = converter.convert()
    nodes = tensors_of_layers(quantized, keep_float, model_name=model.name)
    if io_type == "uint8":
        raise UserError("--keep-float works with --io float or int8, not uint8")
    options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_nodes=nodes, fully_quantize=io_type == "int8")
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=representative(calibration), debug_options=options)
    return bytes(debugger.get_nondebug_quantized_model())


def layer_names_in(tensor_name: str) -> list[str]:
    """Keras layer names inside a TFLite tensor name (``scope/stage1.dw.conv_1/op;...``):
    path segments with the ``_N`` call suffix removed, duplicates dropped, in order."""
    found: list[str] = []
    for part in re.split(r"[;]", tensor_name):
        for segment in part.split("/")[1:-1] or part.split("/")[:1]:
            base = re.sub(r"_\d+$", "", segment)
            if base and base not in found:
                found.append(base)
    return found


def tensors_of_layers(flatbuffer: bytes, layers: Sequence[str], *, model_name: str) -> list[str]:
    """Output tensor names of the ops that compute the named Keras layers; a name no op
    computes is an error listing the quantizable layers."""
    known: dict[str, list[str]] = {}
    for op in op_details(flatbuffer):
        for out in op["output_names"]:
            for layer in layer_names_in(out):
                known.setdefault(layer, []).append(out)
    missing = [name for name in layers if name not in known]
    if missing:
        from mobilectl.errors import nearest

        raise UserError(f"--keep-float {missing[0]}: no such layer in {model_name}"
                        f"{nearest(missing[0], known)}; see 'mobilectl quant-report'")
    return sorted({t for name in layers for t in known[name]})


def _interpreter(flatbuffer: bytes) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=flatbuffer)


def op_details(flatbuffer: bytes) -> list[dict[str, Any]]:
    """Ops in execution order with their output tensor names."""
    interpreter = _interpreter(flatbuffer)
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    return [{"op_name": op["op_name"], "output_names": [names[i] for i in op["outputs"]
                                                         if i in names]}
            for op in interpreter._get_ops_details()]  # noqa: SLF001


def op_types(flatbuffer: bytes) -> list[str]:
    """The operator names of a .tflite model, in execution order."""
    return [op["op_name"] for op in op_details(flatbuffer)]


def _tensor_info(detail: dict[str, Any]) -> dict[str, Any]:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return {"name": detail["name"], "shape": [int(d) for d in detail["shape"]],
            "dtype": np.dtype(detail["dtype"]).name, "scale": float(scale),
            "zero_point": int(zero_point)}


def io_details(flatbuffer: bytes) -> dict[str, list[dict[str, Any]]]:
    """Inputs and outputs: name, shape, dtype, scale and zero point (0 when float)."""
    interpreter = _interpreter(flatbuffer)
    return {"inputs": [_tensor_info(d) for d in interpreter.get_input_details()],
            "outputs": [_tensor_info(d) for d in interpreter.get_output_details()]}


def run(flatbuffer: bytes, x: np.ndarray) -> np.ndarray:
    """Run a .tflite model on each row of ``x`` (float inputs; int8/uint8 inputs are
    quantized with the tensor's scale and zero point, outputs dequantized)."""
    interpreter = _interpreter(flatbuffer)
    interpreter.allocate_tensors()
    inp, outp = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    rows = []
    for row in np.asarray(x, dtype=np.float32):
        interpreter.set_tensor(inp["index"], _to_tensor(row[None], inp))
        interpreter.invoke()
        rows.append(_from_tensor(interpreter.get_tensor(outp["index"]), outp))
    return np.concatenate(rows)


def _to_tensor(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)


def _from_tensor(y: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    if np.dtype(detail["dtype"]).kind == "f":
        return y.astype(np.float32)
    scale, zero_point = detail["quantization"]
    return ((y.astype(np.float32) - zero_point) * scale).astype(np.float32)


def embed_metadata(flatbuffer: bytes, metadata: dict[str, Any]) -> bytes:
    """Add a ``mobilectl`` metadata entry (JSON: name, version, normalisation, labels...)
    to the flatbuffer's metadata table; runtimes ignore it, tools can read it back."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(metadata, sort_keys=True).encode(), dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_NAME.encode()]
    model.metadata.append(entry)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def read_metadata(flatbuffer: bytes) -> dict[str, Any] | None:
    """The ``mobilectl`` metadata entry of a .tflite file, or None."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    for entry in model.metadata or []:
        if entry.name in (METADATA_NAME, METADATA_NAME.encode()):
            return json.loads(bytes(model.buffers[entry.buffer].data).decode())
    return None
