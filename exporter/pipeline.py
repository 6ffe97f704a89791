"""The export pipeline: build or load -> calibrate -> convert -> quantize -> verify ->
write. Each stage is a named function that can be called and tested on its own;
:func:`export` runs them in order and reports progress through a callback.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from exporter import artifacts
from exporter.onnx import LAYOUTS
from exporter.tflite import IO_TYPES, PRECISIONS
from mobilectl import __version__
from mobilectl.errors import UserError
from quant.calibration import DEFAULT_WARNING, CalibrationSet, Normalization, load_calibration

log = logging.getLogger(__name__)

FORMATS = ("tflite", "onnx")
QUANTIZED = ("dynamic", "int8")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Thresholds:
    """Verification limits. Float artifacts: max abs error of the outputs; quantized
    (dynamic, int8): cosine similarity, SQNR (dB) and top-1 agreement, all minimums."""

    max_abs_error: float = 1e-3
    max_abs_error_fp16: float = 5e-2  # ONNX fp16 computes in half precision
    min_cosine: float = 0.98
    min_sqnr_db: float = 12.0
    min_top1: float = 0.8


@dataclass(frozen=True)
class ExportOptions:
    """Everything that shapes the artifacts besides the model itself."""

    precision: str = "fp32"
    formats: tuple[str, ...] = FORMATS
    calib: str | None = None
    calib_samples: int = 64
    held_out: int = 32
    io_type: str = "float"
    layout: str = "nhwc"
    keep_float: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    thresholds: Thresholds = field(default_factory=Thresholds)
    seed: int = 0
    output: str | None = None  # file stem instead of <model>[-<variant>]

    def validate(self) -> None:
        """Raise UserError for a bad value or combination, naming what is allowed."""
        _one_of("precision", self.precision, PRECISIONS)
        _one_of("--io", self.io_type, IO_TYPES)
        _one_of("--layout", self.layout, LAYOUTS)
        if not self.formats:
            raise UserError("--format is empty: give tflite, onnx or tflite,onnx")
        for fmt in self.formats:
            _one_of("--format", fmt, FORMATS)
        if self.io_type != "float" and self.precision != "int8":
            raise UserError(f"--io {self.io_type} needs --int8 (only full-integer models "
                            "have integer inputs)")
        if self.io_type != "float" and "tflite" not in self.formats:
            raise UserError(f"--io {self.io_type} applies to TFLite; ONNX QDQ models keep "
                            "float inputs")
        if self.layout == "nchw" and "onnx" not in self.formats:
            raise UserError("--layout nchw applies to ONNX; TFLite inputs are always NHWC")
        if self.keep_float and self.precision != "int8":
            raise UserError("--keep-float needs --int8 (it leaves named layers in float)")
        if not 1 <= self.calib_samples <= 10_000:
            raise UserError(f"--calib-samples {self.calib_samples} is not allowed: "
                            "an integer from 1 to 10000")


def _one_of(flag: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise UserError(f"{flag} {value!r} is not allowed: one of {', '.join(allowed)}")


@dataclass(frozen=True)
class SourceModel:
    """The Keras model to export and what the manifest says about it."""

    name: str
    variant: str
    model: Any
    knobs: dict[str, Any]
    normalization: Normalization
    macs: int | None
    params: int
    origin: str  # "registry" or the .keras path
    trained: bool  # False: freshly initialised weights (verification not enforced)


@dataclass(frozen=True)
class Candidate:
    """One converted artifact before it is written."""

    fmt: str
    precision: str
    name: str
    data: bytes
    io: dict[str, list[dict[str, Any]]]
    layout: str = "nhwc"


@dataclass(frozen=True)
class Verification:
    metrics: dict[str, float]
    checks: dict[str, dict[str, Any]]
    enforced: bool

    @property
    def passed(self) -> bool:
        return all(check["ok"] for check in self.checks.values())

    def failures(self) -> list[str]:
        return [check["text"] for check in self.checks.values() if not check["ok"]]


class VerificationFailed(Exception):
    """An artifact is below a verification threshold (exit code 1, not bad input)."""


# ---- stage 1: build or load ------------------------------------------------------

def build_or_load(target: str, *, knobs: dict[str, Any] | None = None,
                  seed: int = 0) -> SourceModel:
    """Build a registry model (seeded initialisation) or load a ``.keras`` file with
    ``safe_mode=True``."""
    import keras

    keras.utils.clear_session()  # fresh name counters: same names, same bytes
    keras.utils.set_random_seed(seed)
    if "/" in target or Path(target).suffix:
        if knobs:
            raise UserError(f"{', '.join(knobs)}: knobs apply to registry models, not "
                            f"to a file ({target})")
        model, name = _load_keras_file(Path(target)), _file_model_name(Path(target))
        spec_knobs, variant, origin, trained = {}, "", str(target), True
        normalization = Normalization()
    else:
        from models_keras.registry import get_model_spec

        spec = get_model_spec(target)
        spec_knobs = spec.resolve(**(knobs or {}))
        model, name, variant = spec.builder(**spec_knobs), spec.name, spec.variant(spec_knobs)
        origin, trained = "registry", spec_knobs.get("weights") is not None
        normalization = Normalization(tuple(spec.normalization["mean"]),
                                      tuple(spec.normalization["std"]))
    _check_input(model, target)
    macs, params = _cost(model)
    return SourceModel(name, variant, model, spec_knobs, normalization, macs, params, origin,
                       trained)


def _cost(model: Any) -> tuple[int | None, int]:
    """MACs and params; a layer the FLOPs proxy does not know leaves MACs unknown
    (a user's model may hold any Keras layer) instead of stopping the export."""
    from models_keras.analysis import UnsupportedLayerError, analyze_model

    try:
        cost = analyze_model(model)
    except UnsupportedLayerError as exc:
        log.warning("MACs unknown: %s", exc)
        return None, int(model.count_params())
    return cost.macs, cost.params


def _file_model_name(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem) or "model"


def _load_keras_file(path: Path) -> Any:
    import keras

    import models_keras.layers  # noqa: F401  (registers the zoo's own layers)

    if path.suffix != ".keras":
        raise UserError(f"{path}: not a model file; give a registry name or a .keras file")
    if not path.is_file():
        raise UserError(f"{path}: no such file; give a registry name or a .keras file")
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # keras raises many types for unloadable files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{path} cannot be loaded safely (safe_mode=True): {first[:200]}") from None


def _check_input(model: Any, target: str) -> None:
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[3] != 3 or shape[1] is None or shape[1] != shape[2]:
        raise UserError(f"{target}: input shape {shape} is not supported: "
                        "(batch, N, N, 3) NHWC images with a fixed size N")


# ---- stage 2: calibrate ----------------------------------------------------------

def calibrate(source: SourceModel, options: ExportOptions) -> CalibrationSet:
    """Calibration and held-out inputs for ``source`` (disjoint, seeded)."""
    calib = load_calibration(options.calib, resolution=int(source.model.input_shape[1]),
                             normalization=source.normalization,
                             samples=options.calib_samples, held_out=options.held_out,
                             seed=options.seed)
    return calib


# ---- stages 3-4: convert and quantize ---------------------------------------------

def metadata_for(source: SourceModel, options: ExportOptions, fmt: str) -> dict[str, Any]:
    """What both formats embed: name, version, normalisation, labels."""
    return {"name": source.name, "variant": source.variant, "precision": options.precision,
            "producer": f"mobilectl {__version__}", "version": __version__,
            "normalization": source.normalization.as_dict(), "layout":
            options.layout if fmt == "onnx" else "nhwc", "labels": list(options.labels)}


def convert_tflite(source: SourceModel, options: ExportOptions,
                   calib: CalibrationSet) -> Candidate:
    """TFLite via TF's converter; quantization happens inside the converter."""
    from exporter import tflite

    data = tflite.convert(source.model, precision=options.precision,
                          calibration=calib.calibration, io_type=options.io_type,
                          keep_float=options.keep_float)
    data = tflite.embed_metadata(data, metadata_for(source, options, "tflite"))
    name = artifacts.artifact_name(*_stem(source, options, ""), options.precision, "tflite")
    return Candidate("tflite", options.precision, name, data, tflite.io_details(data))


def convert_onnx(source: SourceModel, options: ExportOptions) -> Any:
    """The float ONNX graph (tf2onnx), NHWC or NCHW input."""
    from exporter import onnx as onnx_export

    return onnx_export.convert(source.model, layout=options.layout)


def quantize_onnx(proto: Any, options: ExportOptions, calib: CalibrationSet) -> Any:
    """fp16 / dynamic / int8 (QDQ, per-channel) of the float ONNX graph."""
    from exporter import onnx as onnx_export

    if options.precision == "fp16":
        return onnx_export.to_fp16(proto)
    if options.precision == "dynamic":
        return onnx_export.quantize_dynamic(proto)
    if options.precision == "int8":
        quantized = onnx_export.quantize_int8(proto, calib.calibration, layout=options.layout,
                                              keep_float=options.keep_float)
        return onnx_export.canonicalize(quantized)
    return proto


def onnx_candidate(source: SourceModel, options: ExportOptions, proto: Any) -> Candidate:
    from exporter import onnx as onnx_export

    meta = {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True)
            for k, v in metadata_for(source, options, "onnx").items()}
    data = onnx_export.serialize(onnx_export.embed_metadata(proto, meta))
    name = artifacts.artifact_name(*_stem(source, options, "nchw" if options.layout == "nchw" else ""),
                                   options.precision, "onnx")
    return Candidate("onnx", options.precision, name, data, onnx_export.io_details(data),
                     layout=options.layout)


def _stem(source: SourceModel, options: ExportOptions, suffix: str) -> tuple[str, str]:
    """(model, variant) parts of the file name; ``options.output`` replaces both."""
    if options.output:
        return options.output, suffix
    return source.name, "-".join(p for p in (source.variant, suffix) if p)


# ---- stage 5: verify -------------------------------------------------------------

def reference_outputs(source: SourceModel, calib: CalibrationSet) -> np.ndarray:
    """The Keras float model's outputs on the held-out inputs."""
    return np.asarray(source.model(calib.held_out, training=False), dtype=np.float32)


def run_candidate(candidate: Candidate, x: np.ndarray) -> np.ndarray:
    from exporter import onnx as onnx_export
    from exporter import tflite

    if candidate.fmt == "tflite":
        return tflite.run(candidate.data, x)
    return onnx_export.run(candidate.data, x, layout=candidate.layout)


def verify(candidate: Candidate, reference: np.ndarray, x: np.ndarray, *,
           thresholds: Thresholds, enforced: bool = True) -> Verification:
    """Run the artifact on the held-out inputs and check it against the reference."""
    from quant.metrics import compare

    metrics = compare(reference, run_candidate(candidate, x))
    return Verification(metrics, _checks(candidate.precision, metrics, thresholds), enforced)


def _checks(precision: str, m: dict[str, float], t: Thresholds) -> dict[str, dict[str, Any]]:
    if precision in QUANTIZED:
        limits = (("cosine", t.min_cosine, ""), ("sqnr_db", t.min_sqnr_db, " dB"),
                  ("top1_agreement", t.min_top1, ""))
        return {key: {"limit": f">= {limit:g}", "ok": m[key] >= limit,
                      "text": f"{key} {m[key]:.4g}{unit} is below {limit:g}{unit} by "
                              f"{limit - m[key]:.3g}{unit}"}
                for key, limit, unit in limits}
    limit = t.max_abs_error_fp16 if precision == "fp16" else t.max_abs_error
    err = m["max_abs_error"]
    return {"max_abs_error": {"limit": f"<= {limit:g}", "ok": err <= limit,
                              "text": f"max_abs_error {err:.3g} is above {limit:g} by "
                                      f"{err - limit:.3g}"}}


# ---- stage 6: write --------------------------------------------------------------

def manifest_entry(candidate: Candidate, source: SourceModel, calib: CalibrationSet,
                   check: Verification, options: ExportOptions) -> dict[str, Any]:
    """The manifest record of one artifact."""
    metrics = {k: (None if math.isinf(v) else round(v, 6)) for k, v in check.metrics.items()}
    return {
        "path": candidate.name, "format": candidate.fmt, "precision": candidate.precision,
        "sha256": artifacts.sha256(candidate.data), "bytes": len(candidate.data),
        "model": source.name, "variant": source.variant, "origin": source.origin,
        "knobs": {k: v for k, v in source.knobs.items() if k != "weights"},
        "weights": source.knobs.get("weights") or ("file" if source.trained else "random-init"),
        "layout": candidate.layout, "io_type": options.io_type if candidate.fmt == "tflite" else "float",
        "inputs": candidate.io["inputs"], "outputs": candidate.io["outputs"],
        "macs": source.macs, "params": source.params,
        "normalization": source.normalization.as_dict(),
        "keep_float": list(options.keep_float),
        "calibration": calib.describe() if candidate.precision == "int8" else None,
        "verification": {"held_out_samples": int(len(calib.held_out)), "metrics": metrics,
                         "limits": {k: c["limit"] for k, c in check.checks.items()},
                         "passed": check.passed, "enforced": check.enforced},
        "tools": artifacts.tool_versions(),
    }


def write(out: Path, written: list[tuple[Candidate, dict[str, Any]]]) -> dict[str, Any]:
    """Write each artifact atomically, then the merged manifest."""
    artifacts.make_out_dir(out)
    for candidate, _ in written:
        artifacts.write_atomic(out / candidate.name, candidate.data)
    return artifacts.update_manifest(out, [entry for _, entry in written])


# ---- the whole pipeline ----------------------------------------------------------

@dataclass(frozen=True)
class ExportResult:
    out: Path
    entries: list[dict[str, Any]]
    failures: list[str]
    warnings: list[str] = field(default_factory=list)


def export(target: str, *, knobs: dict[str, Any] | None = None, options: ExportOptions,
           out: Path, progress: Progress = lambda stage: None) -> ExportResult:
    """Run every stage for every requested format; raise VerificationFailed (after
    writing the artifacts that passed) if an enforced check fails."""
    options.validate()
    artifacts.check_out_dir(out)
    progress(f"build {target}")
    source = build_or_load(target, knobs=knobs, seed=options.seed)
    _check_labels(options, source)
    progress("calibrate")
    calib = calibrate(source, options)
    reference = reference_outputs(source, calib)
    warnings = _warnings(source, calib, options)
    passed, failures = [], []
    for candidate in _candidates(source, options, calib, progress):
        progress(f"verify {candidate.name}")
        check = verify(candidate, reference, calib.held_out, thresholds=options.thresholds,
                       enforced=source.trained)
        if check.passed or not check.enforced:
            passed.append((candidate, manifest_entry(candidate, source, calib, check, options)))
        else:
            failures += [f"{candidate.name}: {text}" for text in check.failures()]
    progress(f"write {len(passed)} artifact(s) to {out}")
    write(out, passed)
    result = ExportResult(out, [entry for _, entry in passed], failures, warnings)
    if failures:
        raise VerificationFailed("; ".join(failures))
    return result


def _candidates(source: SourceModel, options: ExportOptions, calib: CalibrationSet,
                progress: Progress):
    for fmt in options.formats:
        if fmt == "tflite":
            progress(f"convert {source.name} to TFLite {options.precision}")
            yield convert_tflite(source, options, calib)
        else:
            progress(f"convert {source.name} to ONNX")
            proto = convert_onnx(source, options)
            if options.precision != "fp32":
                progress(f"quantize ONNX {options.precision}")
            yield onnx_candidate(source, options, quantize_onnx(proto, options, calib))


def _check_labels(options: ExportOptions, source: SourceModel) -> None:
    classes = int(source.model.output_shape[-1])
    if options.labels and len(options.labels) != classes:
        raise UserError(f"--labels has {len(options.labels)} labels, the model has "
                        f"{classes} outputs: give one label per line, {classes} lines")


def _warnings(source: SourceModel, calib: CalibrationSet, options: ExportOptions) -> list[str]:
    notes = []
    if calib.kind == "default" and options.precision == "int8":
        notes.append(DEFAULT_WARNING)
    if calib.skipped:
        notes.append(f"skipped {len(calib.skipped)} undecodable image(s), first: {calib.skipped[0]}")
    if not source.trained:
        notes.append("freshly initialised weights (no weights=PATH): verification metrics "
                     "are reported but not enforced")
    return notes


def with_precision(options: ExportOptions, precision: str) -> ExportOptions:
    """A copy of ``options`` for another precision."""
    return replace(options, precision=precision)
