"""Labelled data: what accuracy is measured on and what pruning fine-tunes on.

Two sources, both without pickles:

- a folder with one sub-folder per class (the common image-folder layout), classes in
  the sub-folders' sorted order, or in the order of a ``--labels`` file (one name per
  line, every sub-folder named once);
- a ``.npz`` with an ``x`` array, (N, H, W, 3) uint8 pixels or float32 model inputs,
  and a ``y`` array of N integer labels (names from ``--labels``, else ``0..K-1``).

Images are centre-cropped at the model's resolution and normalised as the model
expects, as calibration does (:mod:`quant.calibration`). A deterministic, stratified
split (:func:`split`) holds out a share of every class for validation.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mobilectl.core.errors import UserError
from mobilectl.core.manifest import Normalization
from quant.calibration import IMAGE_SUFFIXES, centre_crop, decode, normalize

FORMS = "a folder with one sub-folder per class, or a .npz with x and y arrays"


@dataclass(frozen=True)
class Labelled:
    """Model inputs (NHWC float32), their labels and where they came from."""

    source: str
    classes: tuple[str, ...]
    x: np.ndarray
    y: np.ndarray  # int64 class indices into ``classes``

    @property
    def sha256(self) -> str:
        """A digest of the inputs and labels (what a manifest records)."""
        digest = hashlib.sha256(f"{self.x.dtype}{self.x.shape}".encode())
        digest.update(np.ascontiguousarray(self.x).tobytes())
        digest.update(np.ascontiguousarray(self.y, dtype=np.int64).tobytes())
        return digest.hexdigest()

    def subset(self, index: np.ndarray, source: str) -> Labelled:
        return Labelled(source, self.classes, self.x[index], self.y[index])


@dataclass(frozen=True)
class Split:
    """Training and validation parts of labelled data."""

    train: Labelled | None  # None: a separate --val set was given and --data is all train
    val: Labelled


def read_labels(path: str | None, *, flag: str = "--labels") -> tuple[str, ...] | None:
    """Class names, one per line (blank lines ignored), all different."""
    if path is None:
        return None
    file = Path(path)
    if not file.is_file():
        raise UserError(f"{flag} {path}: no such file; give a text file with one class "
                        "name per line")
    names = tuple(line.strip() for line in file.read_text().splitlines() if line.strip())
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UserError(f"{flag} {path}: class {repeated[0]!r} is named twice")
    if len(names) < 2:
        raise UserError(f"{flag} {path}: {len(names)} class name(s); at least 2 needed")
    return names


def check_data(path: str, *, labels: tuple[str, ...] | None = None,
               flag: str = "--data") -> tuple[str, ...]:
    """Check a labelled source before slow work (its form, its classes, its labels);
    its class names."""
    source = Path(path)
    if source.is_dir():
        return _class_folders(source, labels, flag)[0]
    if source.suffix.lower() == ".npz" and source.is_file():
        return _npz(source, labels, flag)[0]
    if not source.exists():
        raise UserError(f"{flag} {path}: no such file or directory; give {FORMS}")
    raise UserError(f"{flag} {path}: not {FORMS}")


def load_labelled(path: str, *, resolution: int, normalization: Normalization,
                  labels: tuple[str, ...] | None = None, flag: str = "--data") -> Labelled:
    """All of a labelled source as model inputs at ``resolution``."""
    check_data(path, labels=labels, flag=flag)
    source = Path(path)
    if source.is_dir():
        classes, files = _class_folders(source, labels, flag)
        pixels = np.stack([centre_crop(decode(f, resolution), resolution)
                           for group in files for f in group])
        y = np.concatenate([np.full(len(group), i) for i, group in enumerate(files)])
        return Labelled(str(source), classes, normalize(pixels, normalization), y.astype(np.int64))
    classes, x, y = _npz(source, labels, flag)
    want = (resolution, resolution, 3)
    if tuple(x.shape[1:]) != want:
        raise UserError(f"{flag} {path}: x of shape {tuple(x.shape)} is not allowed: "
                        f"(N, {want[0]}, {want[1]}, 3) for this model")
    inputs = normalize(x, normalization) if x.dtype == np.uint8 else x.astype(np.float32)
    return Labelled(str(source), classes, inputs, y)


def split(data: Labelled, *, val_split: float, seed: int = 0) -> Split:
    """A seeded, stratified split: ``val_split`` of every class (at least one image,
    and at least one left to train on) goes to validation."""
    if not 0 < val_split < 1:
        raise UserError(f"--val-split {val_split:g} is not allowed: a fraction between 0 "
                        "and 1 (e.g. 0.2)")
    rng = np.random.default_rng(seed)
    val: list[np.ndarray] = []
    train: list[np.ndarray] = []
    for c in range(len(data.classes)):
        members = rng.permutation(np.flatnonzero(data.y == c))
        if len(members) < 2:
            raise UserError(f"--val-split: class {data.classes[c]!r} of {data.source} has "
                            f"{len(members)} sample(s); at least 2 are needed to split")
        count = min(len(members) - 1, max(1, round(val_split * len(members))))
        val.append(members[:count])
        train.append(members[count:])
    return Split(data.subset(np.sort(np.concatenate(train)), f"{data.source} (train part)"),
                 data.subset(np.sort(np.concatenate(val)), f"{data.source} (validation part)"))


def _class_folders(folder: Path, labels: tuple[str, ...] | None,
                   flag: str) -> tuple[tuple[str, ...], list[list[Path]]]:
    """The classes and each class's image files (sorted)."""
    found = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(found) < 2:
        raise UserError(f"{flag} {folder}: {len(found)} class folder(s) "
                        f"({', '.join(found) or 'none'}); at least 2 needed, one per class")
    classes = found if labels is None else list(labels)
    if labels is not None and set(found) != set(labels):
        missing = sorted(set(labels) - set(found)) or sorted(set(found) - set(labels))
        where = "has no folder" if set(labels) - set(found) else "is not in --labels"
        raise UserError(f"{flag} {folder}: class {missing[0]!r} {where}; the labels file "
                        "must name every class folder once")
    files = []
    for name in classes:
        images = sorted(p for p in (folder / name).rglob("*")
                        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise UserError(f"{flag} {folder}: class folder {name!r} holds no images "
                            f"(allowed: {', '.join(IMAGE_SUFFIXES)})")
        files.append(images)
    return tuple(classes), files


def _npz(path: Path, labels: tuple[str, ...] | None,
         flag: str) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """The classes, x and y of a .npz, every way it can be wrong one UserError."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if not {"x", "y"} <= set(data.files):
                raise UserError(f"{flag} {path}: holds arrays {data.files}; x (images) and y "
                                "(labels) are needed")
            x, y = data["x"], data["y"]
    except UserError:
        raise
    except ValueError as exc:  # object arrays need pickle
        raise UserError(f"{flag} {path}: cannot be read without pickle ({exc})") from None
    except Exception as exc:  # zip, header and IO errors of a broken file
        raise UserError(f"{flag} {path}: not a readable .npz ({type(exc).__name__})") from None
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype not in (np.uint8, np.float32):
        raise UserError(f"{flag} {path}: x of shape {x.shape} and dtype {x.dtype} is not "
                        "allowed: (N, H, W, 3) uint8 pixels or float32 model inputs")
    if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"{flag} {path}: y of shape {y.shape} and dtype {y.dtype} is not "
                        f"allowed: {len(x)} integer labels, one per image")
    count = len(labels) if labels is not None else int(y.max(initial=-1)) + 1
    if y.size and (y.min() < 0 or y.max() >= count):
        bad = int(y.min() if y.min() < 0 else y.max())
        raise UserError(f"{flag} {path}: label {bad} is not allowed: 0 to {count - 1}"
                        + (" (the classes of --labels)" if labels is not None else ""))
    if len(np.unique(y)) < 2:
        raise UserError(f"{flag} {path}: {len(np.unique(y))} class(es) in y; at least 2 needed")
    return labels or tuple(str(i) for i in range(count)), x, y.astype(np.int64)
