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
```

Unknown keys are errors (typo safety); every error names the file, the key and what
is allowed. Relative paths are relative to the spec file.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter.artifacts import SAFE_NAME
from exporter.pipeline import FORMATS, IO_TYPES, LAYOUTS, PRECISIONS, Thresholds
from mobilectl.errors import UserError, nearest

ARTIFACT_KEYS = {"name", "model", "keras", "knobs", "weights", "formats", "precisions",
                 "calib", "calib_samples", "io", "layout", "keep_float", "labels",
                 "thresholds", "budgets", "output", "seed"}
DEFAULT_KEYS = ARTIFACT_KEYS - {"name", "model", "keras", "knobs", "weights", "output", "labels"}
THRESHOLD_KEYS = {"max_abs_error", "max_abs_error_fp16", "min_cosine", "min_sqnr_db", "min_top1"}
BUDGET_KEYS = {"max_latency_ms", "max_size_mb"}


@dataclass(frozen=True)
class Budget:
    profile: str
    max_latency_ms: float | None = None
    max_size_mb: float | None = None


@dataclass(frozen=True)
class ArtifactSpec:
    """One entry of the spec: a model, how to export it, what it must satisfy."""

    name: str
    model: str  # registry name or .keras path (absolute)
    knobs: dict[str, Any]
    formats: tuple[str, ...]
    precisions: tuple[str, ...]
    calib: str | None = None
    calib_samples: int = 64
    io: str = "float"
    layout: str = "nhwc"
    keep_float: tuple[str, ...] = ()
    labels: str | None = None
    thresholds: Thresholds = field(default_factory=Thresholds)
    budgets: tuple[Budget, ...] = ()
    output: str | None = None
    seed: int = 0


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
    if not name or not SAFE_NAME.fullmatch(name):
        raise UserError(f"{src}: key '{prefix}name' = {name!r} is not allowed: letters, "
                        "digits, '.', '_', '-'")
    model, keras_file = get("model", str), get("keras", str)
    if bool(model) == bool(keras_file):
        raise UserError(f"{src}: artifact '{name}' needs exactly one of 'model' (a registry "
                        "name) or 'keras' (a .keras file)")
    knobs = dict(get("knobs", dict, {}))
    if keras_file and knobs:
        raise UserError(f"{src}: key '{prefix}knobs': knobs apply to registry models only")
    if get("weights", str):
        knobs["weights"] = str(_path(base, merged["weights"], src, f"{prefix}weights"))
    formats = tuple(get("formats", list, list(FORMATS)))
    precisions = tuple(get("precisions", list, ["fp32"]))
    _each(formats, FORMATS, src, f"{prefix}formats")
    _each(precisions, PRECISIONS, src, f"{prefix}precisions")
    calib = get("calib", str)
    output = get("output", str)
    if output is not None and not SAFE_NAME.fullmatch(output) or (
            output and ".." in output):
        raise UserError(f"{src}: key '{prefix}output' = {output!r} is not allowed: a plain "
                        "file stem (no '/', no '..'): it would write outside --out")
    io, layout = get("io", str, "float"), get("layout", str, "nhwc")
    _each((io,), IO_TYPES, src, f"{prefix}io")
    _each((layout,), LAYOUTS, src, f"{prefix}layout")
    return ArtifactSpec(
        name=name,
        model=model or str(_path(base, keras_file, src, f"{prefix}keras")),
        knobs=knobs, formats=formats, precisions=precisions,
        calib=str(_path(base, calib, src, f"{prefix}calib")) if calib else None,
        calib_samples=get("calib_samples", int, 64), io=io, layout=layout,
        keep_float=tuple(get("keep_float", list, [])),
        labels=str(_path(base, merged["labels"], src, f"{prefix}labels")) if merged.get("labels") else None,
        thresholds=_thresholds(get("thresholds", dict, {}), src, f"{prefix}thresholds."),
        budgets=_budgets(get("budgets", dict, {}), src, f"{prefix}budgets."),
        output=output, seed=get("seed", int, 0),
    )


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", list: "a list", dict: "a table"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _each(values: tuple[Any, ...], allowed: tuple[str, ...], src: str, key: str) -> None:
    for value in values:
        if value not in allowed:
            raise UserError(f"{src}: key '{key}' value {value!r} is not allowed: one of "
                            f"{', '.join(allowed)}")
    if not values:
        raise UserError(f"{src}: key '{key}' is empty: one or more of {', '.join(allowed)}")


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


def _budgets(table: dict[str, Any], src: str, prefix: str) -> tuple[Budget, ...]:
    from device_profiles import profile_names

    budgets = []
    for profile, limits in table.items():
        if profile not in profile_names():
            raise UserError(f"{src}: key '{prefix}{profile}': unknown device profile"
                            f"{nearest(profile, profile_names())}; profiles: "
                            f"{', '.join(profile_names())}")
        _table(limits, f"{prefix}{profile}", src)
        _unknown(limits, BUDGET_KEYS, src, f"{prefix}{profile}.")
        for key, value in limits.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
                raise UserError(f"{src}: key '{prefix}{profile}.{key}' = {value!r} is not "
                                "allowed: a positive number")
        budgets.append(Budget(profile, limits.get("max_latency_ms"), limits.get("max_size_mb")))
    return tuple(budgets)
