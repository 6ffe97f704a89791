"""The TFLite format: Keras -> .tflite with TensorFlow's converter (configured per
precision by :mod:`quant.tflite_quant`), run with LiteRT, metadata in the
flatbuffer's metadata table. :data:`FORMAT` is this module's row of the format table.

The model is traced with a fixed batch-1 signature, so shapes are static. Conversion
never falls back to Flex (SELECT_TF_OPS): a graph that would need it fails, naming the
ops. Layers named in ``keep_float`` stay float (mixed precision).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from exporter.options import ExportFormat, ExportOptions, Progress
from mobilectl.core.errors import UserError
from mobilectl.core.manifest import QuantRecipe, TensorInfo, TensorIO
from mobilectl.core.tfenv import third_party_output
from mobilectl.core.types import (
    Activations, CalibrationMethod, Format, IoType, LayerPrecision, Layout, Precision,
)
from quant import mixed, tflite_quant

METADATA_NAME = "mobilectl"


class FlexOpsError(UserError):
    """The graph needs TensorFlow ops outside TFLite's builtins."""


def convert(model: Any, *, precision: Precision = Precision.FP32,
            calibration: np.ndarray | None = None, io_type: IoType = IoType.FLOAT,
            keep_float: Sequence[str] = (), sparse: bool = False,
            trained_ranges: bool = False) -> bytes:
    """Convert a Keras model to a .tflite flatbuffer (builtin ops only; ``sparse``:
    zero-heavy weights in TFLite's sparse tensor encoding, behind DENSIFY ops;
    ``trained_ranges``: a quantization-aware model, no calibration)."""
    converter = tflite_quant.make_converter(model, precision=precision, calibration=calibration,
                                            io_type=io_type, sparse=sparse,
                                            trained_ranges=trained_ranges)
    try:
        with third_party_output():
            if keep_float:
                return tflite_quant.convert_mixed(converter, calibration, keep_float,
                                                  model_name=model.name, io_type=io_type)
            return converter.convert()
    except UserError:
        raise
    except Exception as exc:  # the converter raises ConverterError with the op list
        raise _conversion_error(model.name, str(exc)) from None


def _conversion_error(name: str, message: str) -> UserError:
    flex = sorted(set(re.findall(r"\btf\.([A-Z]\w+)", message)))
    if flex:
        return FlexOpsError(f"{name} needs TensorFlow ops outside TFLite's builtins: "
                            f"{', '.join(flex)} (Flex ops are not allowed)")
    first = next((line.strip() for line in message.splitlines() if "error" in line.lower()),
                 message.strip().splitlines()[0] if message.strip() else "unknown error")
    return UserError(f"{name} failed to convert to TFLite: {first}")


def _convert_artifact(model: Any, *, options: ExportOptions, calibration: np.ndarray,
                      metadata: dict[str, Any], progress: Progress) -> bytes:
    sparse = " (sparse weights)" if options.sparse else ""
    qat = f" (trained ranges, int{options.qat_weight_bits} weights)" if options.qat_weight_bits else ""
    if options.layer_precisions:
        progress(f"convert {model.name} to TFLite, mixed: {mixed_summary(options)}")
        return convert_mixed(model, calibration, options, metadata=metadata)
    progress(f"convert {model.name} to TFLite {options.precision}{sparse}{qat}")
    data = convert(model, precision=options.precision, calibration=calibration,
                   io_type=options.io_type, keep_float=options.keep_float, sparse=options.sparse,
                   trained_ranges=options.qat_weight_bits is not None)
    return embed_metadata(data, metadata)


def mixed_summary(options: ExportOptions) -> str:
    """``2 float, 5 w4a8, the rest int8``."""
    counts: dict[str, int] = {}
    for _, precision in options.layer_precisions:
        counts[str(precision)] = counts.get(str(precision), 0) + 1
    return ", ".join([*(f"{n} {p}" for p, n in sorted(counts.items())), "the rest int8"])


def convert_mixed(model: Any, calibration: np.ndarray, options: ExportOptions, *,
                  metadata: dict[str, Any]) -> bytes:
    """A precision per layer (:mod:`quant.mixed`): the float file with its metadata,
    quantized by the AI Edge Quantizer with the options' recipe (the quantizer writes
    weights as offsets past the flatbuffer, so the metadata goes in before)."""
    try:
        flat = embed_metadata(mixed.float_flatbuffer(model), metadata)
    except Exception as exc:  # the converter raises ConverterError with the op list
        raise _conversion_error(model.name, str(exc)) from None
    found = mixed.units(flat, weighted=mixed.weighted_layers(model))
    return mixed.quantize(flat, calibration, found=found, layers=dict(options.layer_precisions),
                          io_type=options.io_type)


def op_types(flatbuffer: bytes) -> list[str]:
    """The operator names of a .tflite model, in execution order."""
    return [op["op_name"] for op in tflite_quant.op_details(flatbuffer)]


def _tensor_info(detail: dict[str, Any]) -> TensorInfo:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return TensorInfo(detail["name"], tuple(int(d) for d in detail["shape"]),
                      np.dtype(detail["dtype"]).name, float(scale), int(zero_point))


def io_details(flatbuffer: bytes) -> TensorIO:
    """Inputs and outputs: name, shape, dtype, scale and zero point (0 when float)."""
    runtime = tflite_quant.interpreter(flatbuffer)
    return TensorIO(tuple(_tensor_info(d) for d in runtime.get_input_details()),
                    tuple(_tensor_info(d) for d in runtime.get_output_details()))


def run(flatbuffer: bytes, x: np.ndarray, *, layout: Layout = Layout.NHWC) -> np.ndarray:
    """Run a .tflite model on each row of NHWC ``x`` (float inputs; int8/uint8 inputs
    are quantized with the tensor's scale and zero point, outputs dequantized)."""
    del layout  # TFLite inputs are always NHWC
    with third_party_output():  # LiteRT prints INFO lines when it applies XNNPACK
        runtime = tflite_quant.interpreter(flatbuffer)
        runtime.allocate_tensors()
        inp, outp = runtime.get_input_details()[0], runtime.get_output_details()[0]
        rows = []
        for row in np.asarray(x, dtype=np.float32):
            runtime.set_tensor(inp["index"], _to_tensor(row[None], inp))
            runtime.invoke()
            rows.append(_from_tensor(runtime.get_tensor(outp["index"]), outp))
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
    from tensorflow.lite.python import schema_py_generated as schema  # heavy: TF
    from tensorflow.lite.tools import flatbuffer_utils  # heavy: TF

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
    from tensorflow.lite.tools import flatbuffer_utils  # heavy: TF

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    for entry in model.metadata or []:
        if entry.name in (METADATA_NAME, METADATA_NAME.encode()):
            return json.loads(bytes(model.buffers[entry.buffer].data).decode())
    return None


def recipe(options: ExportOptions) -> QuantRecipe | None:
    """Full-integer TFLite: LiteRT's int8 scheme (int8 activations, per-channel int8
    weights, min/max ranges from the converter's calibration), whatever the target."""
    if options.precision != Precision.INT8:
        return None
    bits = options.qat_weight_bits
    return QuantRecipe(activations=Activations.INT8, weights=f"int{bits or 8}", per_channel=True,
                       format="tflite", calibration_method=CalibrationMethod.MINMAX,
                       target=options.target, trained_ranges=bits is not None,
                       layers=options.layer_precisions)


FORMAT = ExportFormat(name=Format.TFLITE, title="TFLite",
                      accepts=frozenset({"io_type", "keep_float", "sparse"}), convert=_convert_artifact,
                      run=run, io_details=io_details, recipe=recipe,
                      layer_precisions=frozenset(LayerPrecision))
