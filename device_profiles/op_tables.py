"""Read the op-profiling tables ``benchmark_model --enable_op_profiling=true`` prints
after its regular runs: the "Run Order" table (node type, first, avg ms, %, cdf%, mem
KB, times called, name; older builds add a start column) and the "Summary by node
type" table. Columns are found from each table's header, so tab-separated (the
TensorFlow stats calculator) and space-padded (LiteRT's summariser) layouts both
parse. The initialisation tables printed before them (ModifyGraphWithDelegate,
AllocateTensors) are not ops and are skipped.

An op's name is ``[its first output tensor]:its node index``; a delegate partition
(``TfLiteXNNPackDelegate``) is one row whose index is past the model's ops.
"""

from __future__ import annotations

import re

from device_profiles.per_layer import OpTimes, TimedOp

REGULAR = "Operator-wise Profiling Info for Regular Benchmark Runs"
_HEADER = re.compile(r"\[([^\]]+)\]")
_TITLE = re.compile(r"^=+ (.+?) =+$")
_NUMBER = r"(-?[\d.]+(?:e[-+]?\d+)?%?)"
_NAMED = re.compile(r"^\[(.*)\]:(\d+)$")
KERNELS = {"TfLiteXNNPackDelegate": "xnnpack", "TfLiteGpuDelegateV2": "gpu",
           "TfLiteNnapiDelegate": "nnapi"}


class NoOpTables(Exception):
    """The output has no op-profiling tables; the message says so in one line."""


def _tables(text: str) -> dict[str, list[str]]:
    """Title -> lines (header first) of each table after the regular-runs banner."""
    start = text.find(REGULAR)
    if start < 0:
        raise NoOpTables("benchmark_model printed no op-profiling tables (is "
                         "--enable_op_profiling supported by this binary?); whole-model "
                         "figures only")
    tables: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text[start:].splitlines():
        title = _TITLE.match(line.strip())
        if title:
            current = tables.setdefault(title.group(1), [])
        elif current is not None and line.strip():
            current.append(line)
        elif current is not None and current:
            current = None  # a blank line ends a table
    return tables


def _rows(lines: list[str]) -> list[tuple[str, list[str], str]]:
    """(first column, numeric columns, the rest) of each row under a header."""
    columns = _HEADER.findall(lines[0])
    numeric = len(columns) - (2 if columns[-1].lower() == "name" else 1)
    has_name = columns[-1].lower() == "name"
    pattern = re.compile(r"^\s*(.+?)" + r"\s+" + r"\s+".join([_NUMBER] * numeric)
                         + (r"\s+(.*?)\s*$" if has_name else r"\s*$"))
    found = []
    for line in lines[1:]:
        match = pattern.match(line)
        if match:
            groups = match.groups()
            found.append((groups[0].strip(), list(groups[1:numeric + 1]),
                          groups[numeric + 1] if has_name else ""))
    return found


def _column(lines: list[str], name: str) -> int:
    columns = [c.lower() for c in _HEADER.findall(lines[0])]
    return columns.index(name) - 1  # position among the numeric columns


def parse_op_tables(text: str, *, whole_ms: float | None = None) -> OpTimes:
    """The per-op rows of the "Run Order" table, in run order."""
    tables = _tables(text)
    order = tables.get("Run Order")
    if not order or not _rows(order):
        raise NoOpTables("benchmark_model's op-profiling output has no Run Order rows; "
                         "whole-model figures only")
    avg = _column(order, "avg ms")
    ops = []
    for kind, numbers, name in _rows(order):
        named = _NAMED.match(name)
        ops.append(TimedOp(kind, named.group(1) if named else name, float(numbers[avg]),
                           KERNELS.get(kind), int(named.group(2)) if named else None))
    return OpTimes(tuple(ops), "benchmark_model --enable_op_profiling (Run Order table)",
                   whole_ms, by_type=_by_type(tables.get("Summary by node type")))


def _by_type(lines: list[str] | None) -> tuple[tuple[str, int, float], ...]:
    """(node type, count, avg ms) of the "Summary by node type" table."""
    if not lines:
        return ()
    count, avg = _column(lines, "count"), _column(lines, "avg ms")
    return tuple((kind, int(float(n[count])), float(n[avg])) for kind, n, _ in _rows(lines))
