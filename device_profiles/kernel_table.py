"""A device's kernel table: every calibration kernel measured on it, with what it ran on.

One JSON file per device profile in the user cache (``kernels/DEVICE.json``; the
phone's serial is in its state). The table records
the runtime that timed the kernels (LiteRT's version on this machine, the
benchmark_model binary's sha256 and printed version on a phone), the threads, and the
device's state before the first and after the last batch, because a latency model is
only as good as the conditions it was measured in. Rows are kept sorted, so the same
measurements give the same file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from device_profiles.kernels import FEATURES
from mobilectl.core.errors import UserError
from mobilectl.core.files import is_safe_name, user_cache, write_atomic

SCHEMA = 3  # 2: the dilation feature; 3: each process's time of a kernel


@dataclass(frozen=True)
class KernelRow:
    """One kernel measured: the calibration block it came from, its kernel type, its
    features (:data:`device_profiles.kernels.FEATURES`), its time (the fastest of its
    processes, ``mobilectl.calibrate.kernel_ms``) and the median of each process that
    timed it."""

    block: str
    op: str
    kernel: str
    features: tuple[float, ...]
    ms: float
    processes_ms: tuple[float, ...] = ()


@dataclass(frozen=True)
class ChainRow:
    """A small network of calibration units timed whole: its ops as (kernel type,
    features), in order, and its time (what the kernels cost in one graph), as a
    kernel's."""

    block: str
    ops: tuple[tuple[str, tuple[float, ...]], ...]
    ms: float
    processes_ms: tuple[float, ...] = ()

    @property
    def precision(self) -> str:
        return "int8" if any(kernel.endswith(":int8") for kernel, _ in self.ops) else "fp32"


@dataclass(frozen=True)
class KernelTable:
    device: str
    runtime: str  # e.g. "ai-edge-litert 2.3.0" or "benchmark_model sha256:ab12... (v2.16)"
    threads: int
    rows: tuple[KernelRow, ...] = ()
    blocks: tuple[str, ...] = ()  # the calibration blocks measured (resumption skips them)
    floor_ms: float | None = None  # the time of an invoke that does almost nothing
    state: dict[str, Any] = field(default_factory=dict)  # device state, first/last batch
    chains: tuple[ChainRow, ...] = ()
    seconds: float = 0.0  # time spent calibrating, over every run that made the table

    def with_batch(self, rows: list[KernelRow], blocks: list[str],
                   chains: list[ChainRow] = ()) -> KernelTable:
        """This table and one more batch of measured blocks."""
        merged = sorted({*self.blocks, *blocks})
        ordered = sorted((*self.rows, *rows), key=lambda r: (r.block, r.kernel, r.features))
        networks = sorted((*self.chains, *chains), key=lambda c: (c.block, c.precision))
        return replace(self, rows=tuple(ordered), blocks=tuple(merged), chains=tuple(networks))

    def kernels(self) -> dict[str, int]:
        """Kernel type -> rows measured."""
        counts: dict[str, int] = {}
        for row in self.rows:
            counts[row.kernel] = counts.get(row.kernel, 0) + 1
        return dict(sorted(counts.items()))

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["schema"], data["features"] = SCHEMA, list(FEATURES)
        data["rows"] = [{**asdict(r), "features": list(r.features)} for r in self.rows]
        data["chains"] = [{"block": c.block, "ms": c.ms, "ops": [[k, list(f)] for k, f in c.ops],
                           "processes_ms": list(c.processes_ms)} for c in self.chains]
        return data

    @classmethod
    def of_dict(cls, data: dict[str, Any]) -> KernelTable:
        rows = tuple(KernelRow(r["block"], r["op"], r["kernel"], tuple(r["features"]), r["ms"],
                               tuple(r["processes_ms"])) for r in data["rows"])
        chains = tuple(ChainRow(c["block"], tuple((k, tuple(f)) for k, f in c["ops"]), c["ms"],
                                tuple(c["processes_ms"])) for c in data.get("chains", []))
        return cls(data["device"], data["runtime"], int(data["threads"]), rows,
                   tuple(data["blocks"]), data.get("floor_ms"), dict(data.get("state", {})),
                   chains, float(data.get("seconds", 0.0)))


def table_path(device: str) -> Path:
    """Where the table of the device profile ``device`` lives."""
    if not is_safe_name(device):
        raise UserError(f"device name {device!r} is not allowed in a file name: letters, "
                        "digits, '.', '_' and '-'")
    return user_cache("kernels", f"{device}.json")


def load(path: Path) -> KernelTable | None:
    """The table at ``path``; None when there is none; a UserError when it is unreadable
    or of another schema (it names the file, so it can be removed)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("schema") != SCHEMA or data.get("features") != list(FEATURES):
            raise ValueError("another schema")
        return KernelTable.of_dict(data)
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not a kernel table mobilectl can read ({exc}); remove it "
                        "and calibrate again") from None


def save(table: KernelTable, path: Path) -> None:
    """Write ``table`` atomically (a resumed calibration never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(table.as_dict(), indent=1, sort_keys=True) + "\n"
    write_atomic(path, text.encode())


def find(device: str) -> tuple[KernelTable, Path]:
    """The table for ``device``; a UserError says how to make one."""
    path = table_path(device)
    table = load(path)
    if table is None or not table.rows:
        raise UserError(f"no kernel table for device '{device}' (looked for {path}); make "
                        f"one: mobilectl device calibrate --device {device}")
    return table, path
