"""``mobilectl eval``: top-1/top-5 of each artifact as it runs, on labelled data.

Each artifact runs in its own runtime (LiteRT for .tflite, onnxruntime for .onnx;
int8 inputs quantized and outputs dequantized with the tensors' own scales, as
verification does), next to the Keras float model it came from when that model is
known (trained weights on disk, or a .keras file), so a user sees what each precision
costs on their data. The manifest's normalisation and layout say how to feed each
artifact; a manifest given as the target records the result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from exporter import formats
from mobilectl.core.errors import UserError
from mobilectl.core.manifest import (
    MANIFEST, AccuracyResult, ManifestEntry, Normalization, read_manifest, update_manifest,
)
from mobilectl.core.types import DEFAULT_VAL_SPLIT, Layout
from quant.labelled import (
    Labelled, Split, check_data, load_labelled, read_labels, split,
)

Progress = Callable[[str], None]
ARTIFACT_SUFFIXES = (".tflite", ".onnx")


@dataclass(frozen=True)
class DataSource:
    """Where the labelled data comes from and which part is evaluated: ``val`` if
    given, else the validation part of ``data`` with ``val_split``, else all of it."""

    data: str
    labels: str | None = None
    val: str | None = None
    val_split: float | None = None
    seed: int = 0

    def check(self) -> tuple[str, ...]:
        """Every check that needs no model, before slow work; the class names."""
        names = read_labels(self.labels)
        classes = check_data(self.data, labels=names)
        if self.val is not None:
            val_classes = check_data(self.val, labels=names, flag="--val")
            if val_classes != classes:
                raise UserError(f"--val {self.val}: classes {', '.join(val_classes)} are not "
                                f"those of --data {self.data} ({', '.join(classes)})")
        if self.val is not None and self.val_split is not None:
            raise UserError("--val-split applies without --val: give one of them")
        if self.val_split is not None and not 0 < self.val_split < 1:
            raise UserError(f"--val-split {self.val_split:g} is not allowed: a fraction "
                            "between 0 and 1 (e.g. 0.2)")
        return classes

    def parts(self, *, resolution: int, normalization: Normalization) -> Split:
        """Training and validation parts: ``val`` as validation (all of ``data`` trains),
        else the seeded, stratified ``val_split`` of ``data`` (its default when unset)."""
        names = read_labels(self.labels)
        data = load_labelled(self.data, resolution=resolution, normalization=normalization,
                             labels=names)
        if self.val is None:
            return split(data, val_split=self.val_split or DEFAULT_VAL_SPLIT, seed=self.seed)
        return Split(data, load_labelled(self.val, resolution=resolution,
                                         normalization=normalization, labels=names, flag="--val"))

    def evaluated(self, *, resolution: int, normalization: Normalization) -> Labelled:
        """The part that is evaluated, at the model's resolution and normalisation."""
        names = read_labels(self.labels)
        if self.val is not None:
            return load_labelled(self.val, resolution=resolution, normalization=normalization,
                                 labels=names, flag="--val")
        data = load_labelled(self.data, resolution=resolution, normalization=normalization,
                             labels=names)
        return data if self.val_split is None else split(
            data, val_split=self.val_split, seed=self.seed).val


@dataclass(frozen=True)
class Evaluated:
    """One artifact's accuracy."""

    entry: ManifestEntry
    accuracy: AccuracyResult
    float_note: str  # where the float figures came from, or why there are none

    def as_dict(self) -> dict[str, Any]:
        return {"artifact": self.entry.path, "model": self.entry.label,
                "format": str(self.entry.format), "precision": str(self.entry.precision),
                **self.accuracy.as_dict(), "top1_drop": self.accuracy.top1_drop,
                "float_model": self.float_note}


def top_k(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """The share of rows whose label is among the ``k`` highest scores."""
    best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float(np.mean(np.any(best == labels[:, None], axis=1)))


def targets(given: str) -> tuple[Path, list[ManifestEntry], bool]:
    """The manifest folder, the entries to evaluate, and whether the target was a
    manifest (which then records the results)."""
    path = Path(given)
    if path.suffix.lower() in ARTIFACT_SUFFIXES:
        if not path.is_file():
            raise UserError(f"eval: {given}: no such file")
        entry = read_manifest(path.parent).by_path().get(path.name)
        if entry is None:
            raise UserError(f"eval: {given} has no entry in a {MANIFEST} beside it; eval reads "
                            "each artifact's normalisation and layout from the manifest "
                            "mobilectl export wrote")
        return path.parent, [entry], False
    folder = path if path.is_dir() else path.parent
    if path.is_file() and path.name != MANIFEST or not (folder / MANIFEST).is_file():
        raise UserError(f"eval: {given}: not a .tflite/.onnx artifact, a {MANIFEST} or a "
                        "folder holding one")
    entries = [e for e in read_manifest(folder).artifacts if (folder / e.path).is_file()]
    if not entries:
        raise UserError(f"eval: {given}: the manifest lists no artifact file that exists")
    return folder, entries, True


def resolution_of(entry: ManifestEntry) -> int:
    """The input's height from its recorded shape (NHWC, or NCHW in that layout)."""
    shape = entry.io.inputs[0].shape
    height = shape[2] if entry.layout == Layout.NCHW else shape[1]
    if not isinstance(height, int):
        raise UserError(f"eval: {entry.path} has a dynamic input size {shape}; eval needs "
                        "a fixed resolution")
    return height


def classes_of(entry: ManifestEntry) -> int | None:
    shape = entry.io.outputs[0].shape
    return shape[-1] if shape and isinstance(shape[-1], int) else None


def float_model(entry: ManifestEntry, keras_path: str | None) -> tuple[Any | None, str]:
    """The Keras float model the artifact came from, when it is known, and a note."""
    from exporter.pipeline import build_or_load  # heavy: loads TensorFlow and Keras

    if keras_path is not None:
        return build_or_load(keras_path).model, keras_path
    if entry.origin != "registry":
        if Path(entry.origin).is_file():
            return build_or_load(entry.origin).model, entry.origin
        return None, f"{entry.origin} not found"
    if entry.weights == "random-init":
        return None, "random-init weights: no float model to compare"
    if not Path(entry.weights).is_file():
        return None, f"weights {entry.weights} not found"
    built = build_or_load(entry.model, knobs=dict(entry.knobs), weights=entry.weights)
    return built.model, f"{entry.model} with {entry.weights}"


def evaluate(given: str, source: DataSource, *, keras_path: str | None = None,
             record: bool = True, only: tuple[str, ...] = (),
             progress: Progress = lambda s: None) -> list[Evaluated]:
    """Each artifact of ``given`` (a file, a manifest or its folder; of a manifest only
    the files named in ``only``, if any) on ``source``'s data; a manifest target records
    the results unless ``record`` is False."""
    folder, entries, is_manifest = targets(given)
    classes = source.check()
    entries = [e for e in entries if not only or e.path in only]
    if keras_path is not None and not Path(keras_path).is_file():
        raise UserError(f"--keras {keras_path}: no such file (a .keras model)")
    for entry in entries:  # before anything slow
        outputs = classes_of(entry)
        if outputs is not None and outputs != len(classes):
            raise UserError(f"--data {source.data}: {len(classes)} classes, but {entry.path} "
                            f"has {outputs} outputs; the data's classes must be the model's")
        resolution_of(entry)
    datasets: dict[tuple[int, Normalization], Labelled] = {}
    floats: dict[tuple[str, ...], tuple[np.ndarray | None, str]] = {}
    results = []
    for i, entry in enumerate(entries, start=1):
        key = (resolution_of(entry), entry.normalization)
        if key not in datasets:
            progress(f"load {source.val or source.data} at {key[0]}x{key[0]}")
            datasets[key] = source.evaluated(resolution=key[0], normalization=key[1])
        data = datasets[key]
        progress(f"[{i}/{len(entries)}] {entry.path} on {len(data.y)} samples")
        scores = formats.get(entry.format).run((folder / entry.path).read_bytes(), data.x,
                                               layout=entry.layout)
        reference, note = _float_scores(entry, data, keras_path, floats, progress)
        results.append(Evaluated(entry, _accuracy(data, scores, reference), note))
    if is_manifest and record:
        update_manifest(folder, [replace(r.entry, accuracy=r.accuracy) for r in results])
    return results


def _accuracy(data: Labelled, scores: np.ndarray, reference: np.ndarray | None) -> AccuracyResult:
    """Top-1/top-5 of ``scores`` and of the float model's ``reference`` scores."""
    five = len(data.classes) > 5

    def both(values: np.ndarray) -> tuple[float, float | None]:
        return top_k(values, data.y, 1), top_k(values, data.y, 5) if five else None

    top1, top5 = both(scores)
    float1, float5 = both(reference) if reference is not None else (None, None)
    return AccuracyResult(data.source, data.sha256, len(data.y), len(data.classes), top1, top5,
                          float1, float5)


def _float_scores(entry: ManifestEntry, data: Labelled, keras_path: str | None,
                  seen: dict[tuple[str, ...], tuple[np.ndarray | None, str]],
                  progress: Progress) -> tuple[np.ndarray | None, str]:
    """The float model's scores on ``data``, once per model and data."""
    key = (keras_path or "", entry.origin, entry.model, repr(sorted(entry.knobs.items())),
           entry.weights, data.sha256)
    if key not in seen:
        model, note = float_model(entry, keras_path)
        if model is not None:
            progress(f"Keras float model of {entry.label} on {len(data.y)} samples")
            seen[key] = np.asarray(model.predict(data.x, batch_size=64, verbose=0)), note
        else:
            seen[key] = None, note
    return seen[key]
