"""How ONNX quantizes: onnxruntime's quantization tools on tf2onnx's float graph.

- ``fp16``: onnxruntime's float16 converter, float32 inputs and outputs kept.
- ``dynamic``: ``quantize_dynamic`` (int8 weights, activations quantized at run time).
- ``int8``: ``quant_pre_process`` (shape inference + graph optimisation), then
  ``quantize_static`` in QDQ format with per-channel int8 weights, calibrated on the
  same samples as TFLite. The activation type follows the target CPU
  (:func:`activations_for`): uint8 on x86, where onnxruntime's integer GEMM kernels
  take uint8 x int8 (U8S8; with int8 activations it falls back to slower paths), int8
  on ARM, where its kernels take int8 x int8 (S8S8, onnxruntime's general QDQ
  recommendation). The range of each activation comes from min/max, entropy or
  percentile calibration. Named layers can stay float (then the pre-processing skips
  ORT's graph optimiser, which renames the nodes it fuses).
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dataclasses import dataclass

import numpy as np

from mobilectl.core.errors import UserError, nearest
from mobilectl.core.tfenv import third_party_output
from mobilectl.core.manifest import QuantRecipe
from mobilectl.core.types import Activations, CalibrationMethod, Layout, QuantFormat


@dataclass(frozen=True)
class TargetRecipe:
    """The int8 ONNX settings a CPU architecture's onnxruntime kernels are fast with."""

    activations: Activations
    symmetric: bool = False  # activations' zero point fixed at the type's middle
    format: QuantFormat = QuantFormat.QDQ


#: x86: uint8 activations x int8 weights (U8S8, onnxruntime's VNNI/AVX kernels), QDQ,
#: asymmetric activations (a ReLU output uses the whole uint8 range); ARM: int8 x int8
#: (S8S8, onnxruntime's QDQ recommendation, what NNAPI/XNNPACK EPs take), QDQ.
X86 = TargetRecipe(Activations.UINT8)
ARM = TargetRecipe(Activations.INT8)
#: CPU architecture (an ABI or ``platform.machine()``) -> its recipe
ARCH_RECIPES = {"x86_64": X86, "amd64": X86, "x86": X86, "i686": X86,
                "arm64-v8a": ARM, "aarch64": ARM, "arm64": ARM, "armeabi-v7a": ARM}


def host_arch() -> str:
    """This machine's CPU architecture, as ``platform.machine()`` names it."""
    import platform  # stdlib; only the host needs it

    return platform.machine().lower() or "unknown"


def recipe_for(arch: str) -> TargetRecipe:
    """The recipe for ``arch`` (unknown architectures: ARM's S8S8 QDQ, the portable
    choice)."""
    return ARCH_RECIPES.get(arch.lower(), ARM)


def activations_for(arch: str) -> Activations:
    """The activation type for ``arch``."""
    return recipe_for(arch).activations


def recipe(activations: Activations, method: CalibrationMethod, *, target: str,
           symmetric: bool = False, quant_format: QuantFormat = QuantFormat.QDQ) -> QuantRecipe:
    """The manifest record of :func:`quantize_int8`'s settings."""
    return QuantRecipe(activations=activations, weights="int8", per_channel=True,
                       format=str(quant_format), calibration_method=method, target=target,
                       symmetric_activations=symmetric)


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


def quantize_int8(proto: Any, calibration: np.ndarray, *, layout: Layout = Layout.NHWC,
                  keep_float: Sequence[str] = (), activations: Activations = Activations.UINT8,
                  method: CalibrationMethod = CalibrationMethod.MINMAX,
                  symmetric: bool = False, quant_format: QuantFormat = QuantFormat.QDQ) -> Any:
    """Static quantization (``quant_format``, per-channel int8 weights, ``activations``,
    symmetric or not, ranges by ``method``) after ORT's pre-processing."""
    import onnx  # heavy: onnx/onnxruntime load only when a model is quantized
    from onnxruntime.quantization import (
        CalibrationMethod as OrtMethod, QuantFormat as OrtFormat, QuantType, quant_pre_process,
        quantize_static,
    )

    rows = to_nchw(calibration) if layout == Layout.NCHW else calibration
    nodes_of_layers(proto, keep_float)  # a bad name fails before any work
    with tempfile.TemporaryDirectory(prefix="mobilectl-ort-") as tmp:
        src, pre, dst = (Path(tmp) / n for n in ("float.onnx", "pre.onnx", "int8.onnx"))
        onnx.save(proto, src)
        with third_party_output():
            # ORT's optimiser renames what it fuses, losing layer names: with layers to
            # keep in float, pre-process without it so the names can be found.
            quant_pre_process(src, pre, skip_optimization=bool(keep_float))
            prepared = expand_scalar_biases(onnx.load(pre))  # ORT's fusion makes some
            onnx.save(prepared, pre)
            exclude = nodes_of_layers(prepared, keep_float) if keep_float else None
            quantize_static(pre, dst, _Reader(rows, proto.graph.input[0].name),
                            quant_format=OrtFormat.QDQ if quant_format == QuantFormat.QDQ
                            else OrtFormat.QOperator, per_channel=True,
                            extra_options={"ActivationSymmetric": symmetric},
                            activation_type=QuantType.QUInt8
                            if activations == Activations.UINT8 else QuantType.QInt8,
                            weight_type=QuantType.QInt8, nodes_to_exclude=exclude,
                            calibrate_method={CalibrationMethod.MINMAX: OrtMethod.MinMax,
                                              CalibrationMethod.ENTROPY: OrtMethod.Entropy,
                                              CalibrationMethod.PERCENTILE: OrtMethod.Percentile
                                              }[method])
        return onnx.load(dst)


def expand_scalar_biases(proto: Any) -> Any:
    """Give every Conv and Gemm a per-channel bias: ORT's pre-processing fuses a scalar constant
    add (hard-sigmoid's +3) into a scalar (0-d) bias, which ONNX broadcasts but ORT's
    int32 bias quantizer indexes per channel (and fails on). Same numbers, one value per
    output channel."""
    from onnx import numpy_helper  # heavy: onnx loads only when a model is quantized

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
    import onnx  # heavy: onnx/onnxruntime load only when a model is quantized
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_dynamic

    with tempfile.TemporaryDirectory(prefix="mobilectl-ort-") as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "dynamic.onnx"
        onnx.save(proto, src)
        with third_party_output():
            ort_dynamic(src, dst, weight_type=QuantType.QUInt8)
        return onnx.load(dst)


def to_fp16(proto: Any) -> Any:
    """float16 weights and activations; float32 inputs and outputs are kept."""
    from onnxruntime.transformers.float16 import convert_float_to_float16  # heavy: ORT

    with third_party_output():
        return convert_float_to_float16(proto, keep_io_types=True)


#: ONNX ops whose second input is a weight, and the axis of its output channels
#: (None: one scale per tensor, as QAT trains a dense layer).
WEIGHT_AXES = {"Conv": 0, "Gemm": None, "MatMul": None}


def trained_weights(proto: Any, *, bits: int) -> int:
    """Store the weights of a quantization-aware model as integers behind a
    ``DequantizeLinear``, in place; how many were stored.

    tf2onnx writes QAT's activation fake quantization as QDQ pairs but folds the
    weights' into float constants, which lie on the trained grid: ``k * scale`` with
    ``|k| <= 2**(bits-1) - 1`` and one scale per output channel. ``k`` (int8 storage,
    also for 4 and 2 bits) and the scale are recovered exactly; a weight off the grid
    is an error (the model was not fake-quantized as QAT makes it)."""
    from onnx import helper, numpy_helper  # heavy: only when an ONNX model is written

    levels = 2 ** (bits - 1) - 1
    initializers = {init.name: init for init in proto.graph.initializer}
    done: dict[str, str] = {}
    for node in list(proto.graph.node):
        name = node.input[1] if node.op_type in WEIGHT_AXES and len(node.input) > 1 else None
        if name not in initializers or initializers[name].data_type != 1:  # float only
            continue
        if name not in done:
            axis = WEIGHT_AXES[node.op_type]
            w = numpy_helper.to_array(initializers[name])
            k, scale = _on_grid(w, levels=levels, axis=axis, name=name)
            proto.graph.initializer.extend([
                numpy_helper.from_array(k, f"{name}.q"),
                numpy_helper.from_array(scale, f"{name}.scale"),
                numpy_helper.from_array(np.zeros_like(scale, dtype=np.int8), f"{name}.zero")])
            attrs = {} if axis is None else {"axis": axis}
            proto.graph.node.insert(0, helper.make_node(
                "DequantizeLinear", [f"{name}.q", f"{name}.scale", f"{name}.zero"],
                [f"{name}.dq"], name=f"{name}.dequantize", **attrs))
            proto.graph.initializer.remove(initializers[name])
            done[name] = f"{name}.dq"
        node.input[1] = done[name]
    return len(done)


def _on_grid(w: np.ndarray, *, levels: int, axis: int | None,
             name: str) -> tuple[np.ndarray, np.ndarray]:
    """``w`` as ``k * scale`` (int8 k, float32 scale per ``axis`` or per tensor)."""
    other = tuple(a for a in range(w.ndim) if a != axis) if axis is not None else None
    bound = np.max(np.abs(w), axis=other, keepdims=True)
    scale = np.where(bound > 0, bound / levels, 1.0).astype(np.float32)
    k = np.clip(np.round(w / scale), -levels, levels)
    if np.max(np.abs(k * scale - w)) > 1e-3 * float(np.max(scale)):
        raise ValueError(f"{name}: weights off the {2 * levels + 1}-level grid of QAT")
    flat = scale.reshape(-1) if axis is not None else scale.reshape(())
    return k.astype(np.int8), flat
