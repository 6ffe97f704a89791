"""Library side of ``mobilectl models`` and ``mobilectl info``: plain dicts for output.

``mobilectl info`` takes a registry name or a model file: ``.keras`` (the Keras
proxy), ``.tflite`` or ``.onnx`` (read from the file's graph); one table maps a file
suffix to its reader.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from device_profiles import onnx_cost, tflite_cost
from device_profiles.inspect import load_onnx
from exporter.pipeline import load_keras_file
from mobilectl.core.cost import ModelCost
from mobilectl.core.errors import UserError
from mobilectl.modelfile import check_file
from models_keras.analysis import analyze_model, with_input_shape
from models_keras.registry import Knob, ModelSpec, get_model_spec, list_models


def _knob_text(knob: Knob) -> str:
    if knob.choices:
        return f"{knob.name}: " + ", ".join(f"{c:g}" if isinstance(c, float) else str(c)
                                           for c in knob.choices)
    step = f" (multiples of {knob.step})" if knob.step else ""
    return f"{knob.name}: {knob.minimum:g}-{knob.maximum:g}{step}"


def model_rows() -> list[dict[str, Any]]:
    """One row per registered model, with its default variant's paper figures."""
    rows = []
    for spec in list_models():
        default = spec.figure_for(spec.resolve())
        arch = [k for k in spec.knobs if k.short]
        rows.append({
            "name": spec.name, "family": spec.family, "paper": spec.paper,
            "input": spec.default_resolution,
            "knobs": {k.name: {"default": k.default, "allowed": k.allowed()} for k in spec.knobs},
            "variants_text": "; ".join(_knob_text(k) for k in arch),
            "macs_m": None if default is None else default.macs_m,
            "params_m": None if default is None else default.params_m,
            "figures": [{**asdict(f), "knobs": dict(f.knobs)} for f in spec.figures],
        })
    return rows


def model_info(name: str, *, per_layer: bool, **given: Any) -> dict[str, Any]:
    """Build the model with the given knobs and report the FLOPs proxy as a dict."""
    spec: ModelSpec = get_model_spec(name)
    knobs = spec.resolve(**given)
    cost = analyze_model(spec.builder(**knobs))
    figure = spec.figure_for(knobs)
    info = {
        "model": spec.name, "variant": spec.variant(knobs), "knobs": knobs,
        "input": [knobs["resolution"], knobs["resolution"], 3],
        **cost_info(cost, per_layer=per_layer),
        "paper": None if figure is None or figure.macs_m is None else {
            "macs_m": figure.macs_m, "params_m": figure.params_m, "source": figure.source,
            "macs_delta_pct": (cost.macs / 1e6 / figure.macs_m - 1) * 100,
        },
    }
    return info


def cost_info(cost: ModelCost, *, per_layer: bool) -> dict[str, Any]:
    """The FLOPs proxy's totals (and rows) as plain data; with ops the proxy does not
    know, ``macs_lower_bound`` is true and ``unknown_ops`` counts them by type."""
    info: dict[str, Any] = {
        "macs": cost.macs, "elementwise_ops": cost.elementwise,
        "macs_lower_bound": bool(cost.unknown), "unknown_ops": dict(cost.unknown),
        "params": {"total": cost.params, "trainable": cost.trainable_params},
        "memory_access_bytes": {"float32": cost.memory_access_bytes(4),
                                "int8": cost.memory_access_bytes(1)},
        "peak_activation_bytes": {"float32": cost.peak_activation_elems * 4,
                                  "int8": cost.peak_activation_elems},
    }
    if per_layer:
        info["layers"] = [{
            "name": c.name, "type": c.kind, "output_shape": list(c.output_shape),
            "macs": c.macs, "elementwise": c.elementwise, "params": c.params,
            "trainable_params": c.trainable_params, "output_elems": c.output_elems,
            "memory_access_bytes": {"float32": c.memory_access_bytes(4),
                                    "int8": c.memory_access_bytes(1)},
            "known": c.known,
        } for c in cost.layers]
    return info


def _keras_cost(path: Path, shape: tuple[int, ...] | None) -> ModelCost:
    model = load_keras_file(path)
    if shape is not None:
        _check_rank(shape, tuple(model.input_shape), path)
        model = with_input_shape(model, shape)
    return analyze_model(model, strict=False)


def _check_rank(shape: tuple[int, ...], expected: tuple[Any, ...], path: Path) -> None:
    if len(shape) != len(expected):
        raise UserError(f"--input-shape {','.join(map(str, shape))} has rank {len(shape)}; "
                        f"{path.name} takes rank {len(expected)} {expected}")


def _tflite_cost(path: Path, shape: tuple[int, ...] | None) -> ModelCost:
    del shape  # refused up front by check_file: a .tflite file's shapes are fixed
    return tflite_cost.analyze(tflite_cost.read(path), name=path.name)


def _onnx_cost(path: Path, shape: tuple[int, ...] | None) -> ModelCost:
    return onnx_cost.analyze(load_onnx(path), name=path.name, input_shape=shape)


#: file suffix -> its reader ``(path, input_shape) -> ModelCost``; the suffixes are
#: :data:`mobilectl.modelfile.SUFFIXES`, which the CLI checks without importing this
FILE_READERS: dict[str, Callable[[Path, tuple[int, ...] | None], ModelCost]] = {
    ".keras": _keras_cost, ".tflite": _tflite_cost, ".onnx": _onnx_cost}


def file_info(target: str, *, per_layer: bool,
              input_shape: tuple[int, ...] | None = None) -> dict[str, Any]:
    """The FLOPs proxy of a model file, read by its suffix's reader."""
    path = check_file(target, input_shape=input_shape)
    cost = FILE_READERS[path.suffix.lower()](path, input_shape)
    return {
        "model": cost.name, "file": str(path), "source": path.suffix.lower().lstrip("."),
        "variant": "", "input": list(cost.input_shape),
        **cost_info(cost, per_layer=per_layer),
        "weight_bytes": dict(cost.weight_bytes), "paper": None,
    }
