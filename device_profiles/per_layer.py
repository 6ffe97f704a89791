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
- ``no MACs``: a data-movement or element-wise op taking a visible share of the time;
- ``int8 Nx float``: with the float twin profiled too, the int8 ops of a set
  of layers take longer than the float ops of the same layers; an element-wise op
  says ``requantization`` (int8 ADD/MUL/CONCATENATION rescale every input to the
  output's scale, work float does not do, as Jacob et al. 2018 derive for integer
  addition), a (de)quantize op says the float graph has no such op.

With the float twin, each int8 row also carries the float time of its layers and the
layer's int8 error from the quantization debugger (RMSE in output quantization steps,
:mod:`quant.sensitivity`), so time and error are read in one row.
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
SLOWER_RATIO = 1.1  # int8 over float time of the same layers above this: flagged
#: op kinds whose int8 kernels rescale their inputs (TFLite and ONNX spellings)
REQUANTIZING = frozenset({"ADD", "SUB", "MUL", "CONCATENATION", "HARD_SWISH", "PRELU",
                          "LOGISTIC", "MEAN", "AVERAGE_POOL_2D", "QLinearAdd", "QLinearMul",
                          "QLinearConcat", "QLinearSigmoid", "QLinearGlobalAveragePool"})
QUANTIZE_OPS = frozenset({"QUANTIZE", "DEQUANTIZE", "QuantizeLinear", "DequantizeLinear"})


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
    float_ms: float | None = None  # the float twin's time on the row's set of layers
    set_ms: float | None = None  # this table's time on that set (several ops may share it)
    rmse_steps: float | None = None  # int8 error of the row's op, in quantization steps

    @property
    def versus_float(self) -> float | None:
        """int8 over float time on the row's set of layers."""
        return self.set_ms / self.float_ms if self.set_ms and self.float_ms else None


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

    @property
    def has_float_twin(self) -> bool:
        return any(r.float_ms is not None for r in self.rows)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["parts_over_whole"] = self.parts_over_whole
        for row, out in zip(self.rows, data["rows"]):
            out["versus_float"] = row.versus_float
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
class LayerError:
    """The int8 error one quantized op adds (the quantization debugger's row)."""

    tensor: str  # the op's output tensor
    layers: tuple[str, ...]
    rmse_steps: float


def against_float(table: PerLayer, reference: PerLayer, *,
                  errors: Sequence[LayerError] = ()) -> PerLayer:
    """``table`` (int8) with each row's float time on the same set of layers, its int8
    error (matched by output tensor, else by the same set of layers) and the
    ``int8 Nx float`` flag where the data says so."""
    sets = layer_sets(table, reference)
    ours, theirs = _by_set(table, sets), _by_set(reference, sets)
    by_tensor = {e.tensor: e.rmse_steps for e in errors}
    by_layers: dict[frozenset[str], float] = {}
    for e in errors:
        key = frozenset(e.layers)
        by_layers[key] = max(by_layers.get(key, 0.0), e.rmse_steps)
    rows = []
    for row in table.rows:
        key = sets[row.layers[0]] if row.layers else ()
        float_ms = sum(r.ms or 0.0 for r in theirs[key]) if key in theirs else None
        set_ms = sum(r.ms or 0.0 for r in ours[key]) if float_ms is not None else None
        error = by_tensor.get(row.tensor or "", by_layers.get(frozenset(row.layers))
                              if row.layers else None)
        paired = dataclasses.replace(row, float_ms=float_ms, set_ms=set_ms, rmse_steps=error)
        rows.append(dataclasses.replace(paired, flags=paired.flags + _slower(paired)))
    return dataclasses.replace(table, rows=tuple(rows))


def _slower(row: LayerRow) -> tuple[str, ...]:
    ratio = row.versus_float
    if ratio is None or ratio <= SLOWER_RATIO:
        return ()
    why = ("requantization" if row.kind in REQUANTIZING
           else "no float op" if row.kind in QUANTIZE_OPS else "")
    return (f"int8 {ratio:.1f}x float" + (f" ({why})" if why else ""),)


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


def layer_sets(*tables: PerLayer) -> dict[str, tuple[str, ...]]:
    """Each layer's set: the smallest sets of layers that the rows of every table
    cover whole (two builds fuse differently: float ``{conv,bn,act}`` in one op, int8
    ``{conv,bn}`` and ``act`` in two), so times over a set compare like for like."""
    parent: dict[str, str] = {}

    def root(layer: str) -> str:
        while parent.setdefault(layer, layer) != layer:
            parent[layer] = parent[parent[layer]]
            layer = parent[layer]
        return layer

    for table in tables:
        for row in table.rows:
            for layer in row.layers[1:]:
                parent[root(layer)] = root(row.layers[0])
            if row.layers:
                root(row.layers[0])
    members: dict[str, list[str]] = {}
    for layer in parent:  # insertion order: the first table's run order
        members.setdefault(root(layer), []).append(layer)
    return {layer: tuple(members[root(layer)]) for layer in parent}


def _by_set(table: PerLayer, sets: dict[str, tuple[str, ...]]
            ) -> dict[tuple[str, ...], list[LayerRow]]:
    groups: dict[tuple[str, ...], list[LayerRow]] = {}
    for row in table.rows:
        if row.layers:
            groups.setdefault(sets[row.layers[0]], []).append(row)
    return groups


def compare(table: PerLayer, reference: PerLayer) -> tuple[LayerPair, ...]:
    """The layers both tables time, slowest extra time first: ``table``'s ops on a set
    of layers (:func:`layer_sets`) against ``reference``'s ops on the same set."""
    sets = layer_sets(table, reference)
    ours, theirs = _by_set(table, sets), _by_set(reference, sets)
    pairs = []
    for key in ours.keys() & theirs.keys():
        rows = ours[key]
        pairs.append(LayerPair(
            key, sum(r.ms or 0.0 for r in rows), sum(r.ms or 0.0 for r in theirs[key]),
            tuple(dict.fromkeys(r.kind for r in rows)),
            tuple(dict.fromkeys(r.kernel or "-" for r in rows)),
            tuple(dict.fromkeys(f for r in rows for f in r.flags))))
    return tuple(sorted(pairs, key=lambda p: (-(p.ms - p.reference_ms), p.layers)))
