"""The build spec: ``mobilectl.toml`` or ``[tool.mobilectl]`` in an app's pyproject.toml.

```toml
[defaults]                       # optional, applies to every artifact
formats = ["tflite", "onnx"]
precisions = ["int8"]

[[artifact]]
name = "classifier"              # unique; what --only selects
model = "mobilenet_v2"           # a registry name, or: keras = "models/mine.keras"
knobs = { width_multiplier = 0.5, resolution = 160 }
weights = "weights/classifier.weights.h5"
calib = "data/calib"             # folder of images or .npy/.npz; default: bundled photos
[artifact.thresholds]
min_sqnr_db = 15
[artifact.budgets.pixel]         # per device profile
max_latency_ms = 25
max_size_mb = 4
max_regression_pct = 5           # vs --baseline: fail only on a significant slowdown
require_delegate = "gpu"         # the whole graph on the GPU (benchmark_model's report)
confidence = 0.95                # of that judgement
[artifact.eval]                  # accuracy of every artifact on labelled data
data = "data/val"                # one sub-folder per class, or a .npz with x and y
min_top1 = 0.9                   # fractions
max_top1_drop = 0.02             # the float model's top-1 minus the artifact's
```

Unknown keys are errors (typo safety); every error names the file, the key and what
is allowed. Relative paths are relative to the spec file.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from device_profiles import profile_names
from exporter import formats as format_table
from exporter.options import ExportOptions, Thresholds
from mobilectl.core.errors import UserError, nearest
from mobilectl.core.files import is_safe_name
from quant.labelled import read_labels
from device_profiles.profile import load_profile
from mobilectl.core.types import (
    Activations, CalibrationMethod, Format, IoType, Layout, Precision, QuantFormat, values,
)

ARTIFACT_KEYS = {"name", "model", "keras", "knobs", "weights", "formats", "precisions",
                 "calib", "calib_samples", "io", "layout", "keep_float", "labels",
                 "thresholds", "budgets", "output", "seed", "target", "activations",
                 "calib_method", "quant_format", "symmetric", "fuse_hard_swish", "sparse",
                 "eval"}
DEFAULT_KEYS = ARTIFACT_KEYS - {"name", "model", "keras", "knobs", "weights", "output", "labels",
                                "eval"}
EVAL_KEYS = {"data", "val", "val_split", "min_top1", "max_top1_drop"}
THRESHOLD_KEYS = {"max_abs_error", "max_abs_error_fp16", "min_cosine", "min_sqnr_db", "min_top1"}
BUDGET_KEYS = {"max_latency_ms", "max_size_mb", "max_regression_pct", "confidence",
               "require_delegate"}
E = TypeVar("E", bound=StrEnum)


@dataclass(frozen=True)
class Budget:
    profile: str
    max_latency_ms: float | None = None
    max_size_mb: float | None = None
    max_regression_pct: float | None = None  # slower than the baseline by more: a failure
    confidence: float = 0.95  # how sure the regression must be
    require_delegate: str | None = None  # e.g. "gpu": the whole graph must run on it

    @property
    def measures_latency(self) -> bool:
        return self.max_latency_ms is not None or self.max_regression_pct is not None


@dataclass(frozen=True)
class EvalGate:
    """``[artifact.eval]``: accuracy on labelled data, measured on every artifact
    (``mobilectl eval``), with the limits it must meet (fractions, e.g. 0.9)."""

    data: str
    labels: str | None = None  # the artifact's labels file: the classes' order
    val: str | None = None
    val_split: float | None = None
    min_top1: float | None = None
    max_top1_drop: float | None = None  # float model's top-1 minus the artifact's


@dataclass(frozen=True)
class ArtifactSpec:
    """One entry of the spec: a model, how to export it, what it must satisfy.

    ``options`` is the export options template every job of this entry starts from;
    a job sets its precision (:meth:`options_for`).
    """

    name: str
    model: str  # registry name or .keras path (absolute)
    knobs: dict[str, Any]
    precisions: tuple[Precision, ...]
    options: ExportOptions
    weights: str | None = None
    budgets: tuple[Budget, ...] = ()
    eval: EvalGate | None = None

    @property
    def is_file(self) -> bool:
        return self.model.endswith(".keras")

    def options_for(self, precision: Precision) -> ExportOptions:
        """The options a job at ``precision`` exports with: exactly those it uses."""
        return replace(self.options, precision=precision).used()


@dataclass(frozen=True)
class BuildSpec:
    source: Path
    artifacts: tuple[ArtifactSpec, ...]


def find_spec(given: str | None) -> Path:
    """``SPEC`` if given, else ./mobilectl.toml, else ./pyproject.toml with [tool.mobilectl]."""
    if given:
        path = Path(given)
        if not path.is_file():
            raise UserError(f"{given}: no such spec file")
        return path
    for candidate in (Path("mobilectl.toml"), Path("pyproject.toml")):
        if candidate.is_file():
            return candidate
    raise UserError("no build spec: give SPEC, or add mobilectl.toml (or [tool.mobilectl] "
                    "in pyproject.toml) here")


def load_spec(path: Path) -> BuildSpec:
    """Parse and check a spec file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML: {exc}") from None
    prefix = ""
    if path.name == "pyproject.toml":
        data = data.get("tool", {}).get("mobilectl")
        prefix = "tool.mobilectl."
        if data is None:
            raise UserError(f"{path}: no [tool.mobilectl] table")
    src = f"{path}"
    _unknown(data, {"defaults", "artifact"}, src, prefix)
    defaults = data.get("defaults", {})
    _table(defaults, f"{prefix}defaults", src)
    _unknown(defaults, DEFAULT_KEYS, src, f"{prefix}defaults.")
    entries = data.get("artifact")
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{src}: key '{prefix}artifact' is missing: give at least one "
                        "[[artifact]] table")
    artifacts = [_artifact(entry, defaults, path.parent, src, f"{prefix}artifact[{i}].")
                 for i, entry in enumerate(entries)]
    names = [a.name for a in artifacts]
    for name in names:
        if names.count(name) > 1:
            raise UserError(f"{src}: artifact name '{name}' is used twice: names must be unique")
    return BuildSpec(path, tuple(artifacts))


def _unknown(data: dict[str, Any], allowed: set[str], src: str, prefix: str) -> None:
    for key in data:
        if key not in allowed:
            raise UserError(f"{src}: unknown key '{prefix}{key}'{nearest(key, allowed)}; "
                            f"allowed: {', '.join(sorted(allowed))}")


def _table(value: Any, key: str, src: str) -> None:
    if not isinstance(value, dict):
        raise UserError(f"{src}: key '{key}' must be a table")


def _artifact(entry: Any, defaults: dict[str, Any], base: Path, src: str,
              prefix: str) -> ArtifactSpec:
    _table(entry, prefix.rstrip("."), src)
    _unknown(entry, ARTIFACT_KEYS, src, prefix)
    merged = {**defaults, **entry}

    def get(key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        value = merged.get(key, default)
        if value is not None and not isinstance(value, kind) or isinstance(value, bool) and kind is int:
            raise UserError(f"{src}: key '{prefix}{key}' = {value!r} is not allowed: "
                            f"{_kind_name(kind)}")
        return value

    name = get("name", str)
    if not name or not is_safe_name(name):
        raise UserError(f"{src}: key '{prefix}name' = {name!r} is not allowed: letters, "
                        "digits, '.', '_', '-'")
    model, keras_file = get("model", str), get("keras", str)
    if bool(model) == bool(keras_file):
        raise UserError(f"{src}: artifact '{name}' needs exactly one of 'model' (a registry "
                        "name) or 'keras' (a .keras file)")
    knobs = dict(get("knobs", dict, {}))
    if keras_file and knobs:
        raise UserError(f"{src}: key '{prefix}knobs': knobs apply to registry models only")
    weights = get("weights", str)
    precisions = tuple(_each(get("precisions", list, ["fp32"]), Precision, src, f"{prefix}precisions"))
    options = _options(get, base, src, prefix)
    for precision in precisions:
        _checked(replace(options, precision=precision).used(), src, name)
    return ArtifactSpec(
        name=name, model=model or str(_path(base, keras_file, src, f"{prefix}keras")),
        knobs=knobs, precisions=precisions, options=options,
        weights=str(_path(base, weights, src, f"{prefix}weights")) if weights else None,
        budgets=_budgets(get("budgets", dict, {}), src, f"{prefix}budgets."),
        eval=_eval(get("eval", dict), get("labels", str), base, src, f"{prefix}eval."))


def _options(get: Callable[..., Any], base: Path, src: str, prefix: str) -> ExportOptions:
    """The export options template of one entry (its precision set per job)."""
    output = get("output", str)
    if output is not None and not is_safe_name(output):
        raise UserError(f"{src}: key '{prefix}output' = {output!r} is not allowed: a plain "
                        "file stem (no '/', no '..'): it would write outside --out")
    calib, labels = get("calib", str), get("labels", str)
    return ExportOptions(
        formats=tuple(_each(get("formats", list, list(values(Format))), Format, src, f"{prefix}formats")),
        calib=str(_path(base, calib, src, f"{prefix}calib")) if calib else None,
        calib_samples=get("calib_samples", int, 64),
        io_type=_each([get("io", str, "float")], IoType, src, f"{prefix}io")[0],
        layout=_each([get("layout", str, "nchw")], Layout, src, f"{prefix}layout")[0],
        keep_float=tuple(get("keep_float", list, [])),
        labels=read_labels(str(_path(base, labels, src, f"{prefix}labels")),
                           flag=f"{src}: key '{prefix}labels'") if labels else (),
        thresholds=_thresholds(get("thresholds", dict, {}), src, f"{prefix}thresholds."),
        output=output, seed=get("seed", int, 0), target=_target(get("target", str), src, prefix),
        activations=_optional(get("activations", str), Activations, src, f"{prefix}activations"),
        calib_method=_each([get("calib_method", str, "minmax")], CalibrationMethod, src,
                           f"{prefix}calib_method")[0],
        quant_format=_optional(get("quant_format", str), QuantFormat, src,
                               f"{prefix}quant_format"),
        symmetric=get("symmetric", bool),
        fuse_hard_activations=get("fuse_hard_swish", bool), sparse=get("sparse", bool, False))


def _target(device: str | None, src: str, prefix: str) -> str:
    """The CPU architecture of the device profile named by ``target`` ("": this machine)."""
    if device is None:
        return ""
    try:
        return load_profile(device).arch
    except UserError as exc:
        raise UserError(f"{src}: key '{prefix}target': {exc}") from None


def _optional(value: str | None, kind: type[E], src: str, key: str) -> E | None:
    return None if value is None else _each([value], kind, src, key)[0]


#: the CLI flag an option error names -> the spec key that sets it (longest first)
FLAG_KEYS = (("--max-abs-error-fp16", "thresholds.max_abs_error_fp16"),
             ("--max-abs-error", "thresholds.max_abs_error"),
             ("--min-cosine", "thresholds.min_cosine"), ("--min-sqnr", "thresholds.min_sqnr_db"),
             ("--min-top1", "thresholds.min_top1"), ("--calib-samples", "calib_samples"),
             ("--keep-float", "keep_float"), ("--layout", "layout"), ("--format", "formats"),
             ("--seed", "seed"), ("--io", "io"), ("--int8", "precisions int8"),
             ("--calib-method", "calib_method"), ("--activations", "activations"),
             ("--quant-format", "quant_format"), ("--symmetric", "symmetric"),
             ("--sparse", "sparse"))


def _checked(options: ExportOptions, src: str, name: str) -> None:
    try:
        format_table.check(options)
    except UserError as exc:
        text = str(exc)
        for flag, key in FLAG_KEYS:
            text = text.replace(flag, key)
        raise UserError(f"{src}: artifact '{name}' ({options.precision}): {text}") from None


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", list: "a list", dict: "a table",
             bool: "true or false"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _each(given: list[Any] | tuple[Any, ...], kind: type[E], src: str, key: str) -> list[E]:
    """Each value as a member of ``kind``; an error names the key and the bad value."""
    allowed = ", ".join(values(kind))
    if not given:
        raise UserError(f"{src}: key '{key}' is empty: one or more of {allowed}")
    bad = [v for v in given if v not in values(kind)]
    if bad:
        raise UserError(f"{src}: key '{key}' value {bad[0]!r} is not allowed: one of {allowed}")
    return [kind(v) for v in given]


def _path(base: Path, value: str, src: str, key: str) -> Path:
    path = (base / value).resolve()
    if not path.exists():
        raise UserError(f"{src}: key '{key}' = {value!r}: no such file or directory")
    return path


def _thresholds(table: dict[str, Any], src: str, prefix: str) -> Thresholds:
    _unknown(table, THRESHOLD_KEYS, src, prefix)
    for key, value in table.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise UserError(f"{src}: key '{prefix}{key}' = {value!r} is not allowed: a number")
    return Thresholds(**{k: float(v) for k, v in table.items()})


def _eval(table: dict[str, Any] | None, labels: str | None, base: Path, src: str,
          prefix: str) -> EvalGate | None:
    if table is None:
        return None
    _unknown(table, EVAL_KEYS, src, prefix)
    if not isinstance(table.get("data"), str):
        raise UserError(f"{src}: key '{prefix}data' is needed: a folder with one sub-folder "
                        "per class, or a .npz with x and y")
    for key in ("val_split", "min_top1", "max_top1_drop"):
        value = table.get(key)
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)
                                  or not 0 <= value <= 1 or key == "val_split" and value in (0, 1)):
            raise UserError(f"{src}: key '{prefix}{key}' = {value!r} is not allowed: a "
                            "fraction between 0 and 1 (e.g. 0.9)")
    val = table.get("val")
    if val is not None and not isinstance(val, str):
        raise UserError(f"{src}: key '{prefix}val' = {val!r} is not allowed: a string")
    return EvalGate(str(_path(base, table["data"], src, f"{prefix}data")),
                    str(_path(base, labels, src, "labels")) if labels else None,
                    str(_path(base, val, src, f"{prefix}val")) if val else None,
                    table.get("val_split"), table.get("min_top1"), table.get("max_top1_drop"))


def _budgets(table: dict[str, Any], src: str, prefix: str) -> tuple[Budget, ...]:
    budgets = []
    for profile, limits in table.items():
        if profile not in profile_names():
            raise UserError(f"{src}: key '{prefix}{profile}': unknown device profile"
                            f"{nearest(profile, profile_names())}; profiles: "
                            f"{', '.join(profile_names())}")
        _table(limits, f"{prefix}{profile}", src)
        _unknown(limits, BUDGET_KEYS, src, f"{prefix}{profile}.")
        delegate = limits.get("require_delegate")
        if delegate is not None:
            allowed = [d for d in load_profile(profile).delegates if d != "cpu"]
            if delegate not in allowed:
                choices = ", ".join(allowed) or f"(none: profile {profile} has no delegate)"
                raise UserError(f"{src}: key '{prefix}{profile}.require_delegate' = "
                                f"{delegate!r} is not allowed: one of {choices}")
        for key, value in limits.items():
            if key == "require_delegate":
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise UserError(f"{src}: key '{prefix}{profile}.{key}' = {value!r} is not "
                                "allowed: a positive number")
        if limits.get("confidence", 0.5) >= 1:
            raise UserError(f"{src}: key '{prefix}{profile}.confidence' = "
                            f"{limits['confidence']!r} is not allowed: between 0 and 1 (e.g. 0.95)")
        budgets.append(Budget(profile, limits.get("max_latency_ms"), limits.get("max_size_mb"),
                              limits.get("max_regression_pct"),
                              float(limits.get("confidence", 0.95)), delegate))
    return tuple(budgets)
