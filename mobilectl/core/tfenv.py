"""Import TensorFlow/Keras once, quietly, and keep converters off stdout.

TensorFlow's native libraries print absl INFO lines (oneDNN, CUDA stubs) on file
descriptor 2 before Python logging exists, so environment variables cannot silence
them. The CLI keeps stderr for its own progress and errors, so the first import runs
with fd 2 pointed at /dev/null. Python exceptions still propagate normally.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_quietly() -> None:
    """Import tensorflow and keras with their native start-up chatter suppressed."""
    if "keras" in sys.modules and "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with _native_stderr_silenced():
        import tensorflow  # noqa: F401  (heavy: the point of this function)
        import keras  # noqa: F401


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Keep stdout for results while a converter runs.

    Keras' export prints a banner and every captured variable from Python, and TF's
    converter prints its quantization settings from C++ on file descriptor 1; both are
    dropped (Python warnings too) while the block runs. Errors still raise.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
