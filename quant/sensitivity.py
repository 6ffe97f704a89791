"""Per-layer quantization sensitivity: which layers add the most error under int8.

TensorFlow's quantization debugger runs the int8 model with every quantized op
compared against the same op in float, fed the same (dequantized) inputs, so each
row is the error that op adds by itself. Rows are ranked by RMSE in units of the
op's output quantization step (``rmse / scale``: about 0.29 for pure rounding noise,
larger when the quantized op does worse). The Keras layers of each op are recovered
from TFLite tensor names; naming them in ``--keep-float`` leaves them in float.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mobilectl.core.tfenv import third_party_output
from mobilectl.core.types import Precision
from mobilectl.core.names import layers_in
from quant.tflite_quant import make_converter, representative

IDEAL_RMSE_STEPS = 1 / math.sqrt(12)  # uniform rounding noise, in quantization steps
NO_LAYER = "-"  # an op no Keras layer computes (e.g. the converter's output softmax)
KEEP_FLOAT_FACTOR = 4.0  # suggested above this many times the rounding-noise floor


@dataclass(frozen=True)
class LayerSensitivity:
    """The error one quantized op adds, with the Keras layers it computes."""

    rank: int
    layer: str  # the Keras layer to pass to --keep-float; "-" when no layer owns the op
    layers: tuple[str, ...]
    op: str
    rmse_steps: float
    max_abs_steps: float
    mean_squared_error: float
    scale: float
    tensor: str = ""  # the op's output tensor in the .tflite graph

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def layer_sensitivity(model: Any, calibration: np.ndarray) -> list[LayerSensitivity]:
    """Rank the int8 model's ops by the error each adds (worst first)."""
    import tensorflow as tf  # heavy: only when a model is analysed

    converter = make_converter(model, precision=Precision.INT8, calibration=calibration)
    with third_party_output():  # the converter prints its settings on stdout
        debugger = tf.lite.experimental.QuantizationDebugger(
            converter=converter, debug_dataset=representative(calibration))
        debugger.run()
        dump = io.StringIO()
        debugger.layer_statistics_dump(dump)
    rows = [r for r in csv.DictReader(io.StringIO(dump.getvalue())) if float(r["scale"]) > 0]
    ranked = sorted(rows, key=lambda r: -_steps(r["mean_squared_error"], r["scale"]))
    known = {layer.name for layer in model.layers}
    return [_row(i, r, known) for i, r in enumerate(ranked, start=1)]


def _steps(mse: str, scale: str) -> float:
    return math.sqrt(max(float(mse), 0.0)) / float(scale)


def _row(rank: int, row: dict[str, str], known: set[str]) -> LayerSensitivity:
    names = tuple(n for n in layers_in(row["tensor_name"]) if n in known)
    convs = [n for n in names if n.endswith((".conv", ".fc", ".reduce", ".expand"))]
    return LayerSensitivity(
        rank=rank, layer=(convs or list(names) or [NO_LAYER])[-1], layers=names,
        tensor=row["tensor_name"],
        op=row["op_name"], rmse_steps=_steps(row["mean_squared_error"], row["scale"]),
        max_abs_steps=float(row["max_abs_error"]) / float(row["scale"]),
        mean_squared_error=float(row["mean_squared_error"]), scale=float(row["scale"]),
    )


def suggest_keep_float(rows: list[LayerSensitivity], *, top: int = 3,
                       factor: float = KEEP_FLOAT_FACTOR) -> list[str]:
    """Layers worth keeping in float: the worst ``top`` whose error is ``factor`` times
    the rounding-noise floor or more (ops no layer owns cannot be named)."""
    worst = [r.layer for r in rows
             if r.layer != NO_LAYER and r.rmse_steps >= factor * IDEAL_RMSE_STEPS]
    return list(dict.fromkeys(worst))[:top]


def verdict(rows: list[LayerSensitivity], suggested: list[str]) -> str:
    """One line: what to keep in float, or why nothing is suggested."""
    if suggested:
        return "suggested: " + " ".join(f"--keep-float {name}" for name in suggested)
    if not rows:
        return "no quantized op to rank"
    worst = rows[0]
    return (f"nothing suggested: no layer adds {KEEP_FLOAT_FACTOR:g}x the rounding-noise floor "
            f"({IDEAL_RMSE_STEPS:.2f} rmse/step) or more; the worst, "
            f"{worst.layer if worst.layer != NO_LAYER else worst.tensor} ({worst.op}), adds "
            f"{worst.rmse_steps:.3f}")

