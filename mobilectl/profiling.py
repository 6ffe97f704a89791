"""``mobilectl profile``: the export-then-measure workflow.

Targets are files, manifests or registry names. A registry name is exported first
(fp32 or int8, default knobs) unless the manifest in the output folder lists current
artifacts for it (same tools, same bytes); then the artifacts run on the profile's
backend and the report puts real speed next to the FLOPs proxy.

Against float (``--int8``): registry names are exported at both precisions, timed per
layer, and the int8 model's ops are run through TensorFlow's quantization debugger
(:mod:`quant.sensitivity`) so every int8 row carries its float time and its error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from device_profiles.harness import (
    Artifact, ProfileOptions, ProfileResult, artifacts_of, check_options, formats_for, measure,
)
from device_profiles.measurement import Measurement
from device_profiles.per_layer import LayerError
from device_profiles.predictor import error_pct, fitted
from device_profiles.profile import load_profile
from device_profiles.report import write_report
from exporter import formats as format_table
from exporter.artifacts import artifact_name
from exporter.options import ExportOptions
from mobilectl.core.errors import UserError
from mobilectl.core.files import sha256, tool_versions
from mobilectl.core.manifest import MANIFEST, ManifestEntry, read_manifest
from mobilectl.core.tfenv import import_quietly
from mobilectl.core.types import Format, Precision
from mobilectl.predict import check_precision, far_layers, predict_flatbuffer
from models_keras.registry import family_representatives

Progress = Callable[[str], None]

def is_file_target(target: str) -> bool:
    """A ``.tflite``/``.onnx`` file or a manifest (else a registry name); anything else
    that looks like a path is a UserError."""
    path = Path(target)
    if path.name == MANIFEST or path.suffix in (".tflite", ".onnx"):
        return True
    if path.suffix or "/" in target or path.is_dir():
        raise UserError(f"{target}: profile measures .tflite/.onnx files, a manifest.json "
                        f"or registry names; for a Keras model run 'mobilectl export "
                        f"{target}' first, then profile the manifest it writes")
    return False


def resolve_targets(targets: Sequence[str], *, precisions: Sequence[Precision],
                    formats: tuple[Format, ...], out: Path, progress: Progress
                    ) -> dict[str, list[Artifact]]:
    """Files, manifests and registry names (exported at each precision, or reused when
    current) -> their artifacts, by target. No target: the zoo's default variants
    (one model per family)."""
    names = list(targets) or [spec.name for spec in family_representatives()]
    files = {target: is_file_target(target) for target in names}  # every target checked first
    found: dict[str, list[Artifact]] = {}
    for target in names:
        found[target] = artifacts_of(Path(target)) if files[target] else [
            a for precision in precisions
            for a in exported(target, precision=precision, formats=formats, out=out,
                              progress=progress)]
    return found


def exported(name: str, *, precision: Precision, formats: tuple[Format, ...], out: Path,
             progress: Progress) -> list[Artifact]:
    """Export ``name`` at its default knobs, unless the manifest lists current files."""
    options = _export_options(precision, formats)
    wanted = {artifact_name(name, "", options, format_table.get(fmt)) for fmt in formats}
    current = _current(out, wanted)
    if set(current) != wanted:
        import_quietly()  # before Keras loads: its native start-up lines stay off stderr
        from exporter.pipeline import export  # heavy: imports TensorFlow/Keras

        progress(f"export {name} ({precision})")
        export(name, options=options, out=out)
        current = {e.path: e for e in read_manifest(out).artifacts if e.path in wanted}
    else:
        progress(f"reuse {name} ({precision}): manifest is current")
    return [Artifact.of_entry(out / path, current[path]) for path in sorted(current)]


def _current(out: Path, wanted: set[str]) -> dict[str, ManifestEntry]:
    """Entries of ``wanted`` files that are current: same tools, same bytes."""
    if not out.is_dir():
        return {}
    tools = tool_versions()
    return {e.path: e for e in read_manifest(out).artifacts
            if e.path in wanted and e.tools == tools and e.origin == "registry"
            and (out / e.path).is_file() and sha256((out / e.path).read_bytes()) == e.sha256}


def profile(targets: Sequence[str], options: ProfileOptions, *, precision: str = "fp32",
            versus_float: bool = False, progress: Progress) -> ProfileResult:
    """Resolve, measure, report. Failures are collected, not raised, so the results of
    the models that finished are kept. ``versus_float``: registry names at int8 and
    fp32, with the int8 error of every layer (needs ``options.per_layer``)."""
    prof = load_profile(options.device)
    chosen = check_precision(precision)
    check_options(prof, options)
    precisions = (Precision.FP32, Precision.INT8) if versus_float else (chosen,)
    by_target = resolve_targets(targets, precisions=precisions, formats=formats_for(prof),
                                out=options.out / "artifacts", progress=progress)
    result = measure([a for found in by_target.values() for a in found], prof, options,
                     progress)
    errors: dict[str, tuple[LayerError, ...]] = {}
    if versus_float:
        errors, notes = int8_errors(by_target, formats=formats_for(prof), progress=progress)
        result.warnings += notes
    paths = {a.path.name: a.path for found in by_target.values() for a in found}
    predicted, notes = predictions(result.measurements, paths, prof.name, progress)
    result.warnings += notes
    progress(f"write the report to {options.out}")
    result.summary = write_report(
        options.out, result.measurements, device=result.device, failures=result.failures,
        extra={"profile": prof.name, "profile_source": prof.source, **result.summary,
               "predictions": predicted},
        errors=errors)
    return result


def predictions(measurements: Sequence[Measurement], paths: dict[str, Path], device: str,
                progress: Progress) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Each TFLite measurement's prediction from the device's kernel table (none
    without a table), by artifact; and a warning per layer measured far from its
    prediction (usually a fallback kernel)."""
    try:
        predictor, _ = fitted(device)
    except UserError:
        return {}, []
    progress(f"predict from the kernel table of {device}")
    found, notes = {}, []
    for m in measurements:
        if m.fmt != Format.TFLITE or m.artifact not in paths:
            continue
        prediction, layers, _ = predict_flatbuffer(paths[m.artifact].read_bytes(), predictor)
        far = far_layers(layers, m.per_layer) if m.per_layer else []
        found[m.artifact] = {"predicted_ms": prediction.total_ms, "lower_bound": prediction.lower_bound,
                             "missing_kernels": list(prediction.missing),
                             "error_pct": error_pct(prediction.total_ms, m.latency.median_ms),
                             "far_layers": [{"layer": name, "measured_ms": ms, "predicted_ms": guess}
                                            for name, ms, guess in far]}
        notes += [f"{m.artifact}: {name} measured {ms:.3f} ms, predicted {guess:.3f} ms "
                  f"({ms / guess:.1f}x): a fallback kernel?" for name, ms, guess in far]
    return found, notes


def int8_errors(by_target: dict[str, list[Artifact]], *, formats: tuple[Format, ...],
                progress: Progress) -> tuple[dict[str, tuple[LayerError, ...]], list[str]]:
    """The quantization debugger's error per op of each registry name's int8 TFLite
    model, by the label its artifacts carry; and a note for targets it cannot cover."""
    notes = []
    if Format.TFLITE not in formats:
        return {}, ["int8 error per layer comes from the TFLite quantization debugger: "
                    "this profile runs no .tflite, so its rows carry times only"]
    errors = {}
    for target, artifacts in by_target.items():
        labels = {a.model for a in artifacts if a.precision == Precision.INT8}
        if is_file_target(target):
            notes.append(f"{target}: int8 error per layer needs the Keras model (registry "
                         "names only); its rows carry int8 and float times only")
        elif labels:
            progress(f"int8 error of every layer of {target} (quantization debugger)")
            found = layer_errors(target)
            errors.update({label: found for label in labels})
    return errors, notes


def layer_errors(name: str) -> tuple[LayerError, ...]:
    """:func:`quant.sensitivity.layer_sensitivity` of ``name`` at its default knobs,
    on the calibration data its int8 export used."""
    import_quietly()
    from exporter.pipeline import build_or_load, calibrate  # heavy: imports TensorFlow/Keras
    from quant.sensitivity import layer_sensitivity

    options = _export_options(Precision.INT8, (Format.TFLITE,))
    source = build_or_load(name, seed=options.seed)
    rows = layer_sensitivity(source.model, calibrate(source, options).calibration)
    return tuple(LayerError(r.tensor, r.layers, r.rmse_steps) for r in rows)


def _export_options(precision: Precision, formats: tuple[Format, ...]) -> ExportOptions:
    return ExportOptions(precision=precision, formats=formats, calib_samples=32, held_out=8)
