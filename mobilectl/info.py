"""Library side of ``mobilectl models`` and ``mobilectl info``: plain dicts for output."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from models_keras.analysis import analyze_model
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
    info: dict[str, Any] = {
        "model": spec.name, "variant": spec.variant(knobs), "knobs": knobs,
        "input": [knobs["resolution"], knobs["resolution"], 3],
        "macs": cost.macs, "elementwise_ops": cost.elementwise,
        "params": {"total": cost.params, "trainable": cost.trainable_params},
        "memory_access_bytes": {"float32": cost.memory_access_bytes(4),
                                "int8": cost.memory_access_bytes(1)},
        "peak_activation_bytes": {"float32": cost.peak_activation_elems * 4,
                                  "int8": cost.peak_activation_elems},
        "paper": None if figure is None or figure.macs_m is None else {
            "macs_m": figure.macs_m, "params_m": figure.params_m, "source": figure.source,
            "macs_delta_pct": (cost.macs / 1e6 / figure.macs_m - 1) * 100,
        },
    }
    if per_layer:
        info["layers"] = [{
            "name": c.name, "type": c.kind, "output_shape": list(c.output_shape),
            "macs": c.macs, "elementwise": c.elementwise, "params": c.params,
            "trainable_params": c.trainable_params, "output_elems": c.output_elems,
            "memory_access_bytes": {"float32": c.memory_access_bytes(4),
                                    "int8": c.memory_access_bytes(1)},
        } for c in cost.layers]
    return info
