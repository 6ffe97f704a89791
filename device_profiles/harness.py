"""The latency harness behind ``mobilectl profile``: resolve what to measure (registry
names are exported first, reusing artifacts the manifest shows are current), pick the
device(s) the profile matches, run each artifact with warm-up and repeated runs, and
report real speed next to the FLOPs proxy.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device_profiles.adb import REMOTE_DIR as REMOTE
from device_profiles.measurement import Latency, Measurement
from device_profiles.profile import Profile, all_profiles, load_profile
from mobilectl.errors import UserError

Progress = Callable[[str], None]
PRECISIONS = ("fp32", "int8")
DELEGATE_FLAGS = {"cpu": ["--use_xnnpack=true"], "gpu": ["--use_gpu=true"],
                  "nnapi": ["--use_nnapi=true"]}


@dataclass(frozen=True)
class Artifact:
    """A file to measure and what is known of it."""

    path: Path
    model: str
    fmt: str
    precision: str
    macs: int | None = None
    params: int | None = None


@dataclass(frozen=True)
class ProfileOptions:
    device: str = "host"
    serials: tuple[str, ...] = ()
    threads: int | None = None
    runs: int | None = None
    warmup: int | None = None
    delegate: str = "cpu"
    precision: str = "fp32"
    out: Path = Path("profile")
    benchmark_binary: str | None = None
    adb: str | None = None
    adb_server: str | None = None
    timeout_s: float | None = None


@dataclass
class ProfileResult:
    device: str
    measurements: list[Measurement] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


# ---- what to measure ---------------------------------------------------------------

def resolve_targets(targets: Sequence[str], *, precision: str, formats: tuple[str, ...],
                    out: Path, progress: Progress) -> list[Artifact]:
    """Files, manifests and registry names (exported, or reused when current) ->
    artifacts. No target: the zoo's default variants (one model per family)."""
    if not targets:
        from models_keras.registry import family_representatives

        targets = [spec.name for spec in family_representatives()]
    found: list[Artifact] = []
    for target in targets:
        path = Path(target)
        if path.name == "manifest.json" or path.suffix in (".tflite", ".onnx"):
            found += _from_files(path)
        else:
            found += _exported(target, precision=precision, formats=formats,
                               out=out / "artifacts", progress=progress)
    return found


def _from_files(path: Path) -> list[Artifact]:
    if not path.is_file():
        raise UserError(f"{path}: no such file; give a registry name, a .tflite/.onnx file "
                        "or a manifest.json")
    manifest = path if path.name == "manifest.json" else path.parent / "manifest.json"
    entries = _manifest_entries(manifest)
    if path.name == "manifest.json":
        return [_artifact(manifest.parent / e["path"], e) for e in entries.values()]
    return [_artifact(path, entries.get(path.name))]


def _manifest_entries(manifest: Path) -> dict[str, dict[str, Any]]:
    if not manifest.is_file():
        return {}
    from exporter.artifacts import read_manifest

    return {e["path"]: e for e in read_manifest(manifest.parent)["artifacts"]}


def _artifact(path: Path, entry: dict[str, Any] | None) -> Artifact:
    fmt = path.suffix.lstrip(".")
    if entry is None:
        stem = path.stem
        precision = next((p for p in ("int8", "fp16", "dynamic", "fp32") if stem.endswith(p)), "fp32")
        return Artifact(path, stem, fmt, precision)
    model = entry["model"] + (f"-{entry['variant']}" if entry.get("variant") else "")
    return Artifact(path, model, entry["format"], entry["precision"], entry.get("macs"),
                    entry.get("params"))


def _exported(name: str, *, precision: str, formats: tuple[str, ...], out: Path,
              progress: Progress) -> list[Artifact]:
    """Export ``name`` at its default knobs, unless the manifest lists current files."""
    from exporter.artifacts import artifact_name, read_manifest, sha256, tool_versions
    from exporter.pipeline import ExportOptions, export

    entries = read_manifest(out)["artifacts"] if out.is_dir() else []
    wanted = {artifact_name(name, "", precision, fmt): fmt for fmt in formats}
    tools, current = tool_versions(), {}
    for e in entries:
        file = out / e["path"]
        if (e["path"] in wanted and e.get("tools") == tools and e.get("origin") == "registry"
                and file.is_file() and sha256(file.read_bytes()) == e["sha256"]):
            current[e["path"]] = e
    if set(current) != set(wanted):
        progress(f"export {name} ({precision})")
        export(name, options=ExportOptions(precision=precision, formats=formats,
                                           calib_samples=32, held_out=8), out=out)
        current = {e["path"]: e for e in read_manifest(out)["artifacts"] if e["path"] in wanted}
    else:
        progress(f"reuse {name} ({precision}): manifest is current")
    return [_artifact(out / path, current[path]) for path in sorted(current)]


# ---- running ---------------------------------------------------------------------

def _settings(profile: Profile, options: ProfileOptions) -> tuple[int, int, int]:
    return (options.threads or profile.threads, options.runs or profile.runs,
            profile.warmup if options.warmup is None else options.warmup)


def _measurement(artifact: Artifact, *, device: str, backend: str, threads: int,
                 delegate: str, latency: Latency, init_ms: float | None,
                 peak_memory_mb: float | None, peak_gmacs: float | None) -> Measurement:
    return Measurement(artifact.path.name, artifact.model, artifact.fmt, artifact.precision,
                       artifact.macs, artifact.params, artifact.path.stat().st_size, device,
                       backend, threads, delegate, latency, init_ms, peak_memory_mb, peak_gmacs)


def run_host(artifacts: Sequence[Artifact], profile: Profile, options: ProfileOptions,
             progress: Progress) -> ProfileResult:
    """Measure on this machine; the roofline is measured in the same run."""
    from device_profiles import host

    threads, runs, warmup = _settings(profile, options)
    progress("measure this machine's peak GMAC/s and memory bandwidth")
    roof = host.measure_roofline()
    result = ProfileResult(device="host", summary={"roofline": roof})
    for i, artifact in enumerate(artifacts):
        progress(f"[{i + 1}/{len(artifacts)}] {artifact.path.name} on host ({threads} threads)")
        try:
            done = host.run_artifact(artifact.path, threads=threads, runs=runs, warmup=warmup)
        except host.BenchmarkFailed as exc:
            result.failures.append(f"{artifact.path.name}: {exc}")
            continue
        peak = roof["peak_gmacs_fp32"] if artifact.precision != "int8" else None
        result.measurements.append(_measurement(
            artifact, device="host", backend=done["backend"], threads=threads, delegate="cpu",
            latency=done["latency"], init_ms=done["init_ms"],
            peak_memory_mb=done["peak_memory_mb"], peak_gmacs=peak))
        time.sleep(profile.cooldown_s)
    return result


def select_devices(client: Any, profile: Profile, serials: Sequence[str]) -> list[Any]:
    """The device(s) to use: the given serials, or the one device the profile matches."""
    from device_profiles.adb import AdbError

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


def _usable(device: Any) -> Any:
    from device_profiles.adb import AdbError

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
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mobilectl" / "benchmark_model"


def run_adb(artifacts: Sequence[Artifact], profile: Profile, options: ProfileOptions,
            progress: Progress) -> ProfileResult:
    """Measure on the matching device(s) with ``benchmark_model``, several in parallel."""
    from device_profiles.adb import AdbClient

    client = AdbClient(adb=options.adb, server=options.adb_server)
    devices = select_devices(client, profile, options.serials)
    binary = benchmark_binary(profile.abi, options.benchmark_binary)
    tflite = [a for a in artifacts if a.fmt == "tflite"]
    result = ProfileResult(device=profile.name)
    result.failures += [f"{a.path.name}: ONNX runs on the host backend only"
                        for a in artifacts if a.fmt != "tflite"]
    with ThreadPoolExecutor(max_workers=len(devices)) as pool:
        parts = list(pool.map(lambda d: _run_on_device(client, d, binary, tflite, profile,
                                                        options, progress), devices))
    for part in parts:
        result.measurements += part.measurements
        result.failures += part.failures
    return result


def _run_on_device(client: Any, device: Any, binary: Path, artifacts: Sequence[Artifact],
                   profile: Profile, options: ProfileOptions, progress: Progress) -> ProfileResult:
    from device_profiles.adb import AdbError, DeviceLost
    from device_profiles.parse import BenchmarkOutputError, parse_benchmark_output

    threads, runs, warmup = _settings(profile, options)
    timeout = options.timeout_s or max(120.0, 2.0 * (runs + warmup))
    result = ProfileResult(device=device.serial)
    remote_bin = f"{REMOTE}/benchmark_model"
    try:
        client.shell(device.serial, ["mkdir", "-p", REMOTE])
        client.push(device.serial, binary, remote_bin)
        client.shell(device.serial, ["chmod", "755", remote_bin])
        for i, artifact in enumerate(artifacts):
            progress(f"[{i + 1}/{len(artifacts)}] {artifact.path.name} on {device.serial}")
            remote = f"{REMOTE}/{artifact.path.name}"
            try:
                client.push(device.serial, artifact.path, remote)
                pin = ["taskset", profile.affinity_mask] if profile.affinity_mask else []
                output = client.shell(device.serial, [
                    *pin, remote_bin, f"--graph={remote}", f"--num_threads={threads}",
                    f"--num_runs={runs}", f"--warmup_runs={warmup}",
                    *DELEGATE_FLAGS[options.delegate]], timeout=timeout)
                client.shell(device.serial, ["rm", "-f", remote])
                parsed = parse_benchmark_output(output)
            except DeviceLost as exc:
                result.failures.append(f"{artifact.path.name}: {exc}")
                raise
            except (AdbError, BenchmarkOutputError) as exc:
                result.failures.append(f"{artifact.path.name} on {device.serial}: {exc}")
                continue
            stats = parsed.inference
            latency = Latency(stats.count, stats.median_ms or stats.avg_ms, stats.p5_ms,
                              stats.p95_ms, stats.avg_ms, stats.std_ms, stats.min_ms, stats.max_ms)
            result.measurements.append(_measurement(
                artifact, device=f"{profile.name}:{device.serial}", backend="benchmark_model (adb)",
                threads=threads, delegate=options.delegate, latency=latency,
                init_ms=parsed.init_ms, peak_memory_mb=parsed.memory_overall_mb,
                peak_gmacs=profile.roofline.peak(artifact.precision)))
            time.sleep(profile.cooldown_s)
    except DeviceLost as exc:
        if not any(str(exc) in failure for failure in result.failures):
            result.failures.append(f"{device.serial}: {exc}")  # lost during setup
        return result
    except AdbError as exc:  # setup failed (e.g. no space for the binary): nothing ran
        result.failures.append(f"{device.serial}: {exc}")
        return result
    finally:
        _cleanup(client, device.serial)
    return result


def _cleanup(client: Any, serial: str) -> None:
    """Remove what was pushed; a device that is gone has nothing left to clean."""
    from device_profiles.adb import AdbError

    try:
        client.shell(serial, ["rm", "-rf", REMOTE], timeout=15)
    except AdbError:
        pass


def profile(targets: Sequence[str], options: ProfileOptions, progress: Progress) -> ProfileResult:
    """Resolve, measure, report. Failures are collected, not raised, so the results of
    the models that finished are kept."""
    prof = load_profile(options.device)
    if options.precision not in PRECISIONS:
        raise UserError(f"--precision {options.precision!r} is not allowed: one of "
                        f"{', '.join(PRECISIONS)}")
    if options.delegate not in prof.delegates:
        raise UserError(f"--delegate {options.delegate!r} is not allowed for {prof.name}: "
                        f"one of {', '.join(prof.delegates)}")
    formats = ("tflite", "onnx") if prof.transport == "local" else ("tflite",)
    artifacts = resolve_targets(targets, precision=options.precision, formats=formats,
                                out=options.out, progress=progress)
    run = run_host if prof.transport == "local" else run_adb
    result = run(artifacts, prof, options, progress)
    from device_profiles.report import write_report

    progress(f"write the report to {options.out}")
    result.summary = write_report(
        options.out, result.measurements, device=result.device, failures=result.failures,
        extra={"profile": prof.name, "profile_source": prof.source, **result.summary})
    return result


def device_rows(client: Any) -> list[dict[str, Any]]:
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


def as_json(result: ProfileResult) -> str:
    return json.dumps(result.summary, indent=2, sort_keys=True, default=str)

