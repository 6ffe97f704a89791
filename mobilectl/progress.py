"""Progress on stderr for long work: the current stage, the model and the elapsed time."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from rich.console import Console


@contextlib.contextmanager
def stage_progress(console: Console, subject: str) -> Iterator[Callable[[str], None]]:
    """Yield a ``progress(stage)`` callback that shows ``stage`` with elapsed time in a
    live status line and logs each finished stage with its duration."""
    start = last = time.monotonic()
    current: list[str] = []
    with console.status(f"{subject}: starting") as status:

        def progress(stage: str) -> None:
            nonlocal last
            now = time.monotonic()
            if current:
                console.log(f"{current[0]} [dim]({now - last:.1f}s)[/dim]")
            current[:] = [stage]
            last = now
            status.update(f"{subject}: {stage} [dim]({now - start:.0f}s elapsed)[/dim]")

        yield progress
        if current:
            console.log(f"{current[0]} [dim]({time.monotonic() - last:.1f}s)[/dim]")
        console.log(f"{subject}: done in {time.monotonic() - start:.1f}s")
