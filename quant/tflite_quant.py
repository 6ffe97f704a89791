"""How TFLite quantizes: TF's converter configured per precision, the representative
dataset, mixed precision through TF's quantization debugger, and the map between
TFLite tensors and Keras layer names that ``--keep-float`` and sensitivity use.

Precisions: ``fp32``; ``fp16`` (float16 weights); ``dynamic`` (int8 weights, float
activations); ``int8`` (full integer: per-channel int8 weights, int8 activations
calibrated on a representative set, Jacob et al. 2018; ``io_type`` sets the
input/output tensor types). Builtin ops only: the converter never falls back to Flex.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from mobilectl.core.errors import UserError, nearest
from mobilectl.core.names import layers_in
from mobilectl.core.tfenv import third_party_output
from mobilectl.core.types import IoType, Precision
from quant.tflite_forms import for_tflite


def _batch_one(model: Any) -> Any:
    import keras  # heavy: TensorFlow/Keras load only when a model is converted

    inputs = keras.Input(batch_shape=(1, *model.input_shape[1:]), name="input")
    return keras.Model(inputs, model(inputs, training=False), name=model.name)


def make_converter(model: Any, *, precision: Precision, calibration: np.ndarray | None = None,
                   io_type: IoType = IoType.FLOAT, sparse: bool = False,
                   trained_ranges: bool = False, int8_graph: bool = False) -> Any:
    """A ``tf.lite.TFLiteConverter`` configured for ``precision`` (batch-1 signature,
    builtin ops only; ``sparse``: the converter's sparse tensor encoding of weights
    that are mostly zero, decoded by DENSIFY ops in float models; ``trained_ranges``:
    a quantization-aware model, whose fake quantization gives every range, converted
    as it was trained, without a representative dataset; ``int8_graph``: a float model
    written with the ops int8 kernels take, for a quantizer to quantize later)."""
    import tensorflow as tf  # heavy: only when a model is converted

    if not trained_ranges:  # ops XNNPACK runs (a QAT model was trained on its own ops)
        model = for_tflite(model, int8=int8_graph or precision == Precision.INT8)
    with third_party_output():  # Keras' export prints a banner and the captured variables
        converter = tf.lite.TFLiteConverter.from_keras_model(_batch_one(model))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if precision != Precision.FP32:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if sparse:
        converter.optimizations = [*converter.optimizations, tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    if precision == Precision.FP16:
        converter.target_spec.supported_types = [tf.float16]
    elif precision == Precision.INT8:
        if not trained_ranges:
            converter.representative_dataset = representative(calibration)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io_dtype = {IoType.FLOAT: tf.float32, IoType.INT8: tf.int8, IoType.UINT8: tf.uint8}[io_type]
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


def convert_mixed(converter: Any, calibration: np.ndarray, keep_float: Sequence[str], *,
                  model_name: str, io_type: IoType) -> bytes:
    """Full-integer int8 except the ops computing the ``keep_float`` layers, which TF's
    quantization debugger leaves in float (its deny list)."""
    import tensorflow as tf  # heavy: only when a model is converted

    if io_type == IoType.UINT8:
        raise UserError("--keep-float works with --io float or int8, not uint8")
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                           tf.lite.OpsSet.TFLITE_BUILTINS]
    nodes = tensors_of_layers(converter.convert(), keep_float, model_name=model_name)
    options = tf.lite.experimental.QuantizationDebugOptions(
        denylisted_nodes=nodes, fully_quantize=io_type == IoType.INT8)
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=representative(calibration), debug_options=options)
    return bytes(debugger.get_nondebug_quantized_model())


def tensors_of_layers(flatbuffer: bytes, layers: Sequence[str], *, model_name: str) -> list[str]:
    """Output tensor names of the ops that compute the named Keras layers; a name no op
    computes is an error listing the nearest quantizable layer."""
    known: dict[str, list[str]] = {}
    for op in op_details(flatbuffer):
        for out in op["output_names"]:
            for layer in layers_in(out):
                known.setdefault(layer, []).append(out)
    missing = [name for name in layers if name not in known]
    if missing:
        raise UserError(f"--keep-float {missing[0]}: no such layer in {model_name}"
                        f"{nearest(missing[0], known)}; see 'mobilectl quant-report'")
    return sorted({t for name in layers for t in known[name]})


def interpreter(flatbuffer: bytes) -> Any:
    """A LiteRT interpreter over ``flatbuffer`` (not yet allocated)."""
    from ai_edge_litert.interpreter import Interpreter  # heavy: native runtime

    with third_party_output():
        return Interpreter(model_content=flatbuffer)


def op_details(flatbuffer: bytes) -> list[dict[str, Any]]:
    """Ops in execution order with their output tensor names."""
    runtime = interpreter(flatbuffer)
    names = {t["index"]: t["name"] for t in runtime.get_tensor_details()}
    return [{"op_name": op["op_name"], "output_names": [names[i] for i in op["outputs"]
                                                         if i in names]}
            for op in runtime._get_ops_details()]  # noqa: SLF001
