"""``mobilectl qat``: quantization-aware fine-tuning, then int8 artifacts that need no
calibration data, each measured on the validation data as it runs.

The model is rewritten by :func:`quant.qat.qat_model` (batch norm folded, per-channel
fake-quantized weights of 8, 4 or 2 bits, moving-average activation ranges), its
ranges set on the training part, fine-tuned there, and saved as a deterministic
``.keras`` file that records how it was made. That file is exported to full-integer
TFLite (the converter reads the trained ranges: no representative dataset) and to
ONNX (QDQ from the same ranges and integer weights), verified against the QAT model
like every artifact, and each artifact's top-1 is measured with ``mobilectl eval``'s
code on the validation part, next to the float model's before training.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from exporter.options import ExportOptions, Thresholds
from exporter.pipeline import build_or_load, export
from mobilectl.core.errors import UserError
from mobilectl.core.files import check_out_dir
from mobilectl.core.manifest import Derivation
from mobilectl.core.tfenv import third_party_output
from mobilectl.core.types import DEFAULT_VAL_SPLIT, Format, Precision
from mobilectl.evaluate import DataSource, evaluate, top_k
from mobilectl.prune import save_keras
from quant.labelled import Labelled
from quant.qat import calibrate_ranges, check_weight_bits, qat_model

Progress = Callable[[str], None]


#: Adam's default learning rate per weight width, from scripts/bench_qat.py on the
#: digits: fine-tuning a converged model at 8 bits wants small steps (5e-4 cost MobileNet
#: V3 Small 1.7 points, 1e-4 none); ternary weights must move further (1e-4 left V2 at
#: 0.74 after 3 epochs, 5e-4 reached 0.96).
DEFAULT_LR = {8: 1e-4, 4: 5e-4, 2: 5e-4}


@dataclass(frozen=True)
class QatOptions:
    """How to fine-tune: weight bits (8, 4, 2), epochs, Adam's learning rate, batch."""

    weight_bits: int = 8
    epochs: int = 3
    learning_rate: float | None = None  # None: DEFAULT_LR for the weight bits
    batch_size: int = 64
    seed: int = 0

    def validate(self) -> None:
        check_weight_bits(self.weight_bits)
        if self.epochs < 0:
            raise UserError(f"--epochs {self.epochs} is not allowed: 0 or more")
        if self.learning_rate is not None and not 0 < self.learning_rate < 1:
            raise UserError(f"--lr {self.learning_rate:g} is not allowed: between 0 and 1")

    @property
    def lr(self) -> float:
        """Adam's learning rate: the one given, else :data:`DEFAULT_LR` for the bits."""
        return self.learning_rate if self.learning_rate is not None else DEFAULT_LR[self.weight_bits]
        if self.batch_size < 1:
            raise UserError(f"--batch-size {self.batch_size} is not allowed: 1 or more")


@dataclass(frozen=True)
class ArtifactAccuracy:
    """One artifact as written and as it runs on the validation part."""

    path: str
    format: str
    bytes: int
    top1: float
    weights: str  # the recipe's weight type (int8, int4, int2)


@dataclass(frozen=True)
class QatReport:
    model: str
    out: str
    keras: str
    options: QatOptions
    data: str
    train_samples: int
    val_samples: int
    float_top1: float  # the source model, before QAT
    qat_top1: float  # the QAT Keras model after fine-tuning
    artifacts: tuple[ArtifactAccuracy, ...]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: The cosine the artifacts of a low-bit QAT model must reach against it. TF's fake
#: quantization and LiteRT's integer kernels differ by rounding (ties, the int32 bias),
#: a step here and there that grows through the layers: on the digits, MobileNet V1
#: 0.25's softmax reached 0.965 with 4-bit weights (it passes 0.98 with 8-bit ones).
LOW_BIT_MIN_COSINE = 0.9


def thresholds_for(weight_bits: int) -> Thresholds:
    """Verification limits of a QAT model's artifacts against the QAT model."""
    return Thresholds() if weight_bits == 8 else Thresholds(min_cosine=LOW_BIT_MIN_COSINE)


def _top1(model: Any, data: Labelled) -> float:
    with third_party_output():  # Keras's retracing warnings go to the log
        scores = np.asarray(model.predict(data.x, batch_size=64, verbose=0))
    return top_k(scores, data.y, 1)


def fine_tune(model: Any, train: Labelled, options: QatOptions) -> None:
    """Activation ranges from the training part, then a few seeded epochs of Adam."""
    import keras  # heavy: only when fine-tuning
    import tensorflow as tf  # heavy: as above

    tf.config.experimental.enable_op_determinism()  # the same inputs give the same model
    keras.utils.set_random_seed(options.seed)
    with third_party_output():
        calibrate_ranges(model, train.x, batch_size=options.batch_size)
        if options.epochs:
            model.compile(optimizer=keras.optimizers.Adam(options.lr),
                          loss="sparse_categorical_crossentropy")
            model.fit(train.x, train.y, epochs=options.epochs, batch_size=options.batch_size,
                      shuffle=True, verbose=0)


def qat(target: str, *, data: str, out: Path, options: QatOptions,
        knobs: dict[str, Any] | None = None, weights: str | None = None,
        labels: str | None = None, val: str | None = None,
        val_split: float = DEFAULT_VAL_SPLIT, progress: Progress = lambda s: None) -> QatReport:
    """Fine-tune ``target`` with fake quantization on ``data``; write the QAT model,
    its int8 TFLite and ONNX artifacts and their manifest into ``out``."""
    options.validate()
    options = replace(options, learning_rate=options.lr)  # the rate used, in the report
    check_out_dir(out)
    source_data = DataSource(data, labels=labels, val=val,
                             val_split=None if val is not None else val_split, seed=options.seed)
    classes = source_data.check()
    progress(f"build {target}")
    source = build_or_load(target, knobs=knobs, weights=weights, seed=options.seed)
    if source.model.output.shape[-1] != len(classes):
        raise UserError(f"--data {data}: {len(classes)} classes, but the model has "
                        f"{source.model.output.shape[-1]} outputs; the data's classes must be "
                        "the model's")
    progress(f"fold batch norm, fake-quantize weights to {options.weight_bits} bits")
    model = qat_model(source.model, weight_bits=options.weight_bits)
    resolution = int(source.model.input.shape[1])
    progress(f"load {data} at {resolution}x{resolution}")
    parts = source_data.parts(resolution=resolution, normalization=source.normalization)
    float_top1 = _top1(source.model, parts.val)
    progress(f"quantization-aware fine-tuning, {options.epochs} epoch(s) on "
             f"{len(parts.train.y)} samples")
    fine_tune(model, parts.train, options)
    keras_path = out / f"{source.name}-qat{options.weight_bits}.keras"
    made = Derivation(source.origin if source.origin != "registry" else source.name, "qat",
                      None, options.epochs, parts.val.sha256, source.normalization,
                      weight_bits=options.weight_bits)
    out.mkdir(parents=True, exist_ok=True)
    save_keras(model, keras_path, made)
    artifacts = _export_and_measure(keras_path, parts.val, out, source_data, options, progress)
    return QatReport(source.name, str(out), str(keras_path), options, data,
                     len(parts.train.y), len(parts.val.y), float_top1, _top1(model, parts.val),
                     artifacts)


def _export_and_measure(keras_path: Path, val: Labelled, out: Path, source: DataSource,
                        options: QatOptions, progress: Progress) -> tuple[ArtifactAccuracy, ...]:
    """int8 TFLite and ONNX of the QAT model, verified on validation inputs, then
    measured on the validation part."""
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "val.npy"
        np.save(inputs, val.x.astype(np.float32))
        held_out = min(32, len(val.y) - 1)
        done = export(str(keras_path), options=ExportOptions(
            precision=Precision.INT8, formats=(Format.TFLITE, Format.ONNX), calib=str(inputs),
            calib_samples=1, held_out=held_out, seed=options.seed,
            thresholds=thresholds_for(options.weight_bits)), out=out, progress=progress)
    written = tuple(entry.path for entry in done.entries)
    results = evaluate(str(out), source, record=True, only=written, progress=progress)
    return tuple(ArtifactAccuracy(r.entry.path, str(r.entry.format), r.entry.bytes,
                                  r.accuracy.top1, r.entry.quantization.weights
                                  if r.entry.quantization else "float") for r in results)
