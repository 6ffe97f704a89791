"""``mobilectl predict``: a network's latency on a device before it is measured there.

Stages: resolve the target to a TFLite flatbuffer (a registry model or a ``.keras``
file is built and converted with the exporter's converter, at fp32 or int8, exactly
as ``export`` would; a ``.tflite`` file is read), read its ops as kernels
(:mod:`device_profiles.kernels`), predict each with the device's kernel table
(:mod:`device_profiles.predictor`), tie the ops to the Keras layers they run
(:mod:`device_profiles.per_layer`), and, with ``--measure``, time the same file on the
device and report the error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from device_profiles.kernel_table import KernelTable
from device_profiles.kernels import BUILTIN_FALLBACKS, TYPES_VERSION, KernelOp, kernel_ops
from device_profiles.per_layer import Device, OpTimes, PerLayer, TimedOp, join
from device_profiles.predictor import Prediction, Predictor, error_pct, fitted
from device_profiles.profile import Profile, load_profile
from device_profiles.tflite_cost import analyze, as_graph, file_ops
from mobilectl.calibrate import CalibrateOptions, timer_for
from mobilectl.core.errors import UserError
from mobilectl.core.files import sha256, tool_versions, user_cache, write_atomic
from mobilectl.core.types import Precision

Progress = Callable[[str], None]
#: what a registry name can be exported at to profile or predict it
PRECISIONS = (Precision.FP32, Precision.INT8)
FAR_RATIO = 2.0  # a layer measured this many times slower (or faster) than predicted: flagged
FAR_SHARE = 0.02  # ... and taking at least this share of the measured time


@dataclass(frozen=True)
class PredictOptions:
    device: str = "host"
    precision: Precision = Precision.FP32
    knobs: dict[str, Any] = field(default_factory=dict)
    measure: bool = False
    benchmark_binary: str | None = None
    serials: tuple[str, ...] = ()
    adb: str | None = None
    adb_server: str | None = None


@dataclass
class Predicted:
    """One network's prediction (and measurement, when asked)."""

    label: str
    precision: Precision
    macs: int
    prediction: Prediction
    layers: PerLayer
    table: Path
    measured_ms: float | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def error_pct(self) -> float | None:
        return None if self.measured_ms is None else error_pct(self.prediction.total_ms,
                                                               self.measured_ms)

    def as_dict(self) -> dict[str, Any]:
        p = self.prediction
        return {"model": self.label, "precision": str(self.precision), "macs": self.macs,
                "predicted_ms": p.total_ms, "lower_bound": p.lower_bound,
                "missing_kernels": list(p.missing), "floor_ms": p.floor_ms,
                "measured_ms": self.measured_ms, "error_pct": self.error_pct,
                "table": str(self.table), "layers": self.layers.as_dict()["rows"],
                "warnings": self.warnings}


def check_precision(value: str) -> Precision:
    """``--precision``: fp32 or int8."""
    if value not in PRECISIONS:
        raise UserError(f"--precision {value!r} is not allowed: one of {', '.join(PRECISIONS)}")
    return Precision(value)


def load_predictor(profile: Profile, options: PredictOptions) -> tuple[Predictor, Path, list[str]]:
    """The device's fitted predictor and its table, with a warning when the table was
    measured with another runtime than the device now runs."""
    predictor, path = fitted(profile.name)
    return predictor, path, runtime_warnings(predictor.table, profile, options)


def runtime_warnings(table: KernelTable, profile: Profile, options: PredictOptions) -> list[str]:
    """A warning naming both runtimes when they differ (none when the current one cannot
    be known here: no benchmark_model binary for the phone)."""
    calib = CalibrateOptions(device=profile.name, benchmark_binary=options.benchmark_binary)
    try:
        current = timer_for(profile, calib).runtime()
    except UserError:
        return []
    if current == table.runtime:
        return []
    return [f"the kernel table of {profile.name} was measured with {table.runtime}; the "
            f"device now runs {current}: predictions may be off (recalibrate: mobilectl "
            f"device calibrate --device {profile.name} --restart)"]


def flatbuffer_of(target: str, *, precision: Precision, knobs: dict[str, Any],
                  progress: Progress) -> tuple[bytes, str]:
    """Stage: the TFLite bytes of ``target`` and its label; a registry model or a
    ``.keras`` file is converted as ``export`` converts it (int8: calibrated on seeded
    random inputs, which set the ranges but not the speed)."""
    path = Path(target)
    if path.suffix == ".tflite":
        if knobs or precision != Precision.FP32:
            raise UserError(f"{target} is a .tflite file: its precision and shape are fixed "
                            "(--precision and knobs apply to registry models and .keras files)")
        from device_profiles.tflite_cost import read  # heavy: LiteRT's schema

        return read(path), path.stem
    if path.suffix == ".onnx":
        raise UserError(f"{target}: prediction covers TFLite (the kernels calibrated are "
                        "LiteRT's); export the model to .tflite, or give its registry name")
    from exporter import tflite  # heavy: TensorFlow
    from exporter.pipeline import build_or_load  # heavy: TensorFlow

    source = build_or_load(target, knobs=knobs)
    label = source.name + (f"-{source.variant}" if source.variant else "")
    progress(f"convert {label} to TFLite {precision}")
    calibration = np.random.default_rng(0).normal(size=(8, *source.model.input_shape[1:]))
    data = tflite.convert(source.model, precision=precision,
                          calibration=calibration.astype("float32"))
    return data, label


def predict_flatbuffer(data: bytes, predictor: Predictor) -> tuple[Prediction, PerLayer, int]:
    """Stage: each op predicted and tied to its layers; and the file's MACs."""
    graph = as_graph(data)  # read once for the three readings below
    prediction = predictor.predict(kernel_ops(graph))
    times = OpTimes(tuple(TimedOp(p.op.op, p.op.name, p.ms, None, p.op.index)
                          for p in prediction.ops),
                    "predicted from the kernel table", prediction.total_ms)
    cost = analyze(graph, name="model")
    layers = join(times, file_ops(graph), cost.layers, device=Device(None, None, 4), onnx=False)
    return prediction, layers, cost.macs


def predict(targets: Sequence[str], options: PredictOptions, progress: Progress) -> list[Predicted]:
    """Predict each target on the device (and measure it with ``options.measure``)."""
    profile = load_profile(options.device)
    predictor, path, warnings = load_predictor(profile, options)
    found = []
    for target in targets:
        data, label = flatbuffer_of(target, precision=options.precision, knobs=options.knobs,
                                    progress=progress)
        progress(f"predict {label} on {profile.name}")
        prediction, layers, macs = predict_flatbuffer(data, predictor)
        precision = Precision.INT8 if any(p.op.kernel.endswith(":int8") for p in prediction.ops) \
            else Precision.FP32
        result = Predicted(label, precision, macs, prediction, layers, path, warnings=list(warnings))
        if prediction.lower_bound:
            result.warnings.append(f"{label}: no kernel model for {', '.join(prediction.missing)}; "
                                   "the total leaves them out (a lower bound)")
        result.warnings += fallback_notes(label, prediction)
        if options.measure:
            result.measured_ms = measure_flatbuffer(data, label, profile, options, progress)
        found.append(result)
    return found


def fallback_notes(label: str, prediction: Prediction) -> list[str]:
    """One line per kernel type of ``prediction`` that runs on TFLite's builtin kernel
    instead of XNNPACK: how many ops, and their predicted share of the total."""
    notes = []
    for kernel, (what, why) in sorted(BUILTIN_FALLBACKS.items()):
        ops = [p for p in prediction.ops if p.op.kernel == kernel]
        if ops:
            ms = sum(p.ms or 0.0 for p in ops)
            notes.append(f"{label}: {len(ops)} {what} op(s) run on TFLite's builtin kernel, "
                         f"not XNNPACK ({why}); predicted {ms:.2f} ms of "
                         f"{prediction.total_ms:.2f} ms")
    return notes


def measure_flatbuffer(data: bytes, label: str, profile: Profile, options: PredictOptions,
                       progress: Progress) -> float:
    """Stage: the file's median latency on the device, as ``profile`` measures it."""
    from device_profiles.harness import Artifact, ProfileOptions, measure  # heavy: runs models

    with tempfile.TemporaryDirectory(prefix="mobilectl-predict-") as tmp:
        path = Path(tmp) / f"{label}.tflite"
        path.write_bytes(data)
        run = ProfileOptions(device=profile.name, serials=options.serials,
                             benchmark_binary=options.benchmark_binary, adb=options.adb,
                             adb_server=options.adb_server)
        result = measure([Artifact.of_file(path)], profile, run, progress)
    if not result.measurements:
        raise UserError(f"{label}: measuring failed: {(result.failures or ['no result'])[0]}")
    return result.measurements[0].latency.median_ms


def far_layers(predicted: PerLayer, measured: PerLayer) -> list[tuple[str, float, float]]:
    """Layers whose measured time is ``FAR_RATIO`` from the prediction (and visible):
    (layer text, measured ms, predicted ms). Usually a fallback kernel."""
    by_ops = {row.ops: row for row in predicted.rows if row.ops}
    far = []
    for row in measured.rows:
        guess = by_ops.get(row.ops)
        if guess is None or not row.ms or not guess.ms or (row.share or 0) < FAR_SHARE:
            continue
        ratio = row.ms / guess.ms
        if ratio > FAR_RATIO or ratio < 1 / FAR_RATIO:
            far.append((", ".join(row.layers) or row.name, row.ms, guess.ms))
    return far


def zoo_latencies(device: str, *, precision: Precision, progress: Progress,
                  names: Sequence[str] = ()) -> dict[str, Prediction]:
    """Every registry model at its default knobs, predicted on ``device`` (the ops of
    each converted model are kept in the user cache, keyed by the tools' versions, so
    a second listing converts nothing)."""
    from models_keras.registry import list_models  # heavy: Keras

    profile = load_profile(device)
    predictor, _, _ = load_predictor(profile, PredictOptions(device=device))
    chosen = names or [spec.name for spec in list_models()]
    return {name: predictor.predict(_zoo_ops(name, precision, progress)) for name in chosen}


def _zoo_ops(name: str, precision: Precision, progress: Progress) -> list[KernelOp]:
    key = sha256(json.dumps([name, str(precision), tool_versions(), TYPES_VERSION],
                            sort_keys=True).encode())
    path = user_cache("kernels", "zoo", f"{name}-{precision}-{key[:16]}.json")
    if path.is_file():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            return [KernelOp(o["index"], o["op"], o["kernel"], o["name"], tuple(o["features"]),
                             tuple(o["group"])) for o in json.loads(path.read_text())]
    data, _ = flatbuffer_of(name, precision=precision, knobs={}, progress=progress)
    ops = kernel_ops(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps([dataclasses.asdict(o) for o in ops]).encode())
    return ops
