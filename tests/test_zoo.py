"""Tests generated from the registry: registering a model enrols it here.

For every registered variant with a paper figure: MACs within the figure's tolerance,
params exactly equal to the keras.applications twin where one exists (else within 2%
of the paper's learnable params). For every model: it builds and runs at a small resolution with the
right output shape, and its layer names are explicit, hierarchical and stable.
"""

from __future__ import annotations

import re

import keras
import numpy as np
import pytest

from models_keras.analysis import analyze_model
from models_keras.registry import ModelSpec, PaperFigure, list_models

SPECS = list_models()
FIGURES = [(s, f) for s in SPECS for f in s.figures]


def _figure_id(pair: tuple[ModelSpec, PaperFigure]) -> str:
    spec, figure = pair
    return spec.name + "-" + ("-".join(f"{k}{v}" for k, v in figure.knobs) or "default")


def _network_params(model: keras.Model) -> int:
    """Params of a keras.applications model without its input-preprocessing layers
    (EfficientNet's Normalization keeps 7 statistics that belong to no conv)."""
    skip = (keras.layers.Normalization, keras.layers.Rescaling)
    return sum(layer.count_params() for layer in model.layers if not isinstance(layer, skip))


@pytest.mark.parametrize("pair", FIGURES, ids=[_figure_id(p) for p in FIGURES])
def test_macs_and_params_match_paper(pair: tuple[ModelSpec, PaperFigure]) -> None:
    spec, figure = pair
    knobs = spec.resolve(**dict(figure.knobs))
    model = spec.builder(**knobs)
    cost = analyze_model(model)
    if figure.macs_m is not None:
        assert cost.macs / 1e6 == pytest.approx(figure.macs_m, rel=figure.macs_tolerance)
    assert cost.params == model.count_params()
    if spec.keras_twin is not None:
        assert cost.params == _network_params(spec.keras_twin(**knobs))
    elif figure.params_m is not None:  # papers count learnable weights only
        assert cost.trainable_params / 1e6 == pytest.approx(figure.params_m, rel=0.02)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_builds_and_runs_small(spec: ModelSpec) -> None:
    res = spec.test_resolution
    model = spec.build(resolution=res, num_classes=10)
    x = np.random.default_rng(0).uniform(-1, 1, (2, res, res, 3)).astype("float32")
    y = model(x, training=False)
    assert tuple(y.shape) == (2, 10)
    np.testing.assert_allclose(np.sum(np.asarray(y), axis=-1), 1.0, rtol=1e-5)
    headless = spec.build(resolution=res, include_top=False)
    assert len(headless.output.shape) == 4 and "classifier.fc" not in _names(headless)


def _names(model: keras.Model) -> list[str]:
    return [layer.name for layer in model.layers]


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_layer_names_are_explicit_and_stable(spec: ModelSpec) -> None:
    first = spec.build(resolution=spec.test_resolution)
    second = spec.build(resolution=spec.test_resolution)
    assert _names(first) == _names(second)
    pattern = re.compile(r"^(input|stem|stage\d+|cell\d+|head|classifier)(\.[a-z0-9_]+)*$")
    for layer in first.layers:
        assert pattern.match(layer.name), layer.name
        auto = _snake(type(layer).__name__)
        assert not re.fullmatch(rf"{auto}(_\d+)?", layer.name), f"auto-named {layer.name}"
    assert len(set(_names(first))) == len(first.layers)
