"""``mobilectl profile``: the export-then-measure workflow.

Targets are files, manifests or registry names. A registry name is exported first
(fp32 or int8, default knobs) unless the manifest in the output folder lists current
artifacts for it (same tools, same bytes); then the artifacts run on the profile's
backend and the report puts real speed next to the FLOPs proxy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from device_profiles.harness import (
    Artifact, ProfileOptions, ProfileResult, artifacts_of, check_options, formats_for, measure,
)
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
from models_keras.registry import family_representatives

Progress = Callable[[str], None]
#: what a registry name can be exported at for profiling
PROFILE_PRECISIONS = (Precision.FP32, Precision.INT8)


def check_precision(value: str) -> Precision:
    """``--precision``: fp32 or int8."""
    if value not in PROFILE_PRECISIONS:
        raise UserError(f"--precision {value!r} is not allowed: one of "
                        f"{', '.join(PROFILE_PRECISIONS)}")
    return Precision(value)


def resolve_targets(targets: Sequence[str], *, precision: Precision,
                    formats: tuple[Format, ...], out: Path, progress: Progress) -> list[Artifact]:
    """Files, manifests and registry names (exported, or reused when current) ->
    artifacts. No target: the zoo's default variants (one model per family)."""
    names = list(targets) or [spec.name for spec in family_representatives()]
    found: list[Artifact] = []
    for target in names:
        path = Path(target)
        if path.name == MANIFEST or path.suffix in (".tflite", ".onnx"):
            found += artifacts_of(path)
        elif path.suffix or "/" in target or path.is_dir():
            raise UserError(f"{target}: profile measures .tflite/.onnx files, a manifest.json "
                            f"or registry names; for a Keras model run 'mobilectl export "
                            f"{target}' first, then profile the manifest it writes")
        else:
            found += exported(target, precision=precision, formats=formats, out=out,
                              progress=progress)
    return found


def exported(name: str, *, precision: Precision, formats: tuple[Format, ...], out: Path,
             progress: Progress) -> list[Artifact]:
    """Export ``name`` at its default knobs, unless the manifest lists current files."""
    options = ExportOptions(precision=precision, formats=formats, calib_samples=32, held_out=8)
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
            progress: Progress) -> ProfileResult:
    """Resolve, measure, report. Failures are collected, not raised, so the results of
    the models that finished are kept."""
    prof = load_profile(options.device)
    chosen = check_precision(precision)
    check_options(prof, options)
    artifacts = resolve_targets(targets, precision=chosen, formats=formats_for(prof),
                                out=options.out / "artifacts", progress=progress)
    result = measure(artifacts, prof, options, progress)
    progress(f"write the report to {options.out}")
    result.summary = write_report(
        options.out, result.measurements, device=result.device, failures=result.failures,
        extra={"profile": prof.name, "profile_source": prof.source, **result.summary})
    return result
