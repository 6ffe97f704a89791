"""The manifest schema: what is known of every artifact, as frozen dataclasses.

``manifest.json`` sits beside the artifacts it lists. The exporter writes it, the
build merges and publishes it, the latency harness reads it to know a file's model,
precision and MACs. Every reader goes through :class:`ManifestEntry`, never through
the JSON's string keys. ``to_dict``/``from_dict`` keep the JSON layout of version 1.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mobilectl.core.errors import UserError
from mobilectl.core.files import folder_lock, write_atomic
from mobilectl.core.types import (
    Activations, CalibrationMethod, EpFit, Format, IoType, LayerPrecision, Layout, MobileEp,
    Precision,
)

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Normalization:
    """How pixels in 0..255 become model inputs: ``(pixel - mean) / std`` per channel."""

    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)

    def as_dict(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[float]]) -> Normalization:
        return cls(tuple(map(float, data["mean"])), tuple(map(float, data["std"])))


@dataclass(frozen=True)
class TensorInfo:
    """An input or output tensor: name, shape, dtype, and its int8 scale and zero point
    (0 when float)."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str
    scale: float = 0.0
    zero_point: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype,
                "scale": self.scale, "zero_point": self.zero_point}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorInfo:
        return cls(data["name"], tuple(data["shape"]), data["dtype"], float(data["scale"]),
                   int(data["zero_point"]))


@dataclass(frozen=True)
class TensorIO:
    """The inputs and outputs of an artifact."""

    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]


@dataclass(frozen=True)
class CalibrationInfo:
    """Where an int8 artifact's calibration and held-out inputs came from."""

    source: str
    kind: str  # "default", "images" or "array"
    samples: int
    held_out: int
    sha256: str = ""  # of the calibration inputs as the converter saw them ("" if unknown)

    def as_dict(self) -> dict[str, Any]:
        return {"source": self.source, "kind": self.kind, "samples": self.samples,
                "held_out": self.held_out, "sha256": self.sha256}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CalibrationInfo:
        return cls(data["source"], data["kind"], int(data["samples"]), int(data["held_out"]),
                   str(data.get("sha256", "")))


@dataclass(frozen=True)
class QuantRecipe:
    """How an int8 artifact was quantized: activation and weight types, per-channel
    weights, the format (``qdq`` or ``qoperator`` for ONNX, ``tflite``), how activation
    ranges were calibrated, the target (CPU architecture) the recipe was chosen for, and
    whether activations are symmetric."""

    activations: Activations
    weights: str = "int8"
    per_channel: bool = True
    format: str = "qdq"
    calibration_method: CalibrationMethod = CalibrationMethod.MINMAX
    target: str = ""
    symmetric_activations: bool = False
    trained_ranges: bool = False  # ranges learned in quantization-aware training, not calibrated
    # a mixed recipe (export --mixed): the layers not at int8 and their precision
    layers: tuple[tuple[str, LayerPrecision], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        data = {"activations": str(self.activations), "weights": self.weights,
                "per_channel": self.per_channel, "format": self.format,
                "calibration_method": str(self.calibration_method), "target": self.target,
                "symmetric_activations": self.symmetric_activations,
                "trained_ranges": self.trained_ranges}
        if self.layers:
            data["layers"] = {name: str(precision) for name, precision in self.layers}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QuantRecipe:
        return cls(Activations(data["activations"]), data["weights"], bool(data["per_channel"]),
                   data["format"], CalibrationMethod(data["calibration_method"]),
                   data.get("target", ""), bool(data.get("symmetric_activations", False)),
                   bool(data.get("trained_ranges", False)),
                   tuple((name, LayerPrecision(value))
                         for name, value in data.get("layers", {}).items()))


@dataclass(frozen=True)
class MobileVerdict:
    """onnxruntime's usability checker on one ONNX artifact for one mobile EP: how many
    partitions the graph splits into, how many of its nodes the EP takes, its verdict."""

    ep: MobileEp
    partitions: int
    supported_nodes: int
    nodes: int
    fit: EpFit

    @property
    def unsupported_nodes(self) -> int:
        return self.nodes - self.supported_nodes

    def as_dict(self) -> dict[str, Any]:
        return {"ep": str(self.ep), "partitions": self.partitions,
                "supported_nodes": self.supported_nodes, "nodes": self.nodes,
                "fit": str(self.fit)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MobileVerdict:
        return cls(MobileEp(data["ep"]), int(data["partitions"]), int(data["supported_nodes"]),
                   int(data["nodes"]), EpFit(data["fit"]))


@dataclass(frozen=True)
class VerificationResult:
    """How an artifact compared with the Keras float model on held-out inputs."""

    held_out_samples: int
    metrics: Mapping[str, float | None]  # None: infinite (an exact match's SQNR)
    limits: Mapping[str, str]  # metric -> ">= 0.98"
    passed: bool
    enforced: bool

    @property
    def headline(self) -> str:
        """The metric a one-line summary shows: the first failing one, else the first."""
        failing = [m for m in self.failed if m in self.metrics]
        return failing[0] if failing else next(iter(self.limits), "max_abs_error")

    @property
    def failed(self) -> tuple[str, ...]:
        """Metrics outside their limit."""
        return tuple(m for m, limit in self.limits.items() if not _within(self.metrics.get(m), limit))

    def as_dict(self) -> dict[str, Any]:
        metrics = {k: (None if v is None or math.isinf(v) else round(v, 6))
                   for k, v in self.metrics.items()}
        return {"held_out_samples": self.held_out_samples, "metrics": metrics,
                "limits": dict(self.limits), "passed": self.passed, "enforced": self.enforced}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VerificationResult:
        return cls(int(data["held_out_samples"]), dict(data["metrics"]), dict(data["limits"]),
                   bool(data["passed"]), bool(data["enforced"]))


#: the member of a .keras zip in which mobilectl says how it made the model
DERIVATION_MEMBER = "mobilectl.json"


@dataclass(frozen=True)
class Derivation:
    """How mobilectl made a .keras model from another (``mobilectl prune``, ``mobilectl
    qat``): kept in the file, copied into the manifest of every artifact exported from it."""

    source: str  # the model it was made from
    method: str  # "l1", "fpgm" (filters removed), "magnitude" (weights zeroed) or "qat"
    ratio: float | None  # the share of each group's filters removed (l1, fpgm)
    epochs: int  # fine-tuning epochs
    data_sha256: str  # of the labelled data it was fine-tuned and validated on
    normalization: Normalization  # the source model's, which the pruned model keeps
    sparsity: float | None = None  # the share of each kernel's weights zeroed (magnitude)
    weight_bits: int | None = None  # the weight bits quantization-aware training used (qat)

    def as_dict(self) -> dict[str, Any]:
        data = {"source": self.source, "method": self.method, "ratio": self.ratio,
                "epochs": self.epochs, "data_sha256": self.data_sha256,
                "normalization": self.normalization.as_dict(), "sparsity": self.sparsity,
                "weight_bits": self.weight_bits}
        return {key: value for key, value in data.items() if value is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Derivation:
        def share(key: str) -> float | None:
            return None if data.get(key) is None else float(data[key])

        return cls(str(data["source"]), str(data["method"]), share("ratio"),
                   int(data["epochs"]), str(data["data_sha256"]),
                   Normalization.from_dict(data["normalization"]), share("sparsity"),
                   None if data.get("weight_bits") is None else int(data["weight_bits"]))


@dataclass(frozen=True)
class AccuracyResult:
    """Top-1/top-5 of an artifact as it runs, on labelled data, next to the Keras float
    model's on the same data when that model is known (``mobilectl eval``)."""

    data: str  # where the labelled data came from
    sha256: str  # of its inputs and labels
    samples: int
    classes: int
    top1: float
    top5: float | None  # None with 5 classes or fewer (always 1)
    float_top1: float | None = None
    float_top5: float | None = None

    @property
    def top1_drop(self) -> float | None:
        """Float top-1 minus this artifact's (positive: the artifact lost accuracy)."""
        return None if self.float_top1 is None else self.float_top1 - self.top1

    def as_dict(self) -> dict[str, Any]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 6)

        return {"data": self.data, "sha256": self.sha256, "samples": self.samples,
                "classes": self.classes, "top1": rounded(self.top1), "top5": rounded(self.top5),
                "float_top1": rounded(self.float_top1), "float_top5": rounded(self.float_top5)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AccuracyResult:
        return cls(str(data["data"]), str(data["sha256"]), int(data["samples"]),
                   int(data["classes"]), float(data["top1"]), data.get("top5"),
                   data.get("float_top1"), data.get("float_top5"))


def _within(value: float | None, limit: str) -> bool:
    op, _, number = limit.partition(" ")
    if value is None:  # infinite SQNR: an exact match
        return op == ">="
    return value >= float(number) if op == ">=" else value <= float(number)


@dataclass(frozen=True)
class ManifestEntry:
    """One artifact of a manifest. ``cache_key``, ``artifact`` and ``build`` are set by
    ``mobilectl build`` only (and only then written)."""

    path: str
    format: Format
    precision: Precision
    sha256: str
    bytes: int
    model: str
    variant: str
    origin: str  # "registry" or the .keras path
    knobs: Mapping[str, Any]
    weights: str  # the weights file, "file" (a .keras model's own) or "random-init"
    layout: Layout
    io_type: IoType
    io: TensorIO
    macs: int | None
    params: int | None
    normalization: Normalization
    keep_float: tuple[str, ...]
    calibration: CalibrationInfo | None
    verification: VerificationResult
    tools: Mapping[str, str]
    cache_key: str | None = None
    artifact: str | None = None
    build: str | None = None
    quantization: QuantRecipe | None = None
    mobile: tuple[MobileVerdict, ...] = ()  # ONNX: onnxruntime's mobile usability checker
    accuracy: AccuracyResult | None = None  # measured on labelled data (mobilectl eval)
    derivation: Derivation | None = None  # how the source .keras was made (mobilectl prune)
    sparse: bool = False  # TFLite: zero-heavy weights in the sparse encoding (--sparse)

    @property
    def label(self) -> str:
        """``model[-variant]``: how reports name the network."""
        return f"{self.model}-{self.variant}" if self.variant else self.model

    def with_build(self, **changes: Any) -> ManifestEntry:
        """A copy with build fields (``cache_key``, ``artifact``, ``build``) set."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "path": self.path, "format": str(self.format), "precision": str(self.precision),
            "sha256": self.sha256, "bytes": self.bytes, "model": self.model,
            "variant": self.variant, "origin": self.origin, "knobs": dict(self.knobs),
            "weights": self.weights, "layout": str(self.layout), "io_type": str(self.io_type),
            "inputs": [t.as_dict() for t in self.io.inputs],
            "outputs": [t.as_dict() for t in self.io.outputs],
            "macs": self.macs, "params": self.params,
            "normalization": self.normalization.as_dict(), "keep_float": list(self.keep_float),
            "calibration": self.calibration.as_dict() if self.calibration else None,
            "verification": self.verification.as_dict(), "tools": dict(self.tools),
            "quantization": self.quantization.as_dict() if self.quantization else None,
            "mobile": [v.as_dict() for v in self.mobile],
        }
        extra = {"cache_key": self.cache_key, "artifact": self.artifact, "build": self.build,
                 "accuracy": self.accuracy.as_dict() if self.accuracy else None,
                 "derivation": self.derivation.as_dict() if self.derivation else None,
                 "sparse": True if self.sparse else None}
        return {**data, **{k: v for k, v in extra.items() if v is not None}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ManifestEntry:
        """Parse one entry; a KeyError/ValueError means a malformed manifest."""
        calibration = data.get("calibration")
        recipe = data.get("quantization")
        return cls(
            path=data["path"], format=Format(data["format"]),
            precision=Precision(data["precision"]), sha256=data["sha256"],
            bytes=int(data["bytes"]), model=data["model"], variant=data.get("variant", ""),
            origin=data["origin"], knobs=dict(data.get("knobs", {})), weights=data["weights"],
            layout=Layout(data.get("layout", "nhwc")), io_type=IoType(data.get("io_type", "float")),
            io=TensorIO(tuple(map(TensorInfo.from_dict, data["inputs"])),
                        tuple(map(TensorInfo.from_dict, data["outputs"]))),
            macs=data.get("macs"), params=data.get("params"),
            normalization=Normalization.from_dict(data["normalization"]),
            keep_float=tuple(data.get("keep_float", ())),
            calibration=CalibrationInfo.from_dict(calibration) if calibration else None,
            verification=VerificationResult.from_dict(data["verification"]),
            tools=dict(data.get("tools", {})), cache_key=data.get("cache_key"),
            artifact=data.get("artifact"), build=data.get("build"),
            quantization=QuantRecipe.from_dict(recipe) if recipe else None,
            mobile=tuple(MobileVerdict.from_dict(v) for v in data.get("mobile", ())),
            accuracy=AccuracyResult.from_dict(data["accuracy"]) if data.get("accuracy") else None,
            derivation=Derivation.from_dict(data["derivation"]) if data.get("derivation") else None,
            sparse=bool(data.get("sparse", False)))


@dataclass(frozen=True)
class Manifest:
    """The artifacts of one output folder, sorted by path."""

    artifacts: tuple[ManifestEntry, ...] = field(default_factory=tuple)

    def by_path(self) -> dict[str, ManifestEntry]:
        return {e.path: e for e in self.artifacts}

    def to_json(self) -> str:
        data = {"manifest_version": MANIFEST_VERSION,
                "artifacts": [e.to_dict() for e in self.artifacts]}
        return json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"


def read_manifest(folder: Path) -> Manifest:
    """The manifest in ``folder``, or an empty one; a broken file is a UserError."""
    path = folder / MANIFEST
    if not path.is_file():
        return Manifest()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable manifest ({exc}); move it away") from None
    if not isinstance(data, dict) or not isinstance(data.get("artifacts"), list):
        raise UserError(f"{path}: not a mobilectl manifest (no 'artifacts' list)")
    try:
        return Manifest(tuple(ManifestEntry.from_dict(e) for e in data["artifacts"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: a malformed artifact entry ({type(exc).__name__}: {exc})") from None


def update_manifest(folder: Path, entries: Sequence[ManifestEntry]) -> Manifest:
    """Merge ``entries`` into ``folder``'s manifest (same path: replaced), keep only
    entries whose files exist, sort by path, and write it atomically, under the
    folder's lock (concurrent exports into one folder lose no entry)."""
    with folder_lock(folder):  # read-modify-write: one process at a time
        merged = {e.path: e for e in read_manifest(folder).artifacts
                  if (folder / e.path).is_file()}
        merged.update({e.path: e for e in entries})
        manifest = Manifest(tuple(merged[k] for k in sorted(merged)))
        write_atomic(folder / MANIFEST, manifest.to_json().encode())
    return manifest
