"""Per-layer answers: where the time goes and why.

A runtime's per-op times (:mod:`device_profiles.op_bench` on this machine,
``benchmark_model --enable_op_profiling`` on a phone, :mod:`device_profiles.op_tables`)
are tied to the ops of the file (:mod:`device_profiles.layer_map`), joined with the
FLOPs proxy the file itself gives (MACs and memory access of every op:
:mod:`device_profiles.tflite_cost`, :mod:`device_profiles.onnx_cost`), and flagged
where the data says why a row is slow. Works on any ``.tflite``/``.onnx`` file; rows
of files with no Keras names carry the file's op names.

Flags (the reasons the measurements support):
- ``not XNNPACK``: LiteRT ran the op with its builtin reference kernel, not XNNPACK's
  (read from the interpreter's execution plan);
- ``memory-bound``: GMAC/s far below the model's median and fewer MACs per byte moved
  than the device's roofline balance (peak GMAC/s over bandwidth), as Ma et al. (2018,
  ShuffleNet V2) argue memory access cost, not FLOPs, sets such layers' speed;
- ``slow kernel``: GMAC/s far below the median with enough MACs per byte;
- ``no MACs``: a data-movement or element-wise op taking a visible share of the time.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence
from pathlib import Path
from dataclasses import asdict, dataclass
from typing import Any

from device_profiles import onnx_cost, tflite_cost
from device_profiles.inspect import load_onnx
from device_profiles.layer_map import FileOp, known_layers, op_layers, resolve_onnx
from mobilectl.core.cost import LayerCost

SLOW_FRACTION = 0.25  # GMAC/s below this fraction of the model's median: flagged
VISIBLE_SHARE = 0.03  # an op without MACs above this share of the time: flagged


@dataclass(frozen=True)
class TimedOp:
    """One row of a runtime's per-op timing, before it is tied to the file."""

    kind: str
    name: str
    ms: float | None
    kernel: str | None = None
    index: int | None = None  # the file op, when the runtime says which


@dataclass(frozen=True)
class OpTimes:
    """A runtime's per-op timing of one model."""

    ops: tuple[TimedOp, ...]
    method: str
    whole_ms: float | None  # the whole model timed the same way, when known
    by_type: tuple[tuple[str, int, float], ...] = ()  # the runtime's own summary, if any

    @classmethod
    def of_json(cls, data: dict[str, Any]) -> OpTimes:
        """From :mod:`device_profiles.op_bench`'s JSON."""
        return cls(tuple(TimedOp(o["kind"], o["name"], o["ms"], o.get("kernel"), o.get("index"))
                         for o in data["ops"]), data["method"], data.get("whole_ms"))


@dataclass(frozen=True)
class LayerRow:
    """One row of the per-layer table: a runtime op and the Keras layers it ran."""

    layers: tuple[str, ...]
    kind: str
    name: str
    ops: tuple[int, ...]
    ms: float | None
    share: float | None
    macs: int
    memory_bytes: int
    gmacs: float | None
    roofline_fraction: float | None
    kernel: str | None
    flags: tuple[str, ...]
    tensor: str | None = None  # the output of the row's last file op (Model Explorer's key)


@dataclass(frozen=True)
class PerLayer:
    """The per-layer table of one artifact on one device."""

    method: str
    rows: tuple[LayerRow, ...]
    sum_ms: float
    whole_ms: float | None
    unmapped: tuple[str, ...]  # runtime ops tied to no Keras layer, by name

    @property
    def parts_over_whole(self) -> float | None:
        """Sum of the per-op times over the whole model's time."""
        return self.sum_ms / self.whole_ms if self.whole_ms else None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["parts_over_whole"] = self.parts_over_whole
        return data


@dataclass(frozen=True)
class Device:
    """What the flags compare against: the roofline for the artifact's precision."""

    peak_gmacs: float | None
    bandwidth_gbs: float | None
    element_bytes: int


def file_groups(times: OpTimes, ops: Sequence[FileOp], *, onnx: bool) -> list[tuple[int, ...]]:
    """For each timed op, the file ops it stands for."""
    if onnx:
        return resolve_onnx([t.name for t in times.ops], ops)
    count = len(ops)
    return [(t.index,) if t.index is not None and 0 <= t.index < count
            and ops[t.index].kind == t.kind else () for t in times.ops]


def join(times: OpTimes, ops: Sequence[FileOp], costs: Sequence[LayerCost], *,
         device: Device, onnx: bool) -> PerLayer:
    """The per-layer table: each timed op with its layers, MACs, bytes and flags."""
    known = known_layers(ops)
    total = sum(t.ms or 0.0 for t in times.ops)
    rows = []
    for timed, group in zip(times.ops, file_groups(times, ops, onnx=onnx)):
        layers = tuple(dict.fromkeys(l for i in group for l in op_layers(ops[i], known)))
        macs = sum(costs[i].macs for i in group)
        moved = sum(costs[i].memory_access_bytes(device.element_bytes) for i in group)
        gmacs = macs / (timed.ms * 1e6) if macs and timed.ms else None
        rows.append(LayerRow(
            layers, timed.kind, timed.name, group, timed.ms,
            timed.ms / total if total and timed.ms is not None else None, macs, moved, gmacs,
            gmacs / device.peak_gmacs if gmacs and device.peak_gmacs else None,
            timed.kernel, (), ops[group[-1]].outputs[0] if group and ops[group[-1]].outputs
            else None))
    rows = _flagged(rows, device)
    return PerLayer(times.method, tuple(rows), total, times.whole_ms,
                    tuple(r.name for r in rows if not r.layers))


def _flagged(rows: list[LayerRow], device: Device) -> list[LayerRow]:
    rates = [r.gmacs for r in rows if r.gmacs]
    median = statistics.median(rates) if rates else None
    balance = (device.peak_gmacs / device.bandwidth_gbs
               if device.peak_gmacs and device.bandwidth_gbs else None)
    return [_with_flags(r, median, balance) for r in rows]


def _with_flags(row: LayerRow, median: float | None, balance: float | None) -> LayerRow:
    flags = []
    if row.kernel == "builtin":
        flags.append("not XNNPACK")
    if row.gmacs and median and row.gmacs < SLOW_FRACTION * median:
        intensity = row.macs / row.memory_bytes if row.memory_bytes else None
        if balance and intensity is not None and intensity < balance:
            flags.append(f"memory-bound ({intensity:.1f} MAC/B)")
        else:
            flags.append("slow kernel")
    if not row.macs and (row.share or 0) > VISIBLE_SHARE:
        flags.append("no MACs")
    return dataclasses.replace(row, flags=tuple(flags))


def of_file(path: Path, times: OpTimes, *, device: Device) -> PerLayer:
    """:func:`join` for a ``.tflite`` or ``.onnx`` file, its ops and costs read from it."""
    if path.suffix == ".onnx":
        proto = load_onnx(path)
        ops, cost = onnx_cost.file_ops(proto), onnx_cost.analyze(proto, name=path.name)
    else:
        data = tflite_cost.read(path)
        ops, cost = tflite_cost.file_ops(data), tflite_cost.analyze(data, name=path.name)
    return join(times, ops, cost.layers, device=device, onnx=path.suffix == ".onnx")


@dataclass(frozen=True)
class LayerPair:
    """One set of layers in two builds of a model (e.g. int8 against float): the time
    each spent on them, and what ran them."""

    layers: tuple[str, ...]
    ms: float
    reference_ms: float
    kinds: tuple[str, ...]
    kernels: tuple[str, ...]
    flags: tuple[str, ...]

    @property
    def ratio(self) -> float | None:
        return self.ms / self.reference_ms if self.reference_ms else None


def _by_layers(table: PerLayer) -> dict[frozenset[str], list[LayerRow]]:
    groups: dict[frozenset[str], list[LayerRow]] = {}
    for row in table.rows:
        if row.layers:
            groups.setdefault(frozenset(row.layers), []).append(row)
    return groups


def compare(table: PerLayer, reference: PerLayer) -> tuple[LayerPair, ...]:
    """The layers both tables time, slowest extra time first: ``table``'s ops on a set
    of layers (a fused op's, or the several ops one layer became) against
    ``reference``'s ops on the same set."""
    ours, theirs = _by_layers(table), _by_layers(reference)
    pairs = []
    for key in ours.keys() & theirs.keys():
        rows = ours[key]
        pairs.append(LayerPair(
            rows[0].layers, sum(r.ms or 0.0 for r in rows),
            sum(r.ms or 0.0 for r in theirs[key]),
            tuple(dict.fromkeys(r.kind for r in rows)),
            tuple(dict.fromkeys(r.kernel or "-" for r in rows)),
            tuple(dict.fromkeys(f for r in rows for f in r.flags))))
    return tuple(sorted(pairs, key=lambda p: (-(p.ms - p.reference_ms), p.layers)))
