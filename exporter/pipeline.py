"""The export pipeline: build or load -> calibrate -> convert and quantize -> verify ->
write. Each stage is a named function that can be called and tested on its own;
:func:`export` runs them in order and reports progress through a callback. Formats
come from the format table (:mod:`exporter.formats`); nothing here branches on one.
"""

from __future__ import annotations

import json
import logging
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from exporter import formats
from exporter.artifacts import artifact_name, file_model_name
from exporter.options import ExportFormat, ExportOptions, Progress, Thresholds
from mobilectl.core.errors import UserError, VerificationFailed
from mobilectl.core.files import check_out_dir, make_out_dir, sha256, tool_versions, write_atomic
from mobilectl.core.manifest import (
    DERIVATION_MEMBER, Derivation, ManifestEntry, Normalization, TensorIO, VerificationResult,
    update_manifest,
)
from mobilectl.core.types import Format, Layout, Precision
from mobilectl.core.version import __version__
from models_keras.analysis import UnsupportedLayerError, analyze_model, register_cost_rule
import models_keras.layers  # noqa: F401  (registers the zoo's layers: .keras files using them load)
from models_keras.registry import get_model_spec
from quant.calibration import DEFAULT_WARNING, CalibrationSet, check_source, load_calibration
from quant.metrics import compare
from quant.qat import layer_classes as qat_layers
from quant.qat import weight_bits_of

# QAT's layers load from .keras files; its ranges and activations cost no MACs
for _kind in ("range", "hard_sigmoid", "hard_swish"):
    register_cost_rule(qat_layers()[_kind])

log = logging.getLogger(__name__)

OUTPUT_STEP = 1 / 256  # int8's step on a softmax output in [0, 1]

__all__ = ["ExportOptions", "ExportResult", "Thresholds", "VerificationFailed", "export"]


@dataclass(frozen=True)
class SourceModel:
    """The Keras model to export and what the manifest says about it."""

    name: str
    variant: str
    model: Any
    knobs: dict[str, Any]
    weights: str | None
    normalization: Normalization
    macs: int | None
    params: int
    origin: str  # "registry" or the .keras path
    trained: bool  # False: freshly initialised weights (verification not enforced)
    derivation: Derivation | None = None  # a .keras file mobilectl made (pruned)

    @property
    def weights_label(self) -> str:
        return self.weights or ("file" if self.trained else "random-init")


@dataclass(frozen=True)
class Candidate:
    """One converted artifact before it is written."""

    fmt: Format
    precision: Precision
    name: str
    data: bytes
    io: TensorIO
    layout: Layout = Layout.NHWC


@dataclass(frozen=True)
class Check:
    """One verification metric against its limit."""

    metric: str
    limit: str  # ">= 0.98", "<= 0.001"
    ok: bool
    text: str  # how a miss reads


@dataclass(frozen=True)
class Verification:
    metrics: dict[str, float]
    checks: tuple[Check, ...]
    enforced: bool

    @property
    def passed(self) -> bool:
        return all(check.ok for check in self.checks)

    def failures(self) -> list[str]:
        return [check.text for check in self.checks if not check.ok]

    def result(self, held_out: int) -> VerificationResult:
        return VerificationResult(held_out, dict(self.metrics),
                                  {c.metric: c.limit for c in self.checks}, self.passed,
                                  self.enforced)


# ---- stage 1: build or load ------------------------------------------------------

def build_or_load(target: str, *, knobs: dict[str, Any] | None = None,
                  weights: str | None = None, seed: int = 0) -> SourceModel:
    """Build a registry model (seeded initialisation, local weights if given) or load a
    ``.keras`` file with ``safe_mode=True``."""
    import keras  # heavy: TensorFlow/Keras load only when a model is built

    keras.utils.clear_session()  # fresh name counters: same names, same bytes
    keras.utils.set_random_seed(seed)
    if "/" in target or Path(target).suffix:
        if knobs or weights:
            given = ", ".join([*(knobs or {}), *(["weights"] if weights else [])])
            raise UserError(f"{given}: knobs and weights apply to registry models, not "
                            f"to a file ({target})")
        model, name = load_keras_file(Path(target)), file_model_name(Path(target))
        spec_knobs, variant, origin, trained = {}, "", str(target), True
        derivation = read_derivation(Path(target))
        normalization = derivation.normalization if derivation else Normalization()
    else:
        spec = get_model_spec(target)
        spec_knobs = spec.resolve(**(knobs or {}))
        model = spec.build(weights=weights, **spec_knobs)
        name, variant, origin, trained = spec.name, spec.variant(spec_knobs), "registry", bool(weights)
        normalization, derivation = spec.normalization, None
    _check_input(model, target)
    macs, params = _cost(model)
    return SourceModel(name, variant, model, spec_knobs, weights, normalization, macs, params,
                       origin, trained, derivation)


def read_derivation(path: Path) -> Derivation | None:
    """What a .keras file mobilectl made says about how it was made (None: a plain one)."""
    with zipfile.ZipFile(path) as archive:
        if DERIVATION_MEMBER not in archive.namelist():
            return None
        try:
            return Derivation.from_dict(json.loads(archive.read(DERIVATION_MEMBER)))
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(f"{path}: its {DERIVATION_MEMBER} is malformed ({exc})") from None


def _cost(model: Any) -> tuple[int | None, int]:
    """MACs and params; a layer the FLOPs proxy does not know leaves MACs unknown
    (a user's model may hold any Keras layer) instead of stopping the export."""
    try:
        cost = analyze_model(model)
    except UnsupportedLayerError as exc:
        log.warning("MACs unknown: %s", exc)
        return None, int(model.count_params())
    return cost.macs, cost.params


def load_keras_file(path: Path) -> Any:
    import keras  # heavy: TensorFlow/Keras load only when a model is loaded

    _check_keras_file(path)
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # keras raises many types for unloadable files
        text = " ".join(str(exc).split()) or type(exc).__name__
        if "Lambda" in text and "safe_mode" in text:
            raise UserError(f"{path} holds a Lambda layer (arbitrary Python code), which "
                            "mobilectl does not load (safe_mode); replace it with a built-in "
                            "or registered layer and save again") from None
        first = text.split(". ")[0]
        raise UserError(f"{path} cannot be loaded safely (safe_mode=True): {first}") from None


def _check_keras_file(path: Path) -> None:
    """A readable .keras archive, or a UserError saying what it is instead."""
    if path.suffix.lower() in (".h5", ".hdf5"):
        raise UserError(f"{path}: legacy HDF5 models are not supported; load it in Keras and "
                        "save it as .keras (model.save('model.keras'))")
    if path.suffix != ".keras":
        raise UserError(f"{path}: not a model file; give a registry name or a .keras file")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, not a .keras file (a .keras model is one zip "
                        "file written by model.save)")
    if not path.is_file():
        raise UserError(f"{path}: no such file; give a registry name or a .keras file")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path}: not a .keras archive (truncated or corrupt: a .keras file "
                        "is a zip written by model.save)")


def _check_input(model: Any, target: str) -> None:
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[3] != 3 or shape[1] is None or shape[1] != shape[2]:
        raise UserError(f"{target}: input shape {shape} is not supported: "
                        "(batch, N, N, 3) NHWC images with a fixed size N")


def trained_ranges(source: SourceModel, options: ExportOptions) -> ExportOptions:
    """``options`` for ``source``: a quantization-aware model (``mobilectl qat``)
    converts to int8 with the ranges it was trained with, and only to int8."""
    bits = weight_bits_of(source.model)
    if bits is None:
        return options
    if options.precision != Precision.INT8:
        raise UserError(f"{source.origin} is quantization-aware (int{bits} weights, trained "
                        f"ranges): export it with --int8, not as {options.precision}")
    if options.keep_float or options.layer_precisions:
        flag = "--keep-float" if options.keep_float else "--mixed"
        raise UserError(f"{flag} does not apply to {source.origin}: a quantization-"
                        "aware model keeps the precision it was trained with")
    return replace(options, qat_weight_bits=bits)


# ---- stage 2: calibrate ----------------------------------------------------------

def calibrate(source: SourceModel, options: ExportOptions) -> CalibrationSet:
    """Calibration and held-out inputs for ``source`` (disjoint, seeded)."""
    return load_calibration(options.calib, resolution=int(source.model.input_shape[1]),
                            normalization=source.normalization,
                            samples=options.calib_samples, held_out=options.held_out,
                            seed=options.seed)


# ---- stage 3: convert and quantize ------------------------------------------------

def metadata_for(source: SourceModel, options: ExportOptions, row: ExportFormat) -> dict[str, Any]:
    """What every format embeds: name, version, normalisation, labels."""
    return {"name": source.name, "variant": source.variant, "precision": options.precision,
            "producer": f"mobilectl {__version__}", "version": __version__,
            "normalization": source.normalization.as_dict(),
            "layout": row.layout(options), "labels": list(options.labels)}


def convert(source: SourceModel, options: ExportOptions, calib: CalibrationSet,
            row: ExportFormat, progress: Progress) -> Candidate:
    """Convert (and quantize) ``source`` to ``row``'s format."""
    data = row.convert(source.model, options=options, calibration=calib.calibration,
                       metadata=metadata_for(source, options, row), progress=progress)
    name = artifact_name(source.name, source.variant, options, row)
    return Candidate(row.name, options.precision, name, data, row.io_details(data),
                     row.layout(options))


# ---- stage 4: verify -------------------------------------------------------------

#: held-out inputs the Keras model runs at once for the reference outputs: all 32 at
#: 224x224 eagerly took TensorFlow's allocator to 3.3 GB for MobileNet V2; 4 at a time
#: in one traced function take 0.8 GB and 1.0 s (eagerly, 2 at a time: 0.9 GB, 2.8 s)
REFERENCE_BATCH = 4


def reference_outputs(source: SourceModel, calib: CalibrationSet) -> np.ndarray:
    """The Keras float model's outputs on the held-out inputs, a few at a time."""
    import tensorflow as tf  # heavy: loaded already, the model was built with it

    forward = tf.function(lambda x: source.model(x, training=False), reduce_retracing=True)
    x = calib.held_out
    return np.concatenate([np.asarray(forward(x[i:i + REFERENCE_BATCH]), dtype=np.float32)
                           for i in range(0, len(x), REFERENCE_BATCH)])


def verify(candidate: Candidate, reference: np.ndarray, x: np.ndarray, *,
           thresholds: Thresholds, enforced: bool = True) -> Verification:
    """Run the artifact on the held-out inputs and check it against the reference."""
    outputs = formats.get(candidate.fmt).run(candidate.data, x, layout=candidate.layout)
    metrics = compare(reference, outputs)
    return Verification(metrics, checks(candidate.precision, metrics, thresholds), enforced)


def checks(precision: Precision, m: dict[str, float], t: Thresholds) -> tuple[Check, ...]:
    """Quantized: cosine, SQNR, top-1 agreement minimums; float: max abs error."""
    constant = Check("constant_output", "<= 0", m["constant_output"] <= 0,
                     "constant_output: the output is the same for every held-out input "
                     "(e.g. all zeros) while the float model's is not")
    if precision.is_quantized:
        limits = (("cosine", t.min_cosine, ""), ("sqnr_db", t.min_sqnr_db, " dB"),
                  ("top1_agreement", t.min_top1, ""))
        return (*(Check(key, f">= {limit:g}", m[key] >= limit,
                        f"{key} {m[key]:.4g}{unit} is below {limit:g}{unit} by "
                        f"{limit - m[key]:.3g}{unit}") for key, limit, unit in limits), constant)
    limit = t.max_abs_error_fp16 if precision == Precision.FP16 else t.max_abs_error
    err = m["max_abs_error"]
    return (Check("max_abs_error", f"<= {limit:g}", err <= limit,
                  f"max_abs_error {err:.3g} is above {limit:g} by {err - limit:.3g}"), constant)


# ---- stage 5: write --------------------------------------------------------------

def manifest_entry(candidate: Candidate, source: SourceModel, calib: CalibrationSet,
                   check: Verification, options: ExportOptions) -> ManifestEntry:
    """The manifest record of one artifact."""
    row = formats.get(candidate.fmt)
    return ManifestEntry(
        path=candidate.name, format=candidate.fmt, precision=candidate.precision,
        sha256=sha256(candidate.data), bytes=len(candidate.data), model=source.name,
        variant=source.variant, origin=source.origin, knobs=dict(source.knobs),
        weights=source.weights_label, layout=candidate.layout, io_type=row.io_type(options),
        io=candidate.io, macs=source.macs, params=source.params,
        normalization=source.normalization, keep_float=options.keep_float,
        calibration=calib.describe() if candidate.precision == Precision.INT8 else None,
        verification=check.result(int(len(calib.held_out))), tools=tool_versions(),
        quantization=row.recipe(options), mobile=row.mobile(candidate.data),
        derivation=source.derivation, sparse=options.sparse and "sparse" in row.accepts)


def write(out: Path, written: list[tuple[Candidate, ManifestEntry]]) -> None:
    """Write each artifact atomically, then the merged manifest."""
    make_out_dir(out)
    for candidate, _ in written:
        write_atomic(out / candidate.name, candidate.data)
    update_manifest(out, [entry for _, entry in written])


# ---- the whole pipeline ----------------------------------------------------------

@dataclass(frozen=True)
class ExportResult:
    out: Path
    entries: list[ManifestEntry]
    failures: list[str]
    warnings: list[str] = field(default_factory=list)


def export(target: str, *, knobs: dict[str, Any] | None = None, weights: str | None = None,
           options: ExportOptions, out: Path,
           progress: Progress = lambda stage: None) -> ExportResult:
    """Run every stage for every requested format; raise VerificationFailed (after
    writing the artifacts that passed) if an enforced check fails."""
    formats.check(options)
    check_out_dir(out)
    check_source(options.calib)
    progress(f"build {target}")
    source = build_or_load(target, knobs=knobs, weights=weights, seed=options.seed)
    _check_labels(options, source)
    options = trained_ranges(source, options)
    progress("calibrate")
    calib = calibrate(source, options)
    reference = reference_outputs(source, calib)
    passed, failures, constant = [], [], []
    for candidate in _candidates(source, options, calib, progress):
        progress(f"verify {candidate.name}")
        check = verify(candidate, reference, calib.held_out, thresholds=options.thresholds,
                       enforced=source.trained)
        constant += [candidate.name] if check.metrics["constant_output"] else []
        if check.passed or not check.enforced:
            passed.append((candidate, manifest_entry(candidate, source, calib, check, options)))
        else:
            failures += [f"{candidate.name}: {text}" for text in check.failures()]
            failures += _hints(check, reference)
    if passed:
        progress(f"write {len(passed)} artifact(s) to {out}")
        write(out, passed)
    result = ExportResult(out, [entry for _, entry in passed], failures,
                          _warnings(source, calib, options, constant))
    if failures:
        raise VerificationFailed("; ".join(failures))
    return result


def _candidates(source: SourceModel, options: ExportOptions, calib: CalibrationSet,
                progress: Progress) -> Iterator[Candidate]:
    for fmt in options.formats:
        yield convert(source, options, calib, formats.get(fmt), progress)


def _hints(check: Verification, reference: np.ndarray) -> list[str]:
    """Why a top-1 or constant-output check may fail for reasons other than the
    conversion: the float model's own top-1 margin is below int8's output step
    (near-uniform outputs, as untrained or barely trained weights give), so rounding
    alone flattens or reorders the classes."""
    if not {"top1_agreement", "constant_output"} & {c.metric for c in check.checks if not c.ok}:
        return []
    top2 = np.sort(reference.reshape(len(reference), -1), axis=1)[:, -2:]
    margin = float(np.median(top2[:, 1] - top2[:, 0]))
    if margin >= OUTPUT_STEP:
        return []
    return [f"hint: the float model's median top-1 margin is {margin:.2g}, below int8's output "
            f"step ({OUTPUT_STEP:.2g}): its outputs are near-uniform (untrained weights?), which "
            "int8 rounds to a constant or reorders; export trained weights (or, for top-1, "
            "lower --min-top1)"]


def _check_labels(options: ExportOptions, source: SourceModel) -> None:
    classes = int(source.model.output_shape[-1])
    if options.labels and len(options.labels) != classes:
        raise UserError(f"--labels has {len(options.labels)} labels, the model has "
                        f"{classes} outputs: give one label per line, {classes} lines")


def _warnings(source: SourceModel, calib: CalibrationSet, options: ExportOptions,
              constant: list[str]) -> list[str]:
    notes = []
    if calib.kind == "default" and options.precision == Precision.INT8:
        notes.append(DEFAULT_WARNING)
    if calib.skipped:
        notes.append(f"skipped {len(calib.skipped)} undecodable image(s), first: {calib.skipped[0]}")
    if not source.trained:
        notes.append("freshly initialised weights (no --weights): verification metrics "
                     "are reported but not enforced")
    if constant and not source.trained:
        notes.append(f"{', '.join(constant)}: the same output for every input: untrained "
                     "weights give near-uniform outputs that int8's output step rounds to a "
                     "constant; export trained weights (--weights FILE, see "
                     "examples/digits.py) for a meaningful artifact")
    return notes
