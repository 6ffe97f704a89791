"""A precision per layer in TFLite, with Google's AI Edge Quantizer.

HAQ (Wang et al., 2019) shows that the best bit width differs from layer to layer. This
module makes a TFLite file in which each weighted layer (a convolution, depthwise
convolution or dense layer) has its own :class:`LayerPrecision`: int8 everywhere by
default, 4-bit weights with int8 activations, 16-bit activations with int8 weights, or
float. The float flatbuffer is quantized by the AI Edge Quantizer with one recipe entry
per layer that is not int8, matched to the op by its exact output tensor names (the
quantizer's op scope), so no other op is touched. Inputs and outputs stay float unless
int8 is asked for.

:func:`units` lists the weighted ops of a float file with their Keras layer, op type
and weight count: the candidates a mixed-precision search chooses for.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mobilectl.core.errors import UserError, nearest
from mobilectl.core.names import layers_in
from mobilectl.core.tfenv import third_party_output
from mobilectl.core.types import IoType, LayerPrecision, Precision
from quant.tflite_quant import interpreter, make_converter

WEIGHTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
#: the ops the quantizer stores 4-bit weights for with int8 activations (its
#: static_wi4_ai8 policy); a depthwise convolution keeps int8 weights
INT4_OPS = ("CONV_2D", "FULLY_CONNECTED")
SIGNATURE = "serving_default"


@dataclass(frozen=True)
class QuantUnit:
    """One weighted op of a float TFLite file: what a mixed recipe chooses for."""

    layer: str  # the Keras layer computing it
    op: str  # CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED
    scope: str  # its output tensor names, as the quantizer matches ops
    weights: int  # weight elements

    @property
    def choices(self) -> tuple[LayerPrecision, ...]:
        """The precisions this op can take, smallest first."""
        low = (LayerPrecision.INT4_WEIGHTS,) if self.op in INT4_OPS else ()
        return (*low, LayerPrecision.INT8, LayerPrecision.INT16_ACTIVATIONS, LayerPrecision.FLOAT)


def weighted_layers(model: Any) -> set[str]:
    """The names of the model's layers with a kernel (convolutions and dense layers)."""
    return {layer.name for layer in model.layers
            if hasattr(layer, "kernel") or hasattr(layer, "depthwise_kernel")}


def float_flatbuffer(model: Any) -> bytes:
    """``model`` as a float TFLite file written with the ops LiteRT's int8 kernels take
    (what :func:`quantize` starts from)."""
    converter = make_converter(model, precision=Precision.FP32, int8_graph=True)
    with third_party_output():
        return converter.convert()


def units(float_tflite: bytes, *, weighted: set[str]) -> list[QuantUnit]:
    """The weighted ops of ``float_tflite`` in execution order, each named by the layer
    in ``weighted`` (the Keras layers with kernels) its output tensor carries."""
    runtime = interpreter(float_tflite)
    tensors = {t["index"]: t for t in runtime.get_tensor_details()}
    found = []
    for op in runtime._get_ops_details():  # noqa: SLF001
        if op["op_name"] not in WEIGHTED_OPS:
            continue
        outputs = [tensors[i]["name"] for i in op["outputs"] if i in tensors]
        names = [n for out in outputs for n in layers_in(out) if n in weighted]
        if not names:
            continue
        weight = tensors.get(op["inputs"][1])
        size = int(np.prod(weight["shape"])) if weight is not None else 0
        found.append(QuantUnit(names[-1], op["op_name"], ";".join(outputs) + ";", size))
    return found


def check_recipe(found: Sequence[QuantUnit], layers: Mapping[str, LayerPrecision]) -> None:
    """Every layer of ``layers`` is a weighted op of the file, at a precision it takes."""
    by_layer = {unit.layer: unit for unit in found}
    for name, precision in layers.items():
        unit = by_layer.get(name)
        if unit is None:
            raise UserError(f"mixed recipe: {name} is no convolution or dense layer of the "
                            f"model{nearest(name, by_layer)}")
        if precision not in unit.choices:
            raise UserError(f"mixed recipe: {name} ({unit.op}) cannot take {precision}: "
                            f"one of {', '.join(unit.choices)}")


def quantize(float_tflite: bytes, calibration: np.ndarray, *, found: Sequence[QuantUnit],
             layers: Mapping[str, LayerPrecision], io_type: IoType = IoType.FLOAT) -> bytes:
    """``float_tflite`` quantized to int8 except the ``layers`` named, at theirs
    (calibrated on ``calibration``, NHWC float rows)."""
    from ai_edge_quantizer import quantizer, recipe  # heavy: only when a file is quantized

    if io_type == IoType.UINT8:
        raise UserError("--mixed works with --io float or int8, not uint8")
    check_recipe(found, layers)
    scopes = {unit.layer: unit.scope for unit in found}
    with third_party_output():
        engine = quantizer.Quantizer(bytearray(float_tflite), recipe.static_wi8_ai8())
        for name, precision in layers.items():
            _add(engine, "^" + re.escape(scopes[name]), precision)
        if io_type == IoType.FLOAT:
            for boundary in ("INPUT", "OUTPUT"):
                engine.update_quantization_recipe(regex=".*", operation_name=boundary,
                                                  algorithm_key="no_quantize")
        name = _input_name(float_tflite)
        ranges = engine.calibrate({SIGNATURE: [{name: row[None].astype(np.float32)}
                                               for row in calibration]}, num_threads=1)
        result = engine.quantize(ranges, enable_progress_report=False)
    return bytes(result.quantized_model)


def _add(engine: Any, regex: str, precision: LayerPrecision) -> None:
    if precision == LayerPrecision.FLOAT:
        engine.update_quantization_recipe(regex=regex, operation_name="*",
                                          algorithm_key="no_quantize")
    elif precision == LayerPrecision.INT4_WEIGHTS:
        engine.add_static_config(regex, "*", 8, 4)
    elif precision == LayerPrecision.INT16_ACTIVATIONS:
        engine.add_static_config(regex, "*", 16, 8)


def _input_name(float_tflite: bytes) -> str:
    signatures = interpreter(float_tflite).get_signature_list()
    if SIGNATURE not in signatures or len(signatures[SIGNATURE]["inputs"]) != 1:
        raise UserError(f"mixed precision needs one {SIGNATURE} signature with one input")
    return signatures[SIGNATURE]["inputs"][0]
