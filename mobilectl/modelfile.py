"""Model files given on the command line: which arguments are files, are they readable
files of a type mobilectl reads, and ``--input-shape``. Light: no Keras, no numpy."""

from __future__ import annotations

from pathlib import Path

from mobilectl.core.cost import shape_from_text
from mobilectl.core.errors import UserError

#: the model files ``mobilectl info`` reads, by suffix
SUFFIXES = (".keras", ".tflite", ".onnx")


def is_model_file(target: str) -> bool:
    """A path to read (it has a suffix or a folder part), not a registry name."""
    return Path(target).suffix != "" or "/" in target


def check_file(target: str, *, input_shape: tuple[int, ...] | None = None) -> Path:
    """The path of a readable model file of a known type that takes ``input_shape``
    (if given), or a UserError (up front, before any model is read)."""
    path = Path(target)
    if path.suffix.lower() not in SUFFIXES:
        raise UserError(f"{target}: unknown model file type '{path.suffix or '(none)'}'; "
                        f"give a registry name or a {', '.join(SUFFIXES)} file")
    if input_shape is not None and path.suffix.lower() == ".tflite":
        raise UserError("--input-shape applies to .onnx and .keras files: a .tflite "
                        "file's shapes are fixed when it is converted")
    if path.is_dir():
        raise UserError(f"{target}: is a folder, not a model file")
    if not path.is_file():
        raise UserError(f"{target}: no such file")
    if path.stat().st_size == 0:
        raise UserError(f"{target}: the file is empty")
    return path


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    """``1,224,224,3`` -> ``(1, 224, 224, 3)``; positive integers only."""
    if text is None:
        return None
    shape = shape_from_text(text.replace("x", ","))
    if shape is None:
        raise UserError(f"--input-shape {text!r} is not allowed: positive integers separated "
                        "by commas, batch first (e.g. 1,224,224,3)")
    return shape
