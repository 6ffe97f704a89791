"""What shapes an export besides the model: :class:`ExportOptions` (one list of
options, used by the CLI, the pipeline and the build spec alike), the verification
:class:`Thresholds`, and :class:`ExportFormat`, the contract each format module
fulfils for the format table (:mod:`exporter.formats`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
import numpy as np

from mobilectl.core.errors import UserError
from mobilectl.core.manifest import MobileVerdict, QuantRecipe, TensorIO
from mobilectl.core.types import (
    Activations, CalibrationMethod, Format, IoType, LayerPrecision, Layout, Precision,
    QuantFormat, parse,
)
from exporter.onnx_lean import fuses_hard_activations
from quant.onnx_quant import host_arch, recipe_for

Progress = Callable[[str], None]
MAX_CALIB_SAMPLES = 10_000
DEFAULT_CALIB_SAMPLES = 64
MAX_SEED = 2**32 - 1  # numpy's and TensorFlow's seed range


@dataclass(frozen=True)
class Thresholds:
    """Verification limits. Float artifacts: max abs error of the outputs; quantized
    (dynamic, int8): cosine similarity, SQNR (dB) and top-1 agreement, all minimums."""

    max_abs_error: float = 1e-3
    max_abs_error_fp16: float = 5e-2  # ONNX fp16 computes in half precision
    min_cosine: float = 0.98
    min_sqnr_db: float = 12.0
    min_top1: float = 0.8

    def validate(self) -> None:
        """Every limit in its range, checked before any work (a cosine above 1 could
        never pass, an error limit of 0 or below neither)."""
        ranges = (("--max-abs-error", self.max_abs_error, 0.0, math.inf, "a number above 0"),
                  ("--max-abs-error-fp16", self.max_abs_error_fp16, 0.0, math.inf,
                   "a number above 0"),
                  ("--min-cosine", self.min_cosine, -1.0, 1.0, "a number from -1 to 1"),
                  ("--min-sqnr", self.min_sqnr_db, -200.0, 400.0, "a number of dB from -200 to 400"),
                  ("--min-top1", self.min_top1, 0.0, 1.0, "a fraction from 0 to 1"))
        for flag, value, low, high, allowed in ranges:
            open_low = flag.startswith("--max")
            if not math.isfinite(value) or value > high or value < low or (open_low and value <= low):
                raise UserError(f"{flag} {value:g} is not allowed: {allowed}")


@dataclass(frozen=True)
class ExportOptions:
    """Everything that shapes the artifacts besides the model itself."""

    precision: Precision = Precision.FP32
    formats: tuple[Format, ...] = (Format.TFLITE, Format.ONNX)
    calib: str | None = None
    calib_samples: int = DEFAULT_CALIB_SAMPLES
    held_out: int = 32
    io_type: IoType = IoType.FLOAT
    layout: Layout = Layout.NCHW  # ONNX only (TFLite inputs are NHWC)
    keep_float: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    thresholds: Thresholds = field(default_factory=Thresholds)
    seed: int = 0
    output: str | None = None  # file stem instead of <model>[-<variant>]
    target: str = ""  # the CPU architecture int8 ONNX is made for ("" = this machine)
    activations: Activations | None = None  # int8 ONNX; None = the target's choice
    calib_method: CalibrationMethod = CalibrationMethod.MINMAX  # int8 ONNX ranges
    quant_format: QuantFormat | None = None  # int8 ONNX; None = the target's choice
    symmetric: bool | None = None  # int8 ONNX activations; None = the target's choice
    fuse_hard_activations: bool | None = None  # ONNX HardSwish; None = the target's choice
    sparse: bool = False  # TFLite: zero-heavy weights in the sparse tensor encoding (DENSIFY)
    # the weight bits a quantization-aware model was trained for (set from the model by
    # the pipeline); None: post-training quantization with calibrated ranges
    qat_weight_bits: int | None = None
    # a mixed recipe (export --mixed): the layers not at int8, with their precision
    layer_precisions: tuple[tuple[str, LayerPrecision], ...] = ()

    def __post_init__(self) -> None:
        """Plain values (``"int8"``) from library callers become their enum members; a
        value outside the enum is a UserError naming the flag."""
        object.__setattr__(self, "precision", parse(Precision, self.precision, flag="precision"))
        object.__setattr__(self, "formats", tuple(parse(Format, f, flag="--format")
                                                  for f in self.formats))
        object.__setattr__(self, "io_type", parse(IoType, self.io_type, flag="--io"))
        object.__setattr__(self, "layout", parse(Layout, self.layout, flag="--layout"))
        object.__setattr__(self, "target", (self.target or host_arch()).lower())
        chosen = recipe_for(self.target)
        object.__setattr__(self, "activations", chosen.activations if self.activations is None
                           else parse(Activations, self.activations, flag="--activations"))
        object.__setattr__(self, "quant_format", chosen.format if self.quant_format is None
                           else parse(QuantFormat, self.quant_format, flag="--quant-format"))
        object.__setattr__(self, "symmetric", chosen.symmetric if self.symmetric is None
                           else bool(self.symmetric))
        object.__setattr__(self, "fuse_hard_activations", fuses_hard_activations(self.target)
                           if self.fuse_hard_activations is None
                           else bool(self.fuse_hard_activations))
        object.__setattr__(self, "calib_method", parse(CalibrationMethod, self.calib_method,
                                                       flag="--calib-method"))
        object.__setattr__(self, "layer_precisions", tuple(sorted(
            (str(name), parse(LayerPrecision, value, flag=f"layer {name}"))
            for name, value in dict(self.layer_precisions).items())))

    def validate(self) -> None:
        """Raise UserError for a bad value or combination that needs no format
        (:func:`exporter.formats.check` adds the per-format rules)."""
        if not self.formats:
            raise UserError("--format is empty: give tflite, onnx or tflite,onnx")
        if self.io_type != IoType.FLOAT and self.precision != Precision.INT8:
            raise UserError(f"--io {self.io_type} needs --int8 (only full-integer models "
                            "have integer inputs)")
        if self.keep_float and self.precision != Precision.INT8:
            raise UserError("--keep-float needs --int8 (it leaves named layers in float)")
        if self.sparse and self.precision != Precision.FP32:
            raise UserError(f"--sparse works with fp32 only, not {self.precision}: XNNPACK's "
                            "sparse kernels are float, and LiteRT fails to load sparse int8 weights")
        if self.layer_precisions and self.precision != Precision.INT8:
            raise UserError("a mixed recipe needs --int8 (int8 is its default precision)")
        if self.layer_precisions and self.keep_float:
            raise UserError("--keep-float and a mixed recipe both choose float layers: give "
                            "one (a mixed recipe names its float layers itself)")
        if self.layer_precisions and self.io_type == IoType.UINT8:
            raise UserError("--mixed works with --io float or int8, not uint8")
        if self.keep_float and self.io_type == IoType.UINT8:
            raise UserError("--keep-float works with --io float or int8, not uint8")
        if not 1 <= self.calib_samples <= MAX_CALIB_SAMPLES:
            raise UserError(f"--calib-samples {self.calib_samples} is not allowed: "
                            f"an integer from 1 to {MAX_CALIB_SAMPLES}")
        if not 0 <= self.seed <= MAX_SEED:
            raise UserError(f"--seed {self.seed} is not allowed: an integer from 0 to {MAX_SEED}")
        if self.held_out < 1:
            raise UserError(f"held-out samples {self.held_out} is not allowed: 1 or more")
        self.thresholds.validate()

    def used(self) -> ExportOptions:
        """These options with the ones the precision ignores reset to their defaults
        (``io_type``, ``keep_float``, the target and the ONNX activation type,
        calibration method, format and symmetry only matter for int8), so equal exports have equal options
        (the build's cache key hashes exactly these)."""
        if self.precision == Precision.INT8:
            return self
        return replace(self, io_type=IoType.FLOAT, keep_float=(), target="any",
                       activations=Activations.UINT8, calib_method=CalibrationMethod.MINMAX,
                       quant_format=QuantFormat.QDQ, symmetric=False)


@dataclass(frozen=True)
class ExportFormat:
    """One artifact format as the pipeline sees it (a row of the format table).

    Attributes:
        name: the format, also the file extension.
        title: how progress lines name it.
        accepts: the options besides precision that this format honours
            (``io_type``, ``layout``, ``keep_float``).
        convert: ``(model, *, options, calibration, metadata, progress) -> bytes``:
            convert, quantize and embed the metadata.
        run: ``(data, x, *, layout) -> outputs``: run on NHWC float inputs.
        io_details: the artifact's input and output tensors.
        recipe: ``(options) -> QuantRecipe | None``: how an int8 artifact of this
            format is quantized (for the manifest).
        mobile: ``(data) -> verdicts``: how the artifact would run with mobile
            execution providers, where the format has a checker (for the manifest).
        layer_precisions: what a mixed recipe (``export --mixed``) may give a layer.
    """

    name: Format
    title: str
    accepts: frozenset[str]
    convert: Callable[..., bytes]
    run: Callable[..., np.ndarray]
    io_details: Callable[[bytes], TensorIO]
    recipe: Callable[[ExportOptions], QuantRecipe | None] = lambda options: None
    mobile: Callable[[bytes], tuple[MobileVerdict, ...]] = lambda data: ()
    #: the precisions a mixed recipe may give a layer in this format
    layer_precisions: frozenset[LayerPrecision] = frozenset()

    def layout(self, options: ExportOptions) -> Layout:
        return options.layout if "layout" in self.accepts else Layout.NHWC

    def io_type(self, options: ExportOptions) -> IoType:
        return options.io_type if "io_type" in self.accepts else IoType.FLOAT
