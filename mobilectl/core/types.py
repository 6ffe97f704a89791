"""The typed option values that cross package borders.

Each is a :class:`enum.StrEnum`: it prints, compares and serialises as its plain
value (``"int8"``), so manifests and JSON stay as they are, while code passes one
typed value instead of a bare string with a copy of its allowed list in every module.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

from mobilectl.core.errors import UserError


class Precision(StrEnum):
    """The numeric precision of an artifact."""

    FP32 = "fp32"
    FP16 = "fp16"
    DYNAMIC = "dynamic"  # int8 weights, float activations (quantized at run time)
    INT8 = "int8"  # full integer: int8 weights and activations, calibrated

    @property
    def is_quantized(self) -> bool:
        """Integer weights (dynamic-range or full integer): checked by cosine, SQNR and
        top-1 agreement instead of max abs error."""
        return self in (Precision.DYNAMIC, Precision.INT8)


class Format(StrEnum):
    """An artifact file format (also its file extension)."""

    TFLITE = "tflite"
    ONNX = "onnx"


class IoType(StrEnum):
    """Input/output tensor type of a full-integer TFLite model."""

    FLOAT = "float"
    INT8 = "int8"
    UINT8 = "uint8"


class Layout(StrEnum):
    """Input layout of an ONNX model (TFLite inputs are always NHWC)."""

    NHWC = "nhwc"
    NCHW = "nchw"


class Activations(StrEnum):
    """The integer type of an int8 ONNX model's activations (weights are always int8):
    onnxruntime's fast x86 kernels take uint8 activations with int8 weights (U8S8);
    ARM's take int8 with int8 (S8S8)."""

    UINT8 = "uint8"
    INT8 = "int8"


class MobileEp(StrEnum):
    """An onnxruntime mobile execution provider that onnxruntime's usability checker
    (``onnxruntime.tools.check_onnx_model_mobile_usability``) estimates partitions for."""

    NNAPI = "nnapi"
    COREML_NEURALNETWORK = "coreml-neuralnetwork"
    COREML_MLPROGRAM = "coreml-mlprogram"


class EpFit(StrEnum):
    """The checker's verdict: whether the model should run well with that EP."""

    YES = "yes"
    MAYBE = "maybe"
    NO = "no"


class QuantFormat(StrEnum):
    """How int8 ONNX writes its integer ops: QuantizeLinear/DequantizeLinear pairs around
    float ops (QDQ, which runtimes fuse and mobile EPs take) or integer ops such as
    ``QLinearConv`` (QOperator)."""

    QDQ = "qdq"
    QOPERATOR = "qoperator"


class CalibrationMethod(StrEnum):
    """How onnxruntime picks an activation's range from the calibration samples."""

    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


class LayerPrecision(StrEnum):
    """One layer's precision in a mixed recipe (``export --mixed``): a bit width per
    layer, as HAQ (Wang et al., 2019) chooses it, from what LiteRT's kernels take."""

    INT4_WEIGHTS = "w4a8"  # 4-bit weights, int8 activations (smallest)
    INT8 = "int8"  # int8 weights and activations
    INT16_ACTIVATIONS = "a16w8"  # 16-bit activations, int8 weights (more accurate)
    FLOAT = "float"  # not quantized

    @property
    def weight_bits(self) -> int:
        return {"w4a8": 4, "int8": 8, "a16w8": 8, "float": 32}[self.value]


E = TypeVar("E", bound=StrEnum)

#: The validation share of labelled data when neither ``--val`` nor ``--val-split`` is
#: given (``mobilectl eval``, ``mobilectl prune``).
DEFAULT_VAL_SPLIT = 0.2


def parse(kind: type[E], value: object, *, flag: str) -> E:
    """``value`` as a member of ``kind``; a UserError names the flag, the bad value and
    the allowed ones."""
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise UserError(f"{flag} {value!r} is not allowed: one of {allowed}") from None


def values(kind: type[StrEnum]) -> tuple[str, ...]:
    """The allowed values of ``kind``, in declaration order."""
    return tuple(member.value for member in kind)
