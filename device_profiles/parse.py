"""Parse the output of TFLite's ``benchmark_model`` (the C++ tool run on devices).

Handles the variants seen across releases: lines with or without the ``INFO:``
prefix; statistics lines with or without ``p5``/``median``/``p95`` (older builds);
``count=50 curr=1234(all same)`` when every run took the same time; and ``ERROR:``
lines, which mean the run failed. Times in the tool's output are microseconds; the
result is in milliseconds.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

_PREFIX = re.compile(r"^\s*(?:INFO|WARNING|VERBOSE)\s*:\s*")
_STATS = re.compile(r"\bcount=(\d+)\b(.*)$")
_FIELD = re.compile(r"\b(first|curr|min|max|avg|std|p5|median|p95)=([-\d.eE+]+)")
_ALL_SAME = re.compile(r"\bcurr=([-\d.eE+]+)\(all same\)")
_INIT = re.compile(r"Initialized session in ([\d.]+)\s*ms", re.IGNORECASE)
_TIMINGS = re.compile(r"Inference timings in us:(.*)$")
_MEMORY = re.compile(r"Memory footprint delta.*?init=([\d.]+)\s+overall=([\d.]+)")


class BenchmarkOutputError(Exception):
    """``benchmark_model`` reported an error, or printed no inference statistics."""


@dataclass(frozen=True)
class Stats:
    """One statistics line (microseconds in the tool; stored here in ms)."""

    count: int
    avg_ms: float
    min_ms: float
    max_ms: float
    std_ms: float
    first_ms: float | None = None
    median_ms: float | None = None
    p5_ms: float | None = None
    p95_ms: float | None = None


@dataclass(frozen=True)
class BenchmarkResult:
    """What one ``benchmark_model`` run measured."""

    inference: Stats
    warmup: Stats | None
    init_ms: float | None
    first_inference_ms: float | None
    memory_init_mb: float | None
    memory_overall_mb: float | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _stats(rest: str, count: int) -> Stats:
    same = _ALL_SAME.search(rest)
    if same:
        value = float(same.group(1)) / 1000
        return Stats(count, value, value, value, 0.0, value, value, value, value)
    fields = {k: float(v) / 1000 for k, v in _FIELD.findall(rest)}
    if "avg" not in fields:
        raise BenchmarkOutputError(f"statistics line without avg: count={count}{rest}")
    avg = fields["avg"]
    return Stats(count, avg, fields.get("min", avg), fields.get("max", avg),
                 fields.get("std", 0.0), fields.get("first"), fields.get("median"),
                 fields.get("p5"), fields.get("p95"))


def parse_benchmark_output(text: str) -> BenchmarkResult:
    """Parse the tool's stdout+stderr; raise BenchmarkOutputError on ``ERROR:`` lines
    or when no inference statistics were printed."""
    stats: list[Stats] = []
    init_ms = first_ms = mem_init = mem_overall = None
    for raw in text.splitlines():
        if raw.strip().startswith("ERROR"):
            raise BenchmarkOutputError(raw.strip())
        line = _PREFIX.sub("", raw)
        if match := _STATS.search(line):
            stats.append(_stats(match.group(2), int(match.group(1))))
        elif match := _INIT.search(line):
            init_ms = float(match.group(1))
        elif match := _TIMINGS.search(line):
            timings = dict(re.findall(r"([A-Za-z ()]+):\s*([\d.]+)", match.group(1)))
            timings = {k.strip(): float(v) / 1000 for k, v in timings.items()}
            init_ms = timings.get("Init", init_ms)
            first_ms = timings.get("First inference")
        elif match := _MEMORY.search(line):
            mem_init, mem_overall = float(match.group(1)), float(match.group(2))
    if not stats:
        tail = " | ".join(line.strip() for line in text.strip().splitlines()[-2:])
        raise BenchmarkOutputError(f"no inference statistics in the output ({tail or 'empty'})")
    warmup = stats[0] if len(stats) > 1 else None
    return BenchmarkResult(stats[-1], warmup, init_ms, first_ms, mem_init, mem_overall)
