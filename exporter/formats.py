"""The format table: one row per artifact format, each from its own module
(:mod:`exporter.tflite`, :mod:`exporter.onnx`). The pipeline asks this table, never
branches on a format's name."""

from __future__ import annotations

from exporter import onnx, tflite
from exporter.options import ExportFormat, ExportOptions
from mobilectl.core.errors import UserError
from mobilectl.core.types import CalibrationMethod, Format, IoType, Layout, QuantFormat

FORMATS: dict[Format, ExportFormat] = {row.name: row for row in (tflite.FORMAT, onnx.FORMAT)}

#: option -> (its flag, its default): an option away from its default needs a format
#: that accepts it.
_OPTION_FLAGS = {"io_type": ("--io", IoType.FLOAT), "layout": ("--layout", Layout.NCHW),
                 "calib_method": ("--calib-method", CalibrationMethod.MINMAX),
                 "quant_format": ("--quant-format", QuantFormat.QDQ),
                 "symmetric": ("--symmetric", False), "sparse": ("--sparse", False)}


#: why a format takes fewer per-layer precisions than TFLite
LAYER_PRECISION_LIMITS = {Format.ONNX: "onnxruntime's CPU kernels have no 16-bit-activation "
                                       "or 4-bit-weight convolutions (they would run in float)"}


def get(fmt: Format) -> ExportFormat:
    """The table row of ``fmt``."""
    return FORMATS[fmt]


def check(options: ExportOptions) -> None:
    """All of ``options``' rules: the format-free ones, then that every option set away
    from its default is accepted by one of the chosen formats."""
    options.validate()
    chosen = [FORMATS[f] for f in options.formats]
    for option, (flag, default) in _OPTION_FLAGS.items():
        value = getattr(options, option)
        if value != default and not any(option in row.accepts for row in chosen):
            takers = " and ".join(row.title for row in FORMATS.values() if option in row.accepts)
            shown = flag if isinstance(value, bool) else f"{flag} {value}"
            raise UserError(f"{shown} applies to {takers} only; the formats chosen "
                            f"are {', '.join(options.formats)}")
    for row in chosen:
        refused = [(n, p) for n, p in options.layer_precisions if p not in row.layer_precisions]
        if refused:
            allowed = ", ".join(sorted(row.layer_precisions)) or "none"
            raise UserError(f"{row.title} takes {allowed} per layer, not {refused[0][1]} "
                            f"({refused[0][0]}): {LAYER_PRECISION_LIMITS.get(row.name, '')}"
                            .rstrip(": "))
