"""Helpers the focused benchmark scripts share: a log line, interleaved latency on the
host, a median [interval] cell, and putting a section into BENCHMARKS.md.

Latency figures are the statistics ``mobilectl profile`` prints
(``device_profiles.stats``): the median of the repetitions with a seeded 95% bootstrap
interval of that median, and ratios of medians with their bootstrap interval."""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from device_profiles.stats import median_interval, ratio_interval  # noqa: E402


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def measure(files: list[dict[str, Any]], *, repeats: int, runs: int, warmup: int) -> None:
    """Interleaved: every repetition runs every file once at 1 and 2 threads, so drift
    hits all; each file's ``ms[threads]`` collects one median per repetition."""
    from device_profiles import host

    for r in range(repeats):
        log(f"latency repetition {r + 1}/{repeats}")
        for f in files:
            for threads in (1, 2):
                done = host.run_artifact(f["path"], threads=threads, runs=runs, warmup=warmup)
                f.setdefault("ms", {}).setdefault(threads, []).append(done.latency.median_ms)


STATS_NOTE = ("median [95% bootstrap interval of the median] of the repetitions, in ms; "
              "ratios of medians with their bootstrap interval")


def ms_cell(values: list[float]) -> str:
    """``median [low-high]`` of per-repetition medians, in ms."""
    low, high = median_interval(values) or (min(values), max(values))
    return f"{statistics.median(values):.2f} [{low:.2f}-{high:.2f}]"


def ratio_cell(top: list[float], bottom: list[float], *, suffix: str = "") -> str:
    """``median(top)/median(bottom) [low-high]`` with the ratio's bootstrap interval."""
    ratio = statistics.median(top) / statistics.median(bottom)
    found = ratio_interval(top, bottom)
    return f"{ratio:.2f}{suffix}" + (f" [{found[0]:.2f}-{found[1]:.2f}]" if found else "")


def splice(markdown_text: str, target: Path, *, start: str, end: str) -> None:
    """Put the section into ``target`` between the markers (appended the first time)."""
    text = target.read_text() if target.exists() else ""
    block = f"{start}\n{markdown_text}{end}\n"
    if start in text and end in text:
        text = text[:text.index(start)] + block + text[text.index(end) + len(end) + 1:]
    else:
        text = text.rstrip("\n") + "\n\n" + block
    target.write_text(text)


def publish(root: Path, name: str, text: str, data: dict[str, Any], files: list[dict[str, Any]],
            *, start: str, end: str) -> None:
    """Write ``bench/NAME.md`` and ``bench/NAME.json`` (files by name, not path) and put
    the section into BENCHMARKS.md between ``start`` and ``end``."""
    (root / "bench").mkdir(exist_ok=True)
    (root / "bench" / f"{name}.md").write_text(text)
    rows = [{**f, "path": f["path"].name} for f in files]
    (root / "bench" / f"{name}.json").write_text(json.dumps({**data, "files": rows},
                                                            indent=2) + "\n")
    splice(text, root / "BENCHMARKS.md", start=start, end=end)
