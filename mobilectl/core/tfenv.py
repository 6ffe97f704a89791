"""Import TensorFlow/Keras once, quietly, and keep third-party output off the terminal.

stdout carries results and stderr our own progress, warnings and errors. TensorFlow,
its converter, tf2onnx, onnxruntime's tools and LiteRT print on both file descriptors,
from Python and from C++ (absl INFO lines, converter settings, optimizer tracebacks
that are caught and harmless). While they run, :func:`third_party_output` points
file descriptors 1 and 2, Python's ``sys.stdout``/``sys.stderr``, the root logger and
TensorFlow's own logging handler at one log file (:func:`log_path`), which
``mobilectl --verbose`` shows. Python exceptions still propagate normally.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

from mobilectl.core.files import user_cache

LOG_ENV = "MOBILECTL_LOG"
LOG_NAME = "mobilectl.log"
MAX_LOG_BYTES = 8 * 2**20  # a longer log is started afresh
THIRD_PARTY_LOGGERS = ("tensorflow", "absl", "tf2onnx", "onnxruntime", "keras")


def log_path() -> Path:
    """Where third-party output goes: ``$MOBILECTL_LOG``, else ``mobilectl.log`` in
    the user cache (``$XDG_CACHE_HOME/mobilectl``, default ``~/.cache/mobilectl``)."""
    given = os.environ.get(LOG_ENV)
    if given:
        return Path(given)
    return user_cache(LOG_NAME)


def log_size() -> int:
    """The log's current size (what a run has added is what comes after it)."""
    try:
        return log_path().stat().st_size
    except OSError:
        return 0


def _open_log():
    path = log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.stat().st_size > MAX_LOG_BYTES:
        path.unlink()
    return path.open("a", encoding="utf-8", errors="replace")


@contextlib.contextmanager
def _handlers_to(stream) -> Iterator[None]:
    """The root logger (instead of logging's last-resort stderr handler) and the
    third-party loggers' own stream handlers write to ``stream``."""
    root = logging.getLogger()
    handler = logging.StreamHandler(stream)
    root.addHandler(handler)
    swapped = [(h, h.setStream(stream)) for name in THIRD_PARTY_LOGGERS
               for h in logging.getLogger(name).handlers
               if isinstance(h, logging.StreamHandler) and h.stream is not stream]
    try:
        yield
    finally:
        for h, old in swapped:
            h.setStream(old)
        root.removeHandler(handler)


@contextlib.contextmanager
def third_party_output() -> Iterator[None]:
    """Send everything printed while the block runs to the log file (warnings are
    dropped); restore the terminal afterwards, also on errors."""
    sys.stdout.flush()
    sys.stderr.flush()
    with _open_log() as log:
        saved = os.dup(1), os.dup(2)
        try:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log), \
                    _handlers_to(log), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
        finally:
            log.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def import_quietly() -> None:
    """Import tensorflow and keras with their native start-up chatter in the log."""
    if "keras" in sys.modules and "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with third_party_output():
        import tensorflow  # noqa: F401  (heavy: the point of this function)
        import keras  # noqa: F401
