"""``mobilectl prune``: filter or weight pruning with fine-tuning, measured.

Either the model's filters are ranked and removed (``l1``, ``fpgm``:
:mod:`quant.pruning`), giving a narrower model, or each kernel's smallest weights are
zeroed and held at zero by a mask (``magnitude``: :mod:`quant.sparsity`), giving a
sparse model of the same shape. The result is fine-tuned on the training part of the
labelled data, and the report gives MACs, params, nonzero weights and top-1 on the
validation part before pruning, right after it and after fine-tuning. The result is a
normal ``.keras`` file with the same layer names, written deterministically (no save
date), that exports, verifies and profiles like any other.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from exporter.pipeline import build_or_load
from mobilectl.core.errors import UserError
from mobilectl.core.files import write_atomic
from mobilectl.core.manifest import DERIVATION_MEMBER, Derivation
from mobilectl.core.tfenv import third_party_output
from mobilectl.core.types import DEFAULT_VAL_SPLIT
from mobilectl.evaluate import DataSource, top_k
from models_keras.analysis import analyze_model
from models_keras.training import recalibrate_batch_norm
from quant.labelled import Labelled, Split
from quant.pruning import DIVISOR, Method, apply, plan
from quant.sparsity import Mask, apply_masks, check_sparsity, magnitude_masks, mask_keeper

Progress = Callable[[str], None]


#: The filter share removed when ``--ratio`` is not given (l1, fpgm).
DEFAULT_RATIO = 0.5


@dataclass(frozen=True)
class PruneOptions:
    """How to prune and fine-tune. ``ratio``: the share of each group's filters removed
    (l1, fpgm; :data:`DEFAULT_RATIO` when None); ``sparsity``: the share of each
    kernel's weights zeroed (magnitude, required there)."""

    method: Method = Method.L1
    ratio: float | None = None
    epochs: int = 3
    learning_rate: float = 1e-3
    batch_size: int = 64
    divisor: int = DIVISOR
    seed: int = 0
    sparsity: float | None = None

    def __post_init__(self) -> None:
        if self.method.structured and self.ratio is None:
            object.__setattr__(self, "ratio", DEFAULT_RATIO)

    def validate(self) -> None:
        self._validate_share()
        if self.epochs < 0:
            raise UserError(f"--epochs {self.epochs} is not allowed: 0 or more")
        if not 0 < self.learning_rate < 1:
            raise UserError(f"--lr {self.learning_rate:g} is not allowed: between 0 and 1")
        if self.divisor < 1:
            raise UserError(f"--divisor {self.divisor} is not allowed: 1 or more")

    def _validate_share(self) -> None:
        """``--ratio`` goes with filter pruning, ``--sparsity`` with magnitude."""
        if not self.method.structured:
            if self.ratio is not None:
                raise UserError(f"--ratio applies to --method l1 or fpgm; --method "
                                f"{self.method} zeroes weights: give --sparsity")
            if self.sparsity is None:
                raise UserError("--method magnitude needs --sparsity: the share of each "
                                "kernel's weights set to zero, between 0 and 1 (e.g. 0.75)")
            check_sparsity(self.sparsity)
        elif self.sparsity is not None:
            raise UserError(f"--sparsity applies to --method magnitude; --method "
                            f"{self.method} removes filters: give --ratio")
        elif not 0 < self.ratio < 1:
            raise UserError(f"--ratio {self.ratio:g} is not allowed: a fraction of filters "
                            "between 0 and 1 (e.g. 0.5)")


@dataclass(frozen=True)
class Stage:
    """The model at one point: its cost and its accuracy on the validation part."""

    macs: int
    params: int
    nonzero: int  # weights that are not zero (all of them but for magnitude pruning)
    top1: float
    top5: float | None


@dataclass(frozen=True)
class PruneReport:
    model: str
    out: str
    options: PruneOptions
    data: str
    data_sha256: str
    train_samples: int
    val_samples: int
    before: Stage
    pruned: Stage  # right after removing the filters
    after: Stage  # after fine-tuning
    groups: tuple[dict[str, Any], ...]
    left_whole: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["options"]["method"] = str(self.options.method)
        return data


def _stage(model: Any, val: Labelled) -> Stage:
    with third_party_output():  # Keras's retracing warnings go to the log
        scores = np.asarray(model.predict(val.x, batch_size=64, verbose=0))
    five = top_k(scores, val.y, 5) if len(val.classes) > 5 else None
    nonzero = sum(int(np.count_nonzero(np.asarray(w))) for w in model.get_weights())
    return Stage(int(analyze_model(model).macs), int(model.count_params()), nonzero,
                 top_k(scores, val.y, 1), five)


def fine_tune(model: Any, train: Labelled, options: PruneOptions,
              masks: tuple[Mask, ...] = ()) -> None:
    """A few epochs of Adam on the training part (``masks`` re-applied after every
    step), then batch-norm statistics recomputed on it (a short run leaves
    momentum-averaged statistics unsettled)."""
    import keras  # heavy: only when fine-tuning
    import tensorflow as tf  # heavy: as above

    tf.config.experimental.enable_op_determinism()  # the same inputs give the same model
    keras.utils.set_random_seed(options.seed)
    model.compile(optimizer=keras.optimizers.Adam(options.learning_rate),
                  loss="sparse_categorical_crossentropy")
    with third_party_output():
        model.fit(train.x, train.y, epochs=options.epochs, batch_size=options.batch_size,
                  shuffle=True, verbose=0, callbacks=[mask_keeper(masks)] if masks else None)
    recalibrate_batch_norm(model, train.x)


def _data_sha256(parts: Split) -> str:
    """One digest of the training and validation parts."""
    return hashlib.sha256(f"{parts.train.sha256}{parts.val.sha256}".encode()).hexdigest()


def save_keras(model: Any, path: Path, made: Derivation) -> None:
    """``model`` as a ``.keras`` file whose bytes depend only on the model: Keras's
    save date dropped, every member dated 1980, plus how it was made."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "model.keras"
        model.save(raw)
        buffer = io.BytesIO()
        with zipfile.ZipFile(raw) as src, zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as dst:
            for name in sorted(src.namelist()):
                data = src.read(name)
                if name == "metadata.json":
                    meta = json.loads(data)
                    meta.pop("date_saved", None)
                    data = json.dumps(meta, sort_keys=True).encode()
                elif name == "config.json":
                    data = _numbered_shared_objects(data.decode()).encode()
                dst.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data)
            dst.writestr(zipfile.ZipInfo(DERIVATION_MEMBER, (1980, 1, 1, 0, 0, 0)),
                         json.dumps(made.as_dict(), sort_keys=True, indent=2).encode())
    write_atomic(path, buffer.getvalue())


def _numbered_shared_objects(config: str) -> str:
    """Keras names an object shared between layers (a dtype policy) by its memory
    address; number them in order of first appearance instead, the same sharing."""
    numbers: dict[str, str] = {}

    def number(match: re.Match[str]) -> str:
        return f'"shared_object_id": {numbers.setdefault(match.group(1), str(len(numbers) + 1))}'

    return re.sub(r'"shared_object_id": (\d+)', number, config)


def prune(target: str, *, data: str, out: Path, options: PruneOptions,
          knobs: dict[str, Any] | None = None, weights: str | None = None,
          labels: str | None = None, val: str | None = None,
          val_split: float = DEFAULT_VAL_SPLIT,
          progress: Progress = lambda s: None) -> PruneReport:
    """Prune ``target`` (a registry model with its weights, or a .keras file), fine-tune
    it on ``data`` and write the pruned model to ``out`` (a .keras path)."""
    source_data = DataSource(data, labels=labels, val=val,
                             val_split=None if val is not None else val_split, seed=options.seed)
    classes = _check(out, options, source_data)
    progress(f"build {target}")
    source = build_or_load(target, knobs=knobs, weights=weights, seed=options.seed)
    model = source.model
    if model.output.shape[-1] != len(classes):
        raise UserError(f"--data {data}: {len(classes)} classes, but the model has "
                        f"{model.output.shape[-1]} outputs; the data's classes must be the model's")
    chosen = _CHOOSERS[options.method](model, options, progress)
    resolution = int(model.input.shape[1])
    progress(f"load {data} at {resolution}x{resolution}")
    parts = source_data.parts(resolution=resolution, normalization=source.normalization)
    before = _stage(model, parts.val)
    result = chosen.apply(model)
    pruned = _stage(result, parts.val)
    if options.epochs:
        progress(f"fine-tune {options.epochs} epoch(s) on {len(parts.train.y)} samples")
        fine_tune(result, parts.train, options, chosen.masks)
    report = PruneReport(source.name, str(out), options, data, parts.val.sha256,
                         len(parts.train.y), len(parts.val.y), before, pruned,
                         _stage(result, parts.val), chosen.groups, chosen.left_whole)
    progress(f"write {out}")
    made = Derivation(source.origin if source.origin != "registry" else source.name,
                      str(options.method), options.ratio, options.epochs,
                      _data_sha256(parts), source.normalization, options.sparsity)
    save_keras(result, out, made)
    return report


@dataclass(frozen=True)
class _Choice:
    """What goes, chosen from the weights before any data is loaded (so a model with
    nothing to prune fails fast); ``apply`` makes the pruned model."""

    apply: Callable[[Any], Any]
    groups: tuple[dict[str, Any], ...]
    left_whole: dict[str, str]
    masks: tuple[Mask, ...] = ()


def _filters(model: Any, options: PruneOptions, progress: Progress) -> _Choice:
    """Structured: the lowest-ranked filters of every group removed."""
    progress(f"rank filters ({options.method}) and remove {options.ratio:.0%} of each layer's")
    chosen = plan(model, method=options.method, ratio=options.ratio, divisor=options.divisor)
    groups = tuple({"layers": list(g.producers), "channels": g.channels, "kept": len(g.kept)}
                   for g in chosen.groups)
    return _Choice(lambda m: apply(m, chosen), groups, dict(chosen.left_whole))


def _weights(model: Any, options: PruneOptions, progress: Progress) -> _Choice:
    """Unstructured: the smallest weights of every kernel zeroed, in place."""
    progress(f"zero the {options.sparsity:.0%} smallest weights of each kernel")
    masks = magnitude_masks(model, sparsity=options.sparsity)

    def zeroed(m: Any) -> Any:
        apply_masks(m, masks)
        return m

    groups = tuple({"layers": [m.layer], "weights": int(m.keep.size),
                    "kept": int(m.keep.size) - m.zeros} for m in masks)
    return _Choice(zeroed, groups, {}, masks)


_CHOOSERS: dict[Method, Callable[[Any, PruneOptions, Progress], _Choice]] = {
    Method.L1: _filters, Method.FPGM: _filters, Method.MAGNITUDE: _weights}


def _check(out: Path, options: PruneOptions, data: DataSource) -> tuple[str, ...]:
    """Every check that needs no model, before slow work; the data's classes."""
    options.validate()
    if out.suffix != ".keras":
        raise UserError(f"--out {out}: not allowed: a path ending in .keras")
    if out.is_dir():
        raise UserError(f"--out {out}: is a folder; give a .keras file path")
    return data.check()
