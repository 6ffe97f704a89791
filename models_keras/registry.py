"""The model registry: every network of the zoo with its knobs and its paper's figures.

A family module declares a builder with :func:`register_model`; registering a model
enrols it in the generated tests (``tests/test_zoo.py``) and in ``mobilectl models``.
Knob names are shared across families (``width_multiplier``, ``resolution``,
``groups``, ``num_classes``, ``include_top``, ``dropout``).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mobilectl.core.errors import UserError, nearest
from mobilectl.core.manifest import Normalization

#: Family modules imported on first use of the registry (keras is imported with them).
FAMILY_MODULES: tuple[str, ...] = (
    "models_keras.mobilenet_v1",
    "models_keras.mobilenet_v2",
    "models_keras.mobilenet_v3",
    "models_keras.shufflenet_v1",
    "models_keras.shufflenet_v2",
    "models_keras.squeezenet",
    "models_keras.mnasnet",
    "models_keras.efficientnet",
    "models_keras.xception",
    "models_keras.mixnet",
    "models_keras.effnet",
    "models_keras.espnetv2",
    "models_keras.flattened",
    "models_keras.factorized",
    "models_keras.nasnet",
)


class DuplicateModelError(ValueError):
    """Two builders registered under one name (a programming error, not user input)."""


@dataclass(frozen=True)
class Knob:
    """One knob a model takes, with the values it allows.

    Either ``choices`` (a closed set, as the paper defines it) or a ``minimum``/
    ``maximum`` range is given, an integer range optionally in multiples of ``step``;
    ``kind`` is ``int``, ``float``, ``bool`` or ``str``.
    """

    name: str
    kind: type
    default: Any
    choices: tuple[Any, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    step: int | None = None
    short: str = ""
    help: str = ""

    def allowed(self) -> str:
        """Describe the allowed values for an error message or a table."""
        if self.choices:
            return "one of " + ", ".join(_fmt(c) for c in self.choices)
        if self.kind is bool:
            return "true or false"
        kind = {int: "an integer", float: "a number", str: "a string"}[self.kind]
        multiple = f", a multiple of {self.step}" if self.step else ""
        if self.minimum is not None and self.maximum is not None:
            return f"{kind} from {_fmt(self.minimum)} to {_fmt(self.maximum)}{multiple}"
        if self.minimum is not None:
            return f"{kind} >= {_fmt(self.minimum)}"
        return kind

    def validate(self, value: Any, *, model: str) -> Any:
        """Return ``value`` if allowed, else raise :class:`UserError` naming it."""
        if value is None and self.default is None:
            return None
        if not _is_kind(value, self.kind) or not self._in_range(value):
            raise UserError(
                f"{self.name}={_fmt(value)} is not allowed for {model}: {self.allowed()}"
            )
        return float(value) if self.kind is float else value

    def _in_range(self, value: Any) -> bool:
        if self.choices:
            return any(value == c for c in self.choices)
        if self.kind in (int, float):
            if not math.isfinite(value):
                return False
            if self.minimum is not None and value < self.minimum:
                return False
            if self.maximum is not None and value > self.maximum:
                return False
            if self.step and value % self.step:
                return False
        return True


def _is_kind(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, kind)


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return f"{value:.1f}"
    return str(value)


@dataclass(frozen=True)
class PaperFigure:
    """A reference variant and the MACs/params its paper (or reference code) reports.

    Attributes:
        knobs: the variant's knob values, e.g. ``(("width_multiplier", 0.5),)``.
        macs_m: multiply-accumulates in millions, as the paper counts them; None where
            no source counts this variant the papers' way (its params are still pinned).
        params_m: parameters in millions, or None where the paper gives none.
        macs_tolerance: relative tolerance the tests allow (papers round).
        source: where the figure comes from (paper table, reference code).
    """

    knobs: tuple[tuple[str, Any], ...]
    macs_m: float | None
    params_m: float | None = None
    macs_tolerance: float = 0.01
    source: str = ""


@dataclass(frozen=True)
class ModelSpec:
    """A registered network: its builder, knobs and paper figures."""

    name: str
    family: str
    builder: Callable[..., Any]
    knobs: tuple[Knob, ...]
    paper: str
    figures: tuple[PaperFigure, ...] = ()
    keras_twin: Callable[..., Any] | None = None
    description: str = ""
    test_resolution: int = 32
    normalization: Normalization = Normalization()

    @property
    def knob_names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.knobs)

    @property
    def default_resolution(self) -> int:
        return int(self.defaults()["resolution"])

    def knob(self, name: str) -> Knob:
        for knob in self.knobs:
            if knob.name == name:
                return knob
        raise UserError(
            f"{self.name} takes no knob '{name}'{nearest(name, self.knob_names)}; "
            f"its knobs: {', '.join(self.knob_names)}"
        )

    def defaults(self) -> dict[str, Any]:
        return {k.name: k.default for k in self.knobs}

    def resolve(self, **given: Any) -> dict[str, Any]:
        """Validate the given knobs and fill in defaults; raise UserError if bad."""
        knobs = self.defaults()
        for name, value in given.items():
            knobs[name] = self.knob(name).validate(value, model=self.name)
        return knobs

    def variant(self, knobs: Mapping[str, Any]) -> str:
        """A short label for the non-default architecture knobs, e.g. ``w0.5-r160``."""
        parts = []
        for knob in self.knobs:
            value = knobs.get(knob.name, knob.default)
            if knob.short and value != knob.default:
                parts.append(f"{knob.short}{_fmt(value)}")
        return "-".join(parts)

    def figure_for(self, knobs: Mapping[str, Any]) -> PaperFigure | None:
        """The paper figure registered for exactly this variant, if any."""
        ignore = {"dropout"}
        wanted = {k: v for k, v in knobs.items() if k not in ignore}
        for figure in self.figures:
            variant = {**self.defaults(), **dict(figure.knobs)}
            if {k: v for k, v in variant.items() if k not in ignore} == wanted:
                return figure
        return None

    def build(self, *, weights: str | None = None, **given: Any) -> Any:
        """Build the Keras model for the given knobs (validated first), then load a
        local weights file if one is given. Weights are not a knob: they do not change
        the architecture."""
        model = self.builder(**self.resolve(**given))
        if weights is not None:
            load_weights(model, weights)
        return model


def load_weights(model: Any, path: str) -> None:
    """Load a local ``.weights.h5`` file into ``model``; nothing is ever downloaded."""
    file = Path(path)
    if not file.is_file():
        raise UserError(f"--weights {path} is not a file: give a local .weights.h5 path")
    try:
        model.load_weights(file)
    except Exception as exc:  # keras raises several types for mismatched files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"--weights {path} does not fit {model.name}: {first}") from None


_REGISTRY: dict[str, ModelSpec] = {}
_loaded = False


def register_model(
    *,
    name: str,
    family: str,
    knobs: tuple[Knob, ...],
    paper: str,
    figures: tuple[PaperFigure, ...] = (),
    keras_twin: Callable[..., Any] | None = None,
    description: str = "",
    test_resolution: int = 32,
    normalization: Normalization = Normalization(),
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a builder under ``name``; raise DuplicateModelError if taken."""

    def decorate(builder: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY:
            raise DuplicateModelError(f"model '{name}' is already registered")
        _REGISTRY[name] = ModelSpec(
            name=name, family=family, builder=builder, knobs=knobs, paper=paper,
            figures=figures, keras_twin=keras_twin, description=description,
            test_resolution=test_resolution, normalization=normalization,
        )
        return builder

    return decorate


def _ensure_loaded() -> None:
    global _loaded
    if not _loaded:
        for module in FAMILY_MODULES:
            importlib.import_module(module)
        _loaded = True


def list_models() -> list[ModelSpec]:
    """All registered models, in registration order."""
    _ensure_loaded()
    return list(_REGISTRY.values())


def family_representatives() -> list[ModelSpec]:
    """The first registered model of each family, in registration order (one real
    conversion per family in the tests and the op listing)."""
    first: dict[str, ModelSpec] = {}
    for spec in list_models():
        first.setdefault(spec.family, spec)
    return list(first.values())


def get_model_spec(name: str) -> ModelSpec:
    """Look a model up by name; a UserError suggests the nearest name."""
    _ensure_loaded()
    if name not in _REGISTRY:
        raise UserError(
            f"unknown model '{name}'{nearest(name, _REGISTRY)}; "
            "run 'mobilectl models' to list them"
        )
    return _REGISTRY[name]


def build_model(name: str, *, weights: str | None = None, **knobs: Any) -> Any:
    """Build a registered model by name with validated knobs (and local weights)."""
    return get_model_spec(name).build(weights=weights, **knobs)
