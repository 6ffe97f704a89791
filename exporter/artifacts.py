"""Artifact files and the manifest beside them: names, hashes, atomic writes.

Every file is written to a temporary name inside the output folder and renamed into
place, so an interrupted export never leaves a partial artifact, and the manifest
(written last, the same way) lists only complete files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from mobilectl.errors import UserError

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
TOOLS = ("mobilectl", "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert")
EXTENSIONS = {"tflite": "tflite", "onnx": "onnx"}
#: A plain file name or stem: nothing that could leave the output folder.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def tool_versions() -> dict[str, str]:
    """Installed versions of the tools that shape an artifact."""
    versions = {}
    for tool in TOOLS:
        try:
            versions[tool] = metadata.version(tool)
        except metadata.PackageNotFoundError:
            versions[tool] = "not installed"
    return versions


def artifact_name(model: str, variant: str, precision: str, fmt: str) -> str:
    """``<model>[-<variant>]_<precision>.<ext>``, checked to be a plain file name."""
    stem = f"{model}-{variant}" if variant else model
    name = f"{stem}_{precision}.{EXTENSIONS[fmt]}"
    if not SAFE_NAME.fullmatch(name) or ".." in name:
        raise UserError(f"artifact name {name!r} is not allowed: letters, digits, '.', '_' "
                        "and '-' only, inside the output folder")
    return name


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_out_dir(out: Path) -> Path:
    """Check early that ``out`` is, or can be created as, a writable folder, without
    creating anything (a failed export leaves no trace)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out}: exists and is not a folder")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"--out {out}: cannot create it ({parent} is not a folder)")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"--out {out}: not writable; pick a folder you can write to")
    return out


def make_out_dir(out: Path) -> Path:
    """Create ``out`` (at write time)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {out}: cannot create it ({exc.strerror})") from None
    return out


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync, then rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_manifest(out: Path) -> dict[str, Any]:
    """The manifest in ``out``, or an empty one."""
    path = out / MANIFEST
    if not path.is_file():
        return {"manifest_version": MANIFEST_VERSION, "artifacts": []}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable manifest ({exc}); move it away") from None
    if not isinstance(data, dict) or not isinstance(data.get("artifacts"), list):
        raise UserError(f"{path}: not a mobilectl manifest (no 'artifacts' list)")
    return data


def update_manifest(out: Path, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge ``entries`` into the manifest (same path: replaced), keep only entries
    whose files exist, sort by path, and write it atomically."""
    manifest = read_manifest(out)
    merged = {e["path"]: e for e in manifest["artifacts"] if (out / e["path"]).is_file()}
    merged.update({e["path"]: e for e in entries})
    manifest = {"manifest_version": MANIFEST_VERSION,
                "artifacts": [merged[k] for k in sorted(merged)]}
    text = json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False) + "\n"
    write_atomic(out / MANIFEST, text.encode())
    return manifest
