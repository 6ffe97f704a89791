"""Parse the output of TFLite's ``benchmark_model`` (the C++ tool run on devices) and
of the Android benchmark app (the same lines through logcat).

Every release's format is accepted (``tests/fixtures/benchmark_model/``: TFLite 2.4 to
today's LiteRT, and the app):

- lines with or without ``INFO:``/``VERBOSE:`` prefixes, or as logcat writes them
  (``I tflite  : ...``, ``I/tflite( 123): ...``, with or without a timestamp);
- statistics with or without ``first``/``avg``/``p5``/``median``/``p95`` (a one-run
  warm-up of older builds prints ``count=1 curr=3512391`` alone), ``curr=N(all same)``,
  and numbers in scientific notation;
- memory as ``Peak memory footprint (MB): init= overall=`` (older), ``Memory footprint
  delta from the start of the tool (MB): init= overall=`` and ``Overall peak memory
  footprint (MB) via periodic monitoring:`` (``--report_peak_memory_footprint``);
- delegate placement: ``Replacing N [out of M] node(s) with delegate (D) node``, the
  "completely/partially executed" and "will not be executed by the delegate" lines, the
  GPU delegate's "N operations will run on the GPU, and the remaining K operations will
  run on the CPU", and delegate creation errors.

A field a variant does not print is ``None`` ("not reported by this benchmark_model"),
never 0. Unknown lines are ignored. A run fails only on an ``ERROR:``/``Error:`` line
that is not about a delegate (those say the graph ran on the CPU instead: see
:class:`Delegation`), or when no steady-state statistics were printed; the message
carries the tool's own last meaningful line. Times in the tool's output are
microseconds; the result is in milliseconds.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any

NOT_REPORTED = "not reported by this benchmark_model"

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_LOGCAT = re.compile(r"^\s*(?:\d\d-\d\d\s+[\d:.]+\s+\d+\s+\d+\s+)?(?P<level>[VDIWEF])\s*[/ ]\s*"
                     r"[\w.-]+\s*(?:\(\s*\d+\))?\s*:\s?")
_LEVEL = re.compile(r"^\s*(INFO|WARNING|VERBOSE|ERROR|Error|DEBUG)\s*:\s*")
_STATS = re.compile(r"\bcount=(\d+)\b(.*)$")
_FIELD = re.compile(rf"\b(first|curr|min|max|avg|std|p5|median|p95)=({_NUMBER})")
_ALL_SAME = re.compile(rf"\bcurr=({_NUMBER})\(all same\)")
_INIT = re.compile(rf"Initialized session in ({_NUMBER})\s*ms", re.IGNORECASE)
_TIMINGS = re.compile(r"Inference timings in us:(.*)$")
_TIMING_FIELD = re.compile(rf"([A-Za-z ()]+):\s*({_NUMBER})")
_MEMORY = re.compile(rf"(?:Peak memory footprint|Memory footprint delta from the start of "
                     rf"the tool) \(MB\):\s*init=({_NUMBER})\s+overall=({_NUMBER})")
_PEAK = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring:\s*({_NUMBER})")
_REPLACING = re.compile(r"Replacing (\d+)(?: out of (\d+))? node\(s\) with delegate \(([^)]+)\)"
                        r"(?: node)?(?:, yielding (\d+) partitions)?")
_APPLIED = re.compile(r"Explicitly applied (\S+) delegate, and the model graph will be "
                      r"(completely|partially) executed by the delegate"
                      r"(?: w/ (\d+) delegate kernels)?")
_NOT_EXECUTED = re.compile(r"Though (\S+) delegate is explicitly applied, the model graph "
                           r"will not be executed by the delegate")
_GPU_SPLIT = re.compile(r"(\d+) operations will run on the GPU, and the remaining (\d+) "
                        r"operations? will run on the CPU")
_DELEGATE_ERROR = re.compile(r"(?i)(delegate|acceleration is unsupported|GPU|NNAPI|OpenCL|"
                             r"hexagon)")
_USAGE = re.compile(r"(?m)^\s*(?:usage:|Flags:\s*$)")
_VERSION = re.compile(r"(?i)\b(?:version|TfLite version|LiteRT version)\s*[:=]?\s*\[?"
                      r"(v?\d+\.\d+[\w.+-]*)\]?")

#: the delegate names the tool prints -> the delegate mobilectl asks for
DELEGATE_NAMES = {"tflitegpudelegatev2": "gpu", "tflitegpudelegate": "gpu", "gpu": "gpu",
                  "tflitennapidelegate": "nnapi", "nnapi": "nnapi",
                  "tflitexnnpackdelegate": "xnnpack", "xnnpack": "xnnpack",
                  "tflitehexagondelegate": "hexagon", "hexagon": "hexagon"}


class BenchmarkOutputError(Exception):
    """``benchmark_model`` reported an error, or printed no inference statistics."""


@dataclass(frozen=True)
class Stats:
    """One statistics line (microseconds in the tool; stored here in ms). A field the
    line does not carry is None."""

    count: int
    avg_ms: float | None
    min_ms: float | None = None
    max_ms: float | None = None
    std_ms: float | None = None
    first_ms: float | None = None
    median_ms: float | None = None
    p5_ms: float | None = None
    p95_ms: float | None = None
    curr_ms: float | None = None

    @property
    def central_ms(self) -> float | None:
        """The median when printed, else the mean."""
        return self.median_ms if self.median_ms is not None else self.avg_ms

    @property
    def complete(self) -> bool:
        """Mean, minimum, maximum and spread are all known (a steady-state line)."""
        return None not in (self.avg_ms, self.min_ms, self.max_ms, self.std_ms)


@dataclass(frozen=True)
class Delegation:
    """How one delegate took the graph, as the tool reported it."""

    delegate: str  # gpu, nnapi, xnnpack, hexagon (or the name printed)
    nodes: int | None = None  # nodes the delegate took
    total: int | None = None  # nodes of the graph (older builds print no total)
    partitions: int | None = None
    kernels: int | None = None  # delegate kernels ("partially executed ... w/ K")
    cpu_nodes: int | None = None  # the GPU delegate's "remaining K operations ... CPU"
    applied: str | None = None  # "complete", "partial", "none" as the tool said it
    errors: tuple[str, ...] = ()  # creation/application errors, as printed

    @property
    def placement(self) -> str:
        """``full``, ``partial``, ``none`` or ``unknown``."""
        if self.errors and not self.nodes:
            return "none"
        if self.applied in ("complete", "none"):
            return "full" if self.applied == "complete" else "none"
        if self.nodes == 0:
            return "none"
        if self.total is not None and self.nodes is not None:
            return "full" if self.nodes >= self.total else "partial"
        if self.applied == "partial" or self.cpu_nodes:
            return "partial"
        return "full" if self.cpu_nodes == 0 else "unknown"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "placement": self.placement}


@dataclass(frozen=True)
class BenchmarkResult:
    """What one ``benchmark_model`` run measured and reported."""

    inference: Stats
    warmup: Stats | None
    init_ms: float | None
    first_inference_ms: float | None
    memory_init_mb: float | None
    memory_overall_mb: float | None
    peak_memory_mb: float | None = None  # periodic monitoring (--report_peak_memory_footprint)
    delegations: tuple[Delegation, ...] = ()
    version: str | None = None

    def delegation(self, delegate: str) -> Delegation | None:
        """What the tool said about ``delegate`` (gpu, nnapi, ...), if anything."""
        return next((d for d in self.delegations if d.delegate == delegate), None)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["delegations"] = [d.as_dict() for d in self.delegations]
        return data


def strip_prefix(raw: str) -> tuple[str, str | None]:
    """A line without its logcat and log-level prefixes, and its level (``ERROR`` for
    logcat's ``E``; None without one)."""
    level = None
    if logcat := _LOGCAT.match(raw):
        level = {"E": "ERROR", "F": "ERROR", "W": "WARNING", "V": "VERBOSE",
                 "D": "DEBUG"}.get(logcat.group("level"), "INFO")
        raw = raw[logcat.end():]
    if prefixed := _LEVEL.match(raw):
        level = prefixed.group(1).upper()
        raw = raw[prefixed.end():]
    return raw.strip(), level


def _ms(value: str) -> float:
    return float(value) / 1000


def _stats(rest: str, count: int) -> Stats:
    same = _ALL_SAME.search(rest)
    if same:
        value = _ms(same.group(1))
        return Stats(count, value, value, value, 0.0, value, value, value, value, value)
    fields = {k: _ms(v) for k, v in _FIELD.findall(rest)}
    avg = fields.get("avg")
    if avg is None and count == 1 and "curr" in fields:
        avg = fields["curr"]  # one run: its time is the mean, the minimum and the maximum
        fields = {"min": avg, "max": avg, "first": avg, "std": 0.0, **fields}
    return Stats(count, avg, fields.get("min"), fields.get("max"), fields.get("std"),
                 fields.get("first"), fields.get("median"), fields.get("p5"),
                 fields.get("p95"), fields.get("curr"))


@dataclass
class _Reading:
    """What the lines said so far."""

    stats: list[Stats] = field(default_factory=list)
    init_ms: float | None = None
    first_ms: float | None = None
    memory: tuple[float | None, float | None] = (None, None)
    peak_mb: float | None = None
    delegations: dict[str, Delegation] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    meaningful: list[str] = field(default_factory=list)  # non-INFO lines, for messages

    def delegate(self, name: str, **changes: Any) -> None:
        key = DELEGATE_NAMES.get(name.lower(), name.lower())
        current = self.delegations.get(key, Delegation(key))
        if "errors" in changes:
            changes["errors"] = current.errors + tuple(changes["errors"])
        self.delegations[key] = replace(current, **changes)


def _timings(reading: _Reading, text: str) -> None:
    timings = {k.strip(): _ms(v) for k, v in _TIMING_FIELD.findall(text)}
    reading.init_ms = timings.get("Init", reading.init_ms)
    reading.first_ms = timings.get("First inference", reading.first_ms)


def _delegate_line(reading: _Reading, line: str) -> bool:
    """Read a delegate-placement line; True if it was one."""
    if m := _REPLACING.search(line):
        reading.delegate(m.group(3), nodes=int(m.group(1)),
                         total=int(m.group(2)) if m.group(2) else None,
                         partitions=int(m.group(4)) if m.group(4) else None)
    elif m := _APPLIED.search(line):
        reading.delegate(m.group(1), applied="complete" if m.group(2) == "completely"
                         else "partial", kernels=int(m.group(3)) if m.group(3) else None)
    elif m := _NOT_EXECUTED.search(line):
        reading.delegate(m.group(1), applied="none")
    elif m := _GPU_SPLIT.search(line):
        reading.delegate("gpu", cpu_nodes=int(m.group(2)))
    else:
        return False
    return True


def _error_line(reading: _Reading, line: str) -> None:
    """An error: about a delegate (the graph ran without it) or a failed run."""
    if re.search(r"(?i)not supported by (the )?GPU delegate", line):
        reading.delegate("gpu")
    elif _DELEGATE_ERROR.search(line):
        name = "nnapi" if re.search(r"(?i)nnapi", line) else (
            "hexagon" if re.search(r"(?i)hexagon", line) else "gpu")
        reading.delegate(name, errors=(line,))
    else:
        reading.errors.append(line)


def _read(reading: _Reading, raw: str) -> None:
    line, level = strip_prefix(raw)
    if not line:
        return
    if level not in ("INFO", "VERBOSE", "DEBUG"):
        reading.meaningful.append(line)
    if _delegate_line(reading, line):
        return
    if level == "ERROR" or line.startswith(("ERROR", "Error")):
        _error_line(reading, line)
    elif re.search(r"(?i)(GPU|NNAPI|Hexagon) acceleration is unsupported", line):
        reading.delegate(line.split()[0].lower(), errors=(line,))
    elif m := _STATS.search(line):
        reading.stats.append(_stats(m.group(2), int(m.group(1))))
    elif m := _INIT.search(line):
        reading.init_ms = float(m.group(1))
    elif m := _TIMINGS.search(line):
        _timings(reading, m.group(1))
    elif m := _MEMORY.search(line):
        reading.memory = (float(m.group(1)), float(m.group(2)))
    elif m := _PEAK.search(line):
        reading.peak_mb = float(m.group(1))


def parse_benchmark_output(text: str) -> BenchmarkResult:
    """Parse the tool's stdout+stderr (or the app's logcat); raise BenchmarkOutputError
    on an error line not about a delegate, or when no steady-state statistics came."""
    reading = _Reading()
    for raw in text.splitlines():
        _read(reading, raw)
    if reading.errors:
        failed = [f"{d.delegate} delegate: {d.errors[-1]}" for d in reading.delegations.values()
                  if d.errors]
        specific = [e for e in reading.errors if not e.startswith("Benchmarking failed")]
        raise BenchmarkOutputError("; ".join([(specific or reading.errors)[0], *failed]))
    steady = [s for s in reading.stats if s.complete]
    if not steady and _USAGE.search(text):
        raise BenchmarkOutputError("printed its usage text and no statistics: a flag "
                                   "mobilectl passed is unknown to this build")
    if not steady:
        raise BenchmarkOutputError("no inference statistics in the output"
                                   f" (last: {last_meaningful(reading, text)})")
    warmup = reading.stats[0] if len(reading.stats) > 1 and reading.stats[0] is not steady[-1] \
        else None
    return BenchmarkResult(steady[-1], warmup, reading.init_ms, reading.first_ms,
                           reading.memory[0], reading.memory[1], reading.peak_mb,
                           tuple(reading.delegations[k] for k in sorted(reading.delegations)),
                           version_in(text))


def last_meaningful(reading: _Reading, text: str) -> str:
    """The tool's last line that is not an INFO line, else its last line, else 'empty'."""
    if reading.meaningful:
        return reading.meaningful[-1]
    lines = [strip_prefix(raw)[0] for raw in text.splitlines() if raw.strip()]
    return lines[-1] if lines else "empty"


def version_in(text: str) -> str | None:
    """A version the tool printed (``--help`` or a run), if it printed one."""
    for raw in text.splitlines():
        if match := _VERSION.search(strip_prefix(raw)[0]):
            return match.group(1)
    return None
