"""The registry: duplicates, knob validation, lookup errors."""

from __future__ import annotations

import math

import pytest

from mobilectl.core.errors import UserError
from models_keras import registry
from models_keras.registry import DuplicateModelError, Knob, get_model_spec, list_models


def test_duplicate_name_raises() -> None:
    spec = list_models()[0]
    with pytest.raises(DuplicateModelError, match=spec.name):
        registry.register_model(name=spec.name, family="x", knobs=(), paper="x")(lambda: None)
    assert registry._REGISTRY[spec.name] is spec


@pytest.mark.parametrize("spec", list_models(), ids=lambda s: s.name)
def test_entry_is_complete(spec: registry.ModelSpec) -> None:
    assert spec.family and spec.paper and spec.figures
    assert {"resolution", "num_classes", "include_top"} <= set(spec.knob_names)
    spec.resolve()  # defaults validate against their own knobs
    for figure in spec.figures:
        spec.resolve(**dict(figure.knobs))
        assert (figure.macs_m is None or figure.macs_m > 0) and figure.source


def test_unknown_model_suggests_nearest() -> None:
    with pytest.raises(UserError, match=r"unknown model 'mobilenet_v5' \(did you mean 'mobilenet_v"):
        get_model_spec("mobilenet_v5")


def test_unknown_knob_is_named() -> None:
    with pytest.raises(UserError, match="mobilenet_v2 takes no knob 'groups'"):
        get_model_spec("mobilenet_v2").resolve(groups=3)


@pytest.mark.parametrize("value", [0.0, 7.0, 0.3, math.nan, True, "1.0"])
def test_width_choices_reject(value: object) -> None:
    knob = Knob("width_multiplier", float, 1.0, choices=(0.5, 1.0))
    with pytest.raises(UserError, match="width_multiplier=.* is not allowed for m: one of 0.5, 1.0"):
        knob.validate(value, model="m")


@pytest.mark.parametrize("value", [-1, 0, 31, 2000, 64.0, False])
def test_resolution_range_rejects(value: object) -> None:
    knob = Knob("resolution", int, 224, minimum=32, maximum=1024)
    with pytest.raises(UserError, match=r"resolution=.* an integer from 32 to 1024"):
        knob.validate(value, model="m")


def test_valid_values_pass_through() -> None:
    assert Knob("w", float, 1.0, choices=(0.5, 1.0)).validate(1, model="m") == 1.0
    assert Knob("r", int, 224, minimum=32, maximum=1024).validate(96, model="m") == 96


def test_variant_label_and_figure_lookup() -> None:
    spec = get_model_spec("mobilenet_v1")
    knobs = spec.resolve(width_multiplier=0.5, resolution=160)
    assert spec.variant(knobs) == "w0.5-r160"
    assert spec.variant(spec.resolve()) == ""
    assert spec.figure_for(spec.resolve(width_multiplier=0.5)).macs_m == 149
    assert spec.figure_for(knobs) is None
