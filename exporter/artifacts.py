"""Artifact file names: ``<model>[-<variant>]_<precision>.<ext>``, always a plain file
name inside the output folder. (Writing, hashing and the manifest are shared
contracts: :mod:`mobilectl.core.files`, :mod:`mobilectl.core.manifest`.)"""

from __future__ import annotations

from mobilectl.core.errors import UserError
from mobilectl.core.files import is_safe_name
from mobilectl.core.types import Format, Precision


def artifact_name(model: str, variant: str, precision: Precision, fmt: Format) -> str:
    """``<model>[-<variant>]_<precision>.<ext>``, checked to be a plain file name."""
    stem = f"{model}-{variant}" if variant else model
    name = f"{stem}_{precision}.{fmt}"
    if not is_safe_name(name):
        raise UserError(f"artifact name {name!r} is not allowed: letters, digits, '.', '_' "
                        "and '-' only, inside the output folder")
    return name
