"""Files every layer writes: atomic writes, hashes, output folders, safe names, and
the versions of the tools that shape an artifact."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from importlib import metadata
from pathlib import Path

from mobilectl.core.errors import UserError

#: A plain file name or stem: nothing that could leave the output folder.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
TOOLS = ("mobilectl", "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert")


def is_safe_name(name: str) -> bool:
    """A plain file name: letters, digits, '.', '_', '-', no '..'."""
    return bool(SAFE_NAME.fullmatch(name)) and ".." not in name


def tool_versions() -> dict[str, str]:
    """Installed versions of the tools that shape an artifact."""
    versions = {}
    for tool in TOOLS:
        try:
            versions[tool] = metadata.version(tool)
        except metadata.PackageNotFoundError:
            versions[tool] = "not installed"
    return versions


def sha256(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def check_out_dir(out: Path) -> Path:
    """Check early that ``out`` is, or can be created as, a writable folder, without
    creating anything (a failed run leaves no trace)."""
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
    """Write ``data`` to a temporary file beside ``path``, fsync, then rename: a reader
    sees the old file or the whole new one, never a part."""
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
