"""``mobilectl device calibrate``: time the kernels of the calibration grid on a device
and keep them in its kernel table (:mod:`device_profiles.kernel_table`).

Stages, per batch of blocks: build each block (:mod:`mobilectl.kernel_grid`), convert it
to TFLite in fp32 and int8 with the exporter's converter, cut every op into a model of
its own (:func:`device_profiles.op_bench.single_op_models`), time the cut kernels on the
device (this machine: LiteRT's interpreter in a process of its own; a phone:
benchmark_model over adb, through the profiling harness), append them to the table
and save it. A run stopped by ``--budget-min`` or by Ctrl-C keeps every finished
batch, and the next run resumes after them.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from device_profiles import kernel_table
from device_profiles.kernel_table import ChainRow, KernelRow, KernelTable
from device_profiles.kernels import kernel_ops
from device_profiles.profile import Profile, Transport
from mobilectl.core.errors import UserError
from mobilectl.core.files import sha256
from mobilectl.core.tfenv import log_path
from mobilectl.core.types import Format, Precision
from mobilectl.kernel_grid import CHAIN_KINDS, Block, grid, keras_block

Progress = Callable[[str], None]
#: each file's time in each process that timed it, or why none could
Times = dict[str, tuple[float, ...] | str]
PRECISIONS = (Precision.FP32, Precision.INT8)
BATCH = 12  # blocks converted and timed together, then saved
RUNS, WARMUP = 30, 5
#: fresh processes per batch on this machine: a process can run all its kernels 1.6-1.8x
#: slower than the next (bimodal here; the cause is not known), so each kernel takes the
#: fastest (:func:`kernel_ms`)
PROCESSES = 3
MAX_BUDGET_MIN = 24 * 60


@dataclass(frozen=True)
class CalibrateOptions:
    device: str = "host"
    budget_min: float = 20.0
    threads: int | None = None
    serials: tuple[str, ...] = ()
    benchmark_binary: str | None = None
    adb: str | None = None
    adb_server: str | None = None
    restart: bool = False

    def check(self) -> None:
        if not 0 < self.budget_min <= MAX_BUDGET_MIN:
            raise UserError(f"--budget-min {self.budget_min:g} is not allowed: more than 0 and "
                            f"at most {MAX_BUDGET_MIN} (minutes)")
        if self.threads is not None and not 1 <= self.threads <= 64:
            raise UserError(f"--threads {self.threads} is not allowed: from 1 to 64")


@dataclass
class CalibrateResult:
    table: KernelTable
    path: Path
    measured: int  # blocks measured in this run
    remaining: int  # blocks of the grid not yet measured
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# ---- timing backends ------------------------------------------------------------------

@dataclass
class HostTimer:
    """This machine: ``device_profiles.kernel_bench`` processes, :data:`PROCESSES` per
    batch."""

    threads: int

    def runtime(self) -> str:
        return f"ai-edge-litert {metadata.version('ai-edge-litert')}"

    def check(self) -> None:
        """Nothing to check: this machine is here."""

    def state(self) -> dict[str, Any]:
        from device_profiles import host  # numpy only, but keeps the table free of it

        return dataclasses.asdict(host.read_state())

    def time(self, files: Sequence[Path], progress: Progress) -> Times:
        """Each file's median in each of :data:`PROCESSES` fresh processes (the first
        error where no process could time it)."""
        runs = [self._one_process(files) for _ in range(PROCESSES)]
        found: Times = {}
        for file in dict.fromkeys(name for run in runs for name in run):
            times = tuple(run[file] for run in runs if isinstance(run.get(file), float))
            errors = [run[file] for run in runs if file in run]
            found[file] = times or errors[0]
        return found

    def _one_process(self, files: Sequence[Path]) -> dict[str, float | str]:
        argv = [sys.executable, "-m", "device_profiles.kernel_bench", f"--threads={self.threads}",
                f"--runs={RUNS}", f"--warmup={WARMUP}", *map(str, files)]
        found: dict[str, float | str] = {}
        with open(log_path(), "ab") as log:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True)
            for line in proc.stdout or ():
                row = json.loads(line)
                found[row["file"]] = row.get("ms", row.get("error", "no time"))
            proc.wait()
        return found


@dataclass
class AdbTimer:
    """A phone: benchmark_model on each kernel through the profiling harness."""

    profile: Profile
    options: CalibrateOptions
    threads: int
    tool: str = ""
    last_state: dict[str, Any] = field(default_factory=dict)

    def runtime(self) -> str:
        from device_profiles.harness import benchmark_binary  # adb only

        binary = benchmark_binary(self.profile.abi, self.options.benchmark_binary)
        return f"benchmark_model sha256:{sha256(binary.read_bytes())[:16]}{self.tool}"

    def state(self) -> dict[str, Any]:
        return self.last_state

    def check(self) -> None:
        """The phone is connected and ready, before any block is converted (a
        UserError names what is missing)."""
        from device_profiles.adb import AdbClient  # adb only
        from device_profiles.harness import select_devices  # adb only

        client = AdbClient(adb=self.options.adb, server=self.options.adb_server)
        select_devices(client, self.profile, self.options.serials)

    def time(self, files: Sequence[Path], progress: Progress) -> Times:
        from device_profiles.harness import Artifact, ProfileOptions, measure  # adb only
        from device_profiles.stats import RepeatPolicy  # adb only

        artifacts = [Artifact(f, f.stem, Format.TFLITE, Precision.FP32) for f in files]
        options = ProfileOptions(device=self.profile.name, serials=self.options.serials,
                                 threads=self.threads, runs=RUNS, warmup=WARMUP,
                                 benchmark_binary=self.options.benchmark_binary,
                                 adb=self.options.adb, adb_server=self.options.adb_server,
                                 repeat=RepeatPolicy(1, 1))
        result = measure(artifacts, self.profile, options, lambda _: None)  # batch-level progress
        found: Times = {m.artifact: (m.latency.median_ms,) for m in result.measurements}
        for failure in result.failures:
            found.setdefault(failure.split(":", 1)[0].split(" on ")[0], failure)
        if result.measurements:
            last = result.measurements[-1]
            self.tool = f" ({last.tool_version})" if last.tool_version else ""
            if last.state_after:
                self.last_state = {"serial": last.device, **dataclasses.asdict(last.state_after)}
        return found


def timer_for(profile: Profile, options: CalibrateOptions) -> HostTimer | AdbTimer:
    """The timing backend of the profile's transport."""
    threads = options.threads or profile.threads
    timers: dict[Transport, Callable[[], HostTimer | AdbTimer]] = {
        Transport.LOCAL: lambda: HostTimer(threads),
        Transport.ADB: lambda: AdbTimer(profile, options, threads)}
    return timers[profile.transport]()


# ---- stages ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Kernel:
    """One cut op of a converted block (or a whole chain): where its model is and what
    it is."""

    block: str
    file: str
    op: str
    kernel: str
    features: tuple[float, ...]
    ops: tuple[tuple[str, tuple[float, ...]], ...] = ()  # a chain's ops


def cut_block(block: Block, folder: Path) -> list[Kernel]:
    """Stage: build, convert (fp32 and int8) and cut ``block`` into its kernels (an op,
    or the ops the runtime runs as one: :attr:`KernelOp.group`); each kernel's model is
    written to ``folder`` (kernels with the same type and features once)."""
    from exporter import tflite  # heavy: TensorFlow

    model = keras_block(block)
    calibration = np.random.default_rng(0).normal(size=(8, *model.input_shape[1:]))
    found: dict[tuple[str, tuple[float, ...]], Kernel] = {}
    for precision in PRECISIONS:
        data = tflite.convert(model, precision=precision, calibration=calibration.astype("float32"))
        if block.kind in CHAIN_KINDS:  # timed whole
            file = f"{block.id}.{precision}.tflite"
            (folder / file).write_bytes(data)
            ops = tuple((op.kernel, op.features) for op in kernel_ops(data))
            found[(f"CHAIN:{precision}", ())] = Kernel(block.id, file, "CHAIN", "", (), ops)
            continue
        for key, kernel in _cut_kernels(data, block.id, str(precision), folder).items():
            found.setdefault(key, kernel)
    return list(found.values())


def _cut_kernels(data: bytes, block: str, precision: str,
                 folder: Path) -> dict[tuple[str, tuple[float, ...]], Kernel]:
    """Each kernel of ``data`` (``block`` converted at ``precision``) by its type and
    features, cut alone into ``folder`` (kernels alike once)."""
    from device_profiles.op_bench import group_models  # heavy: LiteRT

    ops = [op for op in kernel_ops(data) if not op.fused]
    found: dict[tuple[str, tuple[float, ...]], Kernel] = {}
    for op, cut in zip(ops, group_models(data, [sorted((*op.group, op.index)) for op in ops])):
        alone = next(o for o in kernel_ops(cut) if not o.fused) if cut else None
        if alone is not None and (alone.kernel, alone.features) not in found:
            file = f"{block}.{precision}.{op.index}.tflite"
            (folder / file).write_bytes(cut)
            found[(alone.kernel, alone.features)] = Kernel(block, file, alone.op, alone.kernel,
                                                           alone.features)
    return found


def floor_kernel(folder: Path) -> Path:
    """A kernel that does almost nothing (one 8-element float ADD): its time is the cost
    of an invoke, counted once per model, not once per op."""
    import keras  # heavy: Keras

    from exporter import tflite  # heavy: TensorFlow

    inputs = keras.Input((1, 1, 8), name="input")
    model = keras.Model(inputs, keras.layers.Add(name="floor")([inputs, inputs]))
    path = folder / "floor.tflite"
    path.write_bytes(tflite.convert(model))
    return path


def kernel_ms(processes: Sequence[float]) -> float:
    """A kernel's time from its processes' medians: the fastest. A slow process here is
    slow for every kernel it times (up to 2x: MobileNet V2 ran 1.6 ms in one process,
    3.6 ms in another), so the fastest process is the kernel's own speed; every
    process's figure stays in the table."""
    return float(min(processes))


def time_batch(kernels: Sequence[Kernel], folder: Path, timer: HostTimer | AdbTimer,
               progress: Progress) -> tuple[list[KernelRow], list[ChainRow], list[str]]:
    """Stage: time ``kernels`` on the device; kernel rows, chain rows, and one line per
    kernel that failed."""
    times = timer.time([folder / k.file for k in kernels], progress)
    rows, chains, failures = [], [], []
    for k in kernels:
        value = times.get(k.file)
        if not isinstance(value, tuple):
            failures.append(f"{k.file}: {value or 'not timed'}")
        elif k.ops:
            chains.append(ChainRow(k.block, k.ops, kernel_ms(value), value))
        else:
            rows.append(KernelRow(k.block, k.op, k.kernel, k.features, kernel_ms(value), value))
    return rows, chains, failures


def _start(path: Path, profile: Profile, timer: HostTimer | AdbTimer,
           options: CalibrateOptions) -> tuple[KernelTable, list[str]]:
    """The table to continue: the saved one when it was measured the same way, else a
    new one (with a warning naming what differs)."""
    fresh = KernelTable(profile.name, timer.runtime(), timer.threads)
    saved = None if options.restart else kernel_table.load(path)
    if saved is None:
        return fresh, []
    if (saved.runtime, saved.threads) != (fresh.runtime, fresh.threads):
        return fresh, [f"{path} was measured with {saved.runtime}, {saved.threads} thread(s); "
                       f"this run uses {fresh.runtime}, {fresh.threads} thread(s): starting afresh"]
    return saved, []


def calibrate(profile: Profile, options: CalibrateOptions, progress: Progress) -> CalibrateResult:
    """Measure the grid's blocks not yet in the device's table, batch by batch, until
    the grid is done or the time budget would be exceeded (the first batch always runs)."""
    options.check()
    timer = timer_for(profile, options)
    path = kernel_table.table_path(profile.name)
    table, warnings = _start(path, profile, timer, options)
    timer.check()
    done = set(table.blocks)
    todo = [b for b in grid() if b.id not in done]
    total, measured, failures = len(done) + len(todo), 0, []
    deadline, last = time.monotonic() + options.budget_min * 60, 0.0
    with tempfile.TemporaryDirectory(prefix="mobilectl-kernels-") as tmp:
        folder = Path(tmp)
        if table.floor_ms is None:
            table = _with_floor(table, folder, timer, progress)
        for start in range(0, len(todo), BATCH):
            if measured and time.monotonic() + last > deadline:
                break
            began = time.monotonic()
            batch = todo[start:start + BATCH]
            first = len(done) + measured + 1
            span = f"blocks {first}-{first + len(batch) - 1} of {total}"
            progress(f"{span}: build, convert and cut ({batch[0].kind}, ...)")
            kernels = [k for block in batch for k in cut_block(block, folder)]
            progress(f"{span}: time {len(kernels)} kernels on {profile.name}")
            rows, chains, failed = time_batch(kernels, folder, timer, progress)
            failures += failed
            table = table.with_batch(rows, [b.id for b in batch], chains)
            table = dataclasses.replace(table, state={**table.state, "last": timer.state()},
                                        seconds=table.seconds + time.monotonic() - began)
            kernel_table.save(table, path)
            measured += len(batch)
            for file in folder.glob("*.tflite"):
                file.unlink()
            last = time.monotonic() - began
    return CalibrateResult(table, path, measured, total - len(done) - measured, failures, warnings)


def _with_floor(table: KernelTable, folder: Path, timer: HostTimer | AdbTimer,
                progress: Progress) -> KernelTable:
    """Stage: the invoke floor and the device's state before the first batch."""
    progress("time an invoke that does almost nothing (the per-model floor)")
    floor = floor_kernel(folder)
    found = timer.time([floor], progress)
    value = found.get(floor.name)
    if not isinstance(value, tuple):
        raise UserError(f"the device could not run the calibration's first kernel: {value}")
    return dataclasses.replace(table, floor_ms=kernel_ms(value), state={"first": timer.state()})


def report(result: CalibrateResult) -> dict[str, Any]:
    """What the calibration left: the table, and what each regressor learned from it."""
    from device_profiles.predictor import Predictor  # heavy: scikit-learn

    predictor = Predictor(result.table)
    table = result.table
    return {"device": table.device, "table": str(result.path), "runtime": table.runtime,
            "threads": table.threads, "blocks": len(table.blocks), "kernels": len(table.rows),
            "chains": len(table.chains), "measured_now": result.measured,
            "remaining": result.remaining, "floor_ms": table.floor_ms,
            "fits": [dataclasses.asdict(f) for f in predictor.fits],
            "in_graph": [dataclasses.asdict(g) for g in predictor.in_graph.values()],
            "failures": result.failures, "warnings": result.warnings}
