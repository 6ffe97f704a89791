"""The latency harness: pick the device(s) a profile matches, run each artifact with
warm-up and repeated runs on the profile's backend (this machine, or a phone over
adb), and return what was measured. Artifacts are files, described by their manifest
entry when there is one (``mobilectl.core.manifest``); exporting models to measure is
the job of the workflows above this package.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device_profiles import host
from device_profiles.adb import REMOTE_DIR as REMOTE
from device_profiles.adb import AdbClient, AdbDevice, AdbError, DeviceLost, server_args
from device_profiles.device_state import (
    DeviceState, TooHot, big_cores_mask, parse_state, state_flags, wait_cool, STATE_SCRIPT,
)
from device_profiles.inspect import input_dims, precision_of
from device_profiles.bench_tool import ToolCapabilities, tool_capabilities
from device_profiles.measurement import BackendRun, Latency, Measurement, delegate_flags
from device_profiles.onnx_cost import dims_text
from device_profiles.op_tables import NoOpTables, parse_op_tables
from device_profiles.parse import BenchmarkOutputError, parse_benchmark_output
from device_profiles.per_layer import Device, OpTimes, PerLayer, of_file
from device_profiles.profile import Profile, Roofline, Transport, all_profiles
from device_profiles.sparse_lint import SparseLint, lint_if_sparse
from device_profiles.stats import RepeatPolicy, Repeated, interleave
from mobilectl.core.cost import shape_from_text
from mobilectl.core.errors import UserError
from mobilectl.core.files import sha256, user_cache
from mobilectl.core.manifest import MANIFEST, ManifestEntry, read_manifest
from mobilectl.core.types import Format, Precision
from quant.onnx_quant import host_arch

Progress = Callable[[str], None]
DELEGATE_FLAGS = {"cpu": ["--use_xnnpack=true"], "gpu": ["--use_gpu=true"],
                  "nnapi": ["--use_nnapi=true"]}


@dataclass(frozen=True)
class Artifact:
    """A file to measure and what is known of it."""

    path: Path
    model: str
    fmt: Format
    precision: Precision
    macs: int | None = None
    params: int | None = None
    input_shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()  # dynamic inputs, fixed

    @classmethod
    def of_entry(cls, path: Path, entry: ManifestEntry) -> Artifact:
        """An artifact its manifest entry describes."""
        return cls(path, entry.label, entry.format, entry.precision, entry.macs, entry.params)

    @classmethod
    def of_file(cls, path: Path) -> Artifact:
        """A file with no manifest: format from its suffix, precision from its tensors
        (a file that does not load is a UserError)."""
        fmt = Format(path.suffix.lstrip("."))
        return cls(path, path.stem, fmt, precision_of(path, fmt))


@dataclass(frozen=True)
class ProfileOptions:
    device: str = "host"
    serials: tuple[str, ...] = ()
    threads: int | None = None
    runs: int | None = None
    warmup: int | None = None
    delegate: str = "cpu"
    out: Path = Path("profile")
    benchmark_binary: str | None = None
    adb: str | None = None
    adb_server: str | None = None
    timeout_s: float | None = None
    input_shapes: tuple[InputShape, ...] = ()
    per_layer: bool = False
    repeat: RepeatPolicy = RepeatPolicy()
    max_temp_c: float | None = None  # overrides the profile's
    cool_timeout_s: float | None = None  # overrides the profile's


@dataclass(frozen=True)
class InputShape:
    """``--input-shape``: a shape for the input ``name`` (None: the only input)."""

    name: str | None
    shape: tuple[int, ...]

    @classmethod
    def parse(cls, text: str) -> InputShape:
        """``1,3,48,192`` or ``NAME:1,3,48,192``; positive integers only."""
        name, _, dims = text.rpartition(":")
        shape = shape_from_text(dims)
        if shape is None:
            raise UserError(f"--input-shape {text!r} is not allowed: positive integers "
                            "separated by commas, batch first, optionally after NAME: "
                            "(e.g. 1,3,224,224 or input:1,3,224,224)")
        return cls(name or None, shape)

    def text(self) -> str:
        return (f"{self.name}:" if self.name else "") + ",".join(map(str, self.shape))


def fix_inputs(artifact: Artifact, given: Sequence[InputShape]) -> Artifact:
    """``artifact`` with a shape for each dynamic input, from ``given``; a UserError
    names a dynamic input without one, an unknown input, a wrong rank or a clash with
    a fixed dimension (checked before anything runs)."""
    inputs = dict(input_dims(artifact.path, artifact.fmt))
    chosen: dict[str, tuple[int, ...]] = {}
    for shape in given:
        name = shape.name or (next(iter(inputs)) if len(inputs) == 1 else None)
        if name not in inputs:
            raise UserError(f"--input-shape {shape.text()}: {artifact.path.name} has no input "
                            f"{shape.name!r}" if shape.name else
                            f"--input-shape {shape.text()}: {artifact.path.name} has "
                            f"{len(inputs)} inputs; name one ({', '.join(inputs)})")
        dims = inputs[name]
        if len(dims) != len(shape.shape) or any(d is not None and d != s
                                                for d, s in zip(dims, shape.shape)):
            raise UserError(f"--input-shape {shape.text()} does not fit input '{name}' of "
                            f"{artifact.path.name}: {dims_text(dims)}")
        chosen[name] = shape.shape
    for name, dims in inputs.items():
        if None in dims and name not in chosen:
            raise UserError(f"{artifact.path.name}: input '{name}' has a dynamic shape "
                            f"{dims_text(dims)}; give --input-shape {name}:"
                            + ",".join(str(d) if d else "N" for d in dims))
    return dataclasses.replace(artifact, input_shapes=tuple(
        (name, chosen[name]) for name, dims in inputs.items() if None in dims))


@dataclass
class ProfileResult:
    device: str
    measurements: list[Measurement] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


# ---- what to measure ---------------------------------------------------------------

def artifacts_of(path: Path) -> list[Artifact]:
    """A ``.tflite``/``.onnx`` file (described by the manifest beside it, if any) or
    every artifact of a ``manifest.json``."""
    if not path.is_file():
        raise UserError(f"{path}: no such file; give a registry name, a .tflite/.onnx file "
                        "or a manifest.json")
    folder = path.parent
    entries = read_manifest(folder).by_path() if (folder / MANIFEST).is_file() else {}
    if path.name == MANIFEST:
        missing = [name for name in entries if not (folder / name).is_file()]
        if missing:
            raise UserError(f"{path} lists {missing[0]}, which is not in {folder}")
        return [Artifact.of_entry(folder / e.path, e) for e in entries.values()]
    entry = entries.get(path.name)
    if entry and sha256(path.read_bytes()) == entry.sha256:
        return [Artifact.of_entry(path, entry)]
    return [Artifact.of_file(path)]  # no entry, or the file changed since it was written


# ---- running ---------------------------------------------------------------------

def _settings(profile: Profile, options: ProfileOptions) -> tuple[int, int, int]:
    return (options.threads or profile.threads, options.runs or profile.runs,
            profile.warmup if options.warmup is None else options.warmup)


def _measurement(artifact: Artifact, *, device: str, threads: int, delegate: str,
                 runs: Sequence[BackendRun], policy: RepeatPolicy, peak_gmacs: float | None,
                 arch: str, layers: tuple[PerLayer | None, str | None] = (None, None),
                 states: Sequence[tuple[DeviceState, DeviceState]] = ()) -> Measurement:
    """One artifact's repetitions on one device as one measurement, with the device's
    state around them (``states``: before and after each repetition) and, for a TFLite
    file with sparse weights, whether XNNPACK would run them sparse on ``arch``."""
    run = BackendRun.combined(runs)
    flags = tuple(dict.fromkeys(f for before, after in states
                                for f in state_flags(before, after)))
    repeats = Repeated.of([r.latency.median_ms for r in runs], policy)
    latency = dataclasses.replace(run.latency, median_ms=repeats.median_ms)
    on_device = run.backend.startswith("benchmark_model")
    return Measurement(artifact.path.name, artifact.model, artifact.fmt, artifact.precision,
                       artifact.macs, artifact.params, artifact.path.stat().st_size, device,
                       run.backend, threads, delegate, latency, run.init_ms, run.peak_memory_mb,
                       peak_gmacs, *layers, run.first_inference_ms, repeats,
                       states[0][0] if states else None, states[-1][1] if states else None,
                       flags, _sparse_lint(artifact, arch), run.delegation,
                       delegate_flags(delegate, run.delegation) if on_device else (),
                       run.tool_version)


def _sparse_lint(artifact: Artifact, arch: str) -> SparseLint | None:
    if artifact.fmt != Format.TFLITE:
        return None
    return lint_if_sparse(artifact.path.read_bytes(), arch=arch)


def settle(profile: Profile, read: Callable[[], DeviceState],
           announce: Progress) -> DeviceState:
    """The device's state before a run: cooled below the profile's ``max_temp_c`` (or
    TooHot), else as it is."""
    if profile.max_temp_c is None:
        return read()
    return wait_cool(read, max_temp_c=profile.max_temp_c, timeout_s=profile.cool_timeout_s,
                     announce=announce)


def _repetition(rep: int, policy: RepeatPolicy) -> str:
    return f", repetition {rep + 1}" + (f" of {policy.min_reps}" if policy.min_reps ==
                                        policy.max_reps else f" (up to {policy.max_reps})")


ELEMENT_BYTES = {Precision.INT8: 1, Precision.FP16: 2}


def _device(roof: Roofline, precision: Precision) -> Device:
    return Device(roof.peak(precision), roof.bandwidth_gbs, ELEMENT_BYTES.get(precision, 4))


def _host_layers(artifact: Artifact, *, threads: int, runs: int, warmup: int,
                 roof: Roofline) -> tuple[PerLayer | None, str | None]:
    """Per-op times of ``artifact`` on this machine, joined per layer."""
    try:
        times = OpTimes.of_json(host.run_ops(artifact.path, threads=threads, runs=runs,
                                             warmup=warmup))
    except host.BenchmarkFailed as exc:
        return None, f"per-op timing failed: {exc}"
    return of_file(artifact.path, times, device=_device(roof, artifact.precision)), None


@functools.cache
def host_roofline() -> Roofline:
    """This machine's roofline, measured once per process (a build measuring many
    budgets pays for it once)."""
    return host.measure_roofline()


def run_host(artifacts: Sequence[Artifact], profile: Profile, options: ProfileOptions,
             progress: Progress) -> ProfileResult:
    """Measure on this machine, repetitions interleaved; the roofline is measured in
    the same run."""
    threads, runs, warmup = _settings(profile, options)
    for artifact in artifacts:  # before anything runs
        host.check_shapes(artifact.path, artifact.input_shapes)
    progress("measure this machine's peak GMAC/s and memory bandwidth")
    roof = host_roofline()
    result = ProfileResult(device="host", summary={"roofline": dataclasses.asdict(roof)})
    policy, count = options.repeat, len(artifacts)
    states: list[list[tuple[DeviceState, DeviceState]]] = [[] for _ in artifacts]
    reps: list[list[BackendRun]] = [[] for _ in artifacts]

    def once(i: int, rep: int) -> float | str:
        artifact = artifacts[i]
        before = settle(profile, host.read_state, progress)
        progress(f"[{i + 1}/{count}] {artifact.path.name} on host ({threads} thread"
                 f"{'s' if threads > 1 else ''})"
                 + _repetition(rep, policy))
        try:
            done = host.run_artifact(artifact.path, threads=threads, runs=runs, warmup=warmup,
                                     input_shapes=artifact.input_shapes)
        except host.BenchmarkFailed as exc:
            return f"{artifact.path.name}: {exc}"
        states[i].append((before, host.read_state()))
        reps[i].append(done)
        time.sleep(profile.cooldown_s)
        return done.latency.median_ms

    failed: dict[int, str] = {}
    try:
        failed = interleave(count, policy, once)
    except TooHot as exc:
        result.failures.append(f"host: {exc}; results so far kept")
    result.failures += [failed[i] for i in sorted(failed)]
    result.measurements += [_host_measurement(
        artifact, i, count, runs=reps[i], states=states[i], options=options, roof=roof,
        settings=(threads, runs, warmup), progress=progress)
        for i, artifact in enumerate(artifacts) if i not in failed and reps[i]]
    return result


def _host_measurement(artifact: Artifact, i: int, count: int, *, runs: list[BackendRun],
                      states: list[tuple[DeviceState, DeviceState]], options: ProfileOptions,
                      roof: Roofline, settings: tuple[int, int, int],
                      progress: Progress) -> Measurement:
    """One artifact's repetitions on the host, with its per-op times when asked."""
    threads, op_runs, warmup = settings
    layers: tuple[PerLayer | None, str | None] = (None, None)
    if options.per_layer:
        progress(f"[{i + 1}/{count}] {artifact.path.name}: time each op")
        layers = _host_layers(artifact, threads=threads, runs=op_runs, warmup=warmup, roof=roof)
    return _measurement(artifact, device="host", threads=threads, delegate="cpu", runs=runs,
                        policy=options.repeat, peak_gmacs=roof.peak(artifact.precision),
                        arch=host_arch(), layers=layers, states=states)


def select_devices(client: AdbClient, profile: Profile,
                   serials: Sequence[str]) -> list[AdbDevice]:
    """The device(s) to use: the given serials, or the one device the profile matches."""
    devices = client.devices()
    listing = ", ".join(f"{d.serial} ({d.state})" for d in devices) or "none"
    if serials:
        chosen = []
        for serial in serials:
            match = next((d for d in devices if d.serial == serial), None)
            if match is None:
                raise AdbError(f"no device with serial {serial}; connected: {listing}")
            chosen.append(_usable(match))
        return chosen
    usable = [d for d in devices if d.state == "device" and profile.match.matches(
        model=d.model, product=d.product, serial=d.serial)]
    if len(usable) > 1:
        raise AdbError(f"several devices match profile {profile.name} "
                       f"({', '.join(d.serial for d in usable)}): pick one with --serial")
    if usable:
        return usable
    blocked = [d for d in devices if d.state != "device"]
    if blocked:
        _usable(blocked[0])
    raise AdbError(f"no connected device matches profile {profile.name}; connected: {listing}")


def _usable(device: AdbDevice) -> AdbDevice:
    if device.state == "unauthorized":
        raise AdbError(f"device {device.serial} is unauthorized: accept the USB debugging "
                       "prompt on the phone (or check the device farm's adb keys), then retry")
    if device.state == "offline":
        raise AdbError(f"device {device.serial} is offline: reconnect it (adb reconnect) "
                       "and retry")
    if device.state != "device":
        raise AdbError(f"device {device.serial} is not ready (state: {device.state})")
    return device


def benchmark_binary(abi: str, given: str | None) -> Path:
    """``--benchmark-binary PATH``, else the cached binary for the ABI."""
    if given:
        path = Path(given)
        if not path.is_file():
            raise UserError(f"--benchmark-binary {given}: no such file")
        return path
    cached = binary_cache() / abi / "benchmark_model"
    if not cached.is_file():
        raise UserError(f"no benchmark_model for {abi}: pass --benchmark-binary PATH or run "
                        f"'mobilectl device setup --abi {abi}' (downloads TFLite's official one)")
    return cached


def binary_cache() -> Path:
    return user_cache("benchmark_model")


def run_adb(artifacts: Sequence[Artifact], profile: Profile, options: ProfileOptions,
            progress: Progress) -> ProfileResult:
    """Measure on the matching device(s) with ``benchmark_model``, several in parallel."""
    client = AdbClient(adb=options.adb, server=options.adb_server)
    devices = select_devices(client, profile, options.serials)
    binary = benchmark_binary(profile.abi, options.benchmark_binary)
    tflite = [a for a in artifacts if a.fmt == Format.TFLITE]
    result = ProfileResult(device=profile.name)
    result.failures += [f"{a.path.name}: ONNX runs on the host backend only"
                        for a in artifacts if a.fmt != Format.TFLITE]
    with ThreadPoolExecutor(max_workers=len(devices)) as pool:
        parts = list(pool.map(lambda d: _run_on_device(client, d, binary, tflite, profile,
                                                        options, progress), devices))
    for part in parts:
        result.measurements += part.measurements
        result.failures += part.failures
        result.warnings += part.warnings
        for key, value in part.summary.items():
            result.summary.setdefault(key, {}).update(value)
    return result


def _run_on_device(client: AdbClient, device: AdbDevice, binary: Path, artifacts: Sequence[Artifact],
                   profile: Profile, options: ProfileOptions, progress: Progress) -> ProfileResult:
    """Repetitions interleaved on one device, then one op-profiled run per model with
    ``--per-layer`` (profiling slows the runs it times, so they are not repetitions).
    A lost device keeps what finished."""
    result = ProfileResult(device=device.serial)
    bench = _DeviceBench(client, device.serial, profile, options, progress, result)
    gathered: list[list[BackendRun]] = [[] for _ in artifacts]
    layers: dict[int, tuple[PerLayer | None, str | None]] = {}

    def once(i: int, rep: int) -> float | str:
        found = bench.run(artifacts[i], i, len(artifacts), rep)
        if isinstance(found, str):
            return found
        gathered[i].append(found)
        return found.latency.median_ms

    try:
        bench.setup(binary)
        failed = interleave(len(artifacts), options.repeat, once)
        result.failures += [failed[i] for i in sorted(failed)]
        for i, artifact in enumerate(artifacts):
            if options.per_layer and gathered[i]:
                layers[i] = bench.layers(artifact)
    except TooHot as exc:
        result.failures.append(f"{device.serial}: {exc}; results so far kept")
    except DeviceLost as exc:
        if not any(str(exc) in failure for failure in result.failures):
            result.failures.append(f"{device.serial}: {exc}")  # lost during setup
    except AdbError as exc:  # setup failed (e.g. no space for the binary): nothing ran
        result.failures.append(f"{device.serial}: {exc}")
    finally:
        bench.release()
        _cleanup(client, device.serial)
    result.measurements = [_measurement(
        artifact, device=f"{profile.name}:{device.serial}", threads=bench.threads,
        delegate=options.delegate, runs=gathered[i], policy=options.repeat,
        peak_gmacs=profile.roofline.peak(artifact.precision), arch=profile.arch,
        layers=layers.get(i, (None, None)), states=bench.states.get(i, ()))
        for i, artifact in enumerate(artifacts) if gathered[i]]
    return result


@dataclass
class _DeviceBench:
    """``benchmark_model`` on one device: set up, one repetition, one profiled run."""

    client: AdbClient
    serial: str
    profile: Profile
    options: ProfileOptions
    progress: Progress
    result: ProfileResult
    pushed: set[str] = field(default_factory=set)
    mask: str | None = None  # the cores benchmark_model is pinned to
    fixed_performance: bool = False  # turned on here: turn it off at the end
    tool: ToolCapabilities | None = None  # what the pushed benchmark_model can report
    states: dict[int, list[tuple[DeviceState, DeviceState]]] = field(default_factory=dict)

    @property
    def threads(self) -> int:
        return _settings(self.profile, self.options)[0]

    def setup(self, binary: Path) -> None:
        self.client.shell(self.serial, ["mkdir", "-p", REMOTE])
        self.client.push(self.serial, binary, f"{REMOTE}/benchmark_model")
        self.client.shell(self.serial, ["chmod", "755", f"{REMOTE}/benchmark_model"])
        self.tool = tool_capabilities(self.client, self.serial, binary,
                                      remote=f"{REMOTE}/benchmark_model", abi=self.profile.abi)
        self.mask = self.profile.affinity_mask or big_cores_mask(self.state())
        self.fixed_performance = self.performance_mode(True)
        self.result.summary.setdefault("fixed_performance_mode", {})[self.serial] = \
            self.fixed_performance
        self.result.summary.setdefault("affinity_mask", {})[self.serial] = self.mask

    def state(self) -> DeviceState:
        """The phone's governors, clocks, temperatures and battery now."""
        return parse_state(self.client.shell(self.serial, ["sh", "-c", STATE_SCRIPT],
                                             timeout=30))

    def performance_mode(self, on: bool) -> bool:
        """Android's fixed performance mode (steady clocks) on or off; False, with a
        warning when turning it on, where the device does not offer it."""
        try:
            self.client.shell(self.serial, ["cmd", "power", "set-fixed-performance-mode-enabled",
                                            "true" if on else "false"], timeout=30)
        except DeviceLost:
            raise
        except AdbError as exc:
            if on:
                self.result.warnings.append(f"{self.serial}: fixed performance mode not "
                                            f"offered ({exc}); clocks may vary")
            return False
        return True

    def release(self) -> None:
        """Turn fixed performance mode off again, whatever happened."""
        if self.fixed_performance:
            try:
                self.performance_mode(False)
            except AdbError:
                pass  # the device is gone: nothing to turn off
            self.fixed_performance = False

    def output(self, artifact: Artifact, *, profiled: bool = False) -> str:
        """benchmark_model's output on ``artifact`` (pushed on first use)."""
        threads, runs, warmup = _settings(self.profile, self.options)
        remote = f"{REMOTE}/{artifact.path.name}"
        timeout = self.options.timeout_s or max(120.0, 2.0 * (runs + warmup))
        if remote not in self.pushed:
            self.client.push(self.serial, artifact.path, remote)
            self.pushed.add(remote)
        pin = ["taskset", self.mask] if self.mask else []
        return self.client.shell(self.serial, [
            *pin, f"{REMOTE}/benchmark_model", f"--graph={remote}", f"--num_threads={threads}",
            f"--num_runs={runs}", f"--warmup_runs={warmup}",
            *DELEGATE_FLAGS[self.options.delegate], *_input_flags(artifact),
            *(self.tool.extra_flags(timeout) if self.tool else ()),
            *(["--enable_op_profiling=true"] if profiled else [])], timeout=timeout,
            check=False)  # a failed run's own words are in its output: the parser reads them

    def run(self, artifact: Artifact, i: int, count: int, rep: int) -> BackendRun | str:
        """One repetition, or why it failed."""
        before = settle(self.profile, self.state, self.progress)
        self.progress(f"[{i + 1}/{count}] {artifact.path.name} on {self.serial}"
                      + _repetition(rep, self.options.repeat))
        try:
            parsed = parse_benchmark_output(self.output(artifact))
            self.states.setdefault(i, []).append((before, self.state()))
        except DeviceLost as exc:
            self.result.failures.append(f"{artifact.path.name}: {exc}")
            raise
        except AdbError as exc:
            return f"{artifact.path.name} on {self.serial}: {exc}"
        except BenchmarkOutputError as exc:
            return f"{artifact.path.name} on {self.serial}: benchmark_model: {exc}"
        stats = parsed.inference
        latency = Latency(stats.count, stats.median_ms or stats.avg_ms, stats.p5_ms,
                          stats.p95_ms, stats.avg_ms, stats.std_ms, stats.min_ms, stats.max_ms)
        time.sleep(self.profile.cooldown_s)
        memory = parsed.peak_memory_mb if parsed.peak_memory_mb is not None \
            else parsed.memory_overall_mb
        version = parsed.version or (self.tool.version if self.tool else None)
        return BackendRun(latency, parsed.init_ms, memory, "benchmark_model (adb)",
                          parsed.first_inference_ms, parsed.delegation(self.options.delegate),
                          version)

    def layers(self, artifact: Artifact) -> tuple[PerLayer | None, str | None]:
        """One op-profiled run of ``artifact``, joined per layer."""
        self.progress(f"{artifact.path.name} on {self.serial}: time each op")
        try:
            output = self.output(artifact, profiled=True)
            whole = parse_benchmark_output(output).inference.avg_ms
        except DeviceLost:
            raise
        except (AdbError, BenchmarkOutputError) as exc:
            return None, f"op-profiled run failed: {exc}"
        return _device_layers(artifact, output, self.profile.roofline, whole_ms=whole)


def _device_layers(artifact: Artifact, output: str, roof: Roofline, *,
                   whole_ms: float | None) -> tuple[PerLayer | None, str | None]:
    """The op-profiling tables of benchmark_model's output, joined per layer (against
    ``whole_ms``: the mean of the same profiled runs); when the output has none, why
    (the whole-model figures stand)."""
    try:
        times = parse_op_tables(output, whole_ms=whole_ms)
    except NoOpTables as exc:
        return None, str(exc)
    return of_file(artifact.path, times, device=_device(roof, artifact.precision)), None


def _input_flags(artifact: Artifact) -> list[str]:
    """benchmark_model's flags for the shapes of dynamic inputs (none when static)."""
    if not artifact.input_shapes:
        return []
    names = ",".join(name for name, _ in artifact.input_shapes)
    shapes = ":".join(",".join(map(str, shape)) for _, shape in artifact.input_shapes)
    return [f"--input_layer={names}", f"--input_layer_shape={shapes}"]


def _cleanup(client: AdbClient, serial: str) -> None:
    """Remove what was pushed; a device that is gone has nothing left to clean."""
    try:
        client.shell(serial, ["rm", "-rf", REMOTE], timeout=15)
    except AdbError:
        pass


BACKENDS: dict[Transport, Callable[..., ProfileResult]] = {
    Transport.LOCAL: run_host, Transport.ADB: run_adb}


def check_options(profile: Profile, options: ProfileOptions) -> None:
    """Options the profile cannot honour are errors before anything runs."""
    if options.delegate not in profile.delegates:
        raise UserError(f"--delegate {options.delegate!r} is not allowed for {profile.name}: "
                        f"one of {', '.join(profile.delegates)}")
    if options.adb_server:
        server_args(options.adb_server)  # HOST:PORT, or a UserError naming it
    for flag, value in (("--max-temp-c", options.max_temp_c),
                        ("--cool-timeout", options.cool_timeout_s)):
        if value is not None and not 0 <= value <= 1000:
            raise UserError(f"{flag} {value:g} is not allowed: from 0 to 1000")
    if profile.transport == Transport.LOCAL:
        adb_only = [flag for flag, value in (("--serial", options.serials),
                                             ("--benchmark-binary", options.benchmark_binary),
                                             ("--adb-server", options.adb_server),
                                             ("--adb", options.adb)) if value]
        if adb_only:
            raise UserError(f"{adb_only[0]} is not allowed with --device {profile.name}: it "
                            "applies to adb devices (e.g. --device pixel)")


def per_layer_warning(options: ProfileOptions) -> str | None:
    """Why ``--per-layer`` cannot be honoured with these options (None: it can)."""
    if options.per_layer and options.delegate != "cpu":
        return (f"--per-layer needs --delegate cpu: the {options.delegate} delegate runs the "
                "model as one node, so only whole-model figures are reported")
    return None


def formats_for(profile: Profile) -> tuple[Format, ...]:
    """What the profile's backend runs: both formats here, TFLite on a phone."""
    return (Format.TFLITE, Format.ONNX) if profile.transport == Transport.LOCAL else (Format.TFLITE,)


def measure(artifacts: Sequence[Artifact], profile: Profile, options: ProfileOptions,
            progress: Progress) -> ProfileResult:
    """Measure ``artifacts`` on the profile's backend. Failures are collected, not
    raised, so the results of the artifacts that finished are kept."""
    check_options(profile, options)
    artifacts = [fix_inputs(a, options.input_shapes) for a in artifacts]  # up front
    profile = dataclasses.replace(
        profile, max_temp_c=profile.max_temp_c if options.max_temp_c is None
        else options.max_temp_c, cool_timeout_s=profile.cool_timeout_s
        if options.cool_timeout_s is None else options.cool_timeout_s)
    warning = per_layer_warning(options)
    if warning:
        options = dataclasses.replace(options, per_layer=False)
    result = BACKENDS[profile.transport](artifacts, profile, options, progress)
    result.warnings += [warning] if warning else []
    result.warnings += [f"{m.artifact}: {m.per_layer_error}" for m in result.measurements
                        if m.per_layer_error]
    result.warnings += [f"{m.artifact} on {m.device}: {flag}" for m in result.measurements
                        for flag in (*m.state_flags, *m.delegate_flags)]
    return result


def device_rows(client: AdbClient) -> list[dict[str, Any]]:
    """``mobilectl devices``: every adb device with state, model, ABI and profile."""
    profiles = [p for p in all_profiles() if p.transport == "adb"]
    profiles.sort(key=lambda p: p.match.serial == ("*",))  # catch-all profiles last
    rows = []
    for d in client.devices():
        match = next((p.name for p in profiles if d.state == "device" and p.match.matches(
            model=d.model, product=d.product, serial=d.serial)), None)
        rows.append({"serial": d.serial, "state": d.state, "model": d.model,
                     "product": d.product, "abi": d.abi, "profile": match})
    return rows
