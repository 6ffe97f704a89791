"""Files every layer writes: atomic writes, hashes, output folders, safe names, and
the versions of the tools that shape an artifact."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path

from mobilectl.core.errors import UserError

#: A plain file name or stem: nothing that could leave the output folder.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
TOOLS = ("mobilectl", "tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert",
         "ai-edge-quantizer")


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


def user_cache(*parts: str) -> Path:
    """A path in the user cache: ``$XDG_CACHE_HOME/mobilectl/...``, default
    ``~/.cache/mobilectl/...`` (binaries, their capabilities, kernel tables, the log)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base, "mobilectl", *parts)


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


_HELD: dict[tuple[str, int], int] = {}  # (folder, thread) -> depth of its hold


@contextlib.contextmanager
def folder_lock(folder: Path, *, waiting: Callable[[], None] = lambda: None) -> Iterator[None]:
    """An exclusive lock on ``folder`` against other processes and threads (``flock`` on
    the folder itself, so no lock file is left behind). Re-entrant within one thread: a
    build that holds it can merge the manifest, which takes it too. ``waiting`` is
    called once if someone else holds it."""
    key = (str(folder.resolve()), threading.get_ident())
    if _HELD.get(key):
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waiting()
            fcntl.flock(fd, fcntl.LOCK_EX)
        _HELD[key] = 1
        try:
            yield
        finally:
            _HELD.pop(key, None)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
