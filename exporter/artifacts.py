"""Artifact file names: ``<model>[-<variant>][-<options>]_<precision>.<ext>``.

Every option that changes an artifact's bytes is in its name, so two exports that
differ never share a file: the architecture knobs (the variant, e.g. ``w0.5-r160``),
the ONNX input layout when not the default NCHW (``nhwc``), hard-swish left as
Add/Clip/Mul in ONNX (``hsplain``, the choice for ARM targets), the int8 TFLite I/O type (``ioint8``), the layers
kept in float (``kf`` and a short hash of their names), a calibration sample count
other than the default (``c16``), a seed other than 0 (``seed3``), and for int8 ONNX
int8 activations instead of uint8 (``aint8``) and a calibration method other than
min/max (``entropy``, ``percentile``), the QOperator format (``qoperator``) and
symmetric activations (``sym``). Names are
always plain file names inside the output folder. (Writing, hashing and the manifest
are shared contracts: :mod:`mobilectl.core.files`, :mod:`mobilectl.core.manifest`.)
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from exporter.options import DEFAULT_CALIB_SAMPLES, ExportFormat, ExportOptions
from mobilectl.core.errors import UserError
from mobilectl.core.files import is_safe_name
from mobilectl.core.types import (
    Activations, CalibrationMethod, IoType, Layout, Precision, QuantFormat,
)


def option_tags(options: ExportOptions, row: ExportFormat) -> list[str]:
    """The name parts of the options that change ``row``'s bytes (none at defaults)."""
    tags = []
    if "layout" in row.accepts and options.layout != Layout.NCHW:
        tags.append(str(options.layout))
    if "fuse_hard_activations" in row.accepts and not options.fuse_hard_activations:
        tags.append("hsplain")
    if row.io_type(options) != IoType.FLOAT:
        tags.append(f"io{row.io_type(options)}")
    if options.keep_float:
        names = ",".join(sorted(options.keep_float)).encode()
        tags.append("kf" + hashlib.sha256(names).hexdigest()[:6])
    if options.layer_precisions and row.layer_precisions:
        recipe = ",".join(f"{n}={p}" for n, p in options.layer_precisions).encode()
        tags.append("mx" + hashlib.sha256(recipe).hexdigest()[:6])
    # calibrated int8 (a quantization-aware model brings its own ranges)
    calibrated = options.precision == Precision.INT8 and options.qat_weight_bits is None
    if calibrated and options.calib_samples != DEFAULT_CALIB_SAMPLES:
        tags.append(f"c{options.calib_samples}")
    if options.seed:
        tags.append(f"seed{options.seed}")
    if calibrated and "activations" in row.accepts:
        if options.activations != Activations.UINT8:
            tags.append(f"a{options.activations}")
        if options.calib_method != CalibrationMethod.MINMAX:
            tags.append(str(options.calib_method))
        if options.quant_format != QuantFormat.QDQ:
            tags.append(str(options.quant_format))
        if options.symmetric:
            tags.append("sym")
    return tags


def file_model_name(path: Path) -> str:
    """The model part of the name of an artifact exported from a ``.keras`` file."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem) or "model"


def artifact_name(model: str, variant: str, options: ExportOptions, row: ExportFormat) -> str:
    """The file name of ``model`` at ``variant`` exported with ``options`` to ``row``'s
    format (``options.output`` replaces model and variant), checked to be a plain name."""
    stem = options.output or "-".join(p for p in (model, variant) if p)
    tagged = "-".join([stem, *option_tags(options, row)])
    name = f"{tagged}_{options.precision}.{row.name}"
    if not is_safe_name(name):
        raise UserError(f"artifact name {name!r} is not allowed: letters, digits, '.', '_' "
                        "and '-' only, inside the output folder")
    return name
