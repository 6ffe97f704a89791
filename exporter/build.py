"""``mobilectl build``: every artifact of a spec, incremental, reproducible, a CI gate.

Each job (one spec entry at one precision) has a cache key that hashes everything that
determines its files: the model definition (the zoo's source, or the .keras file),
knobs, the weights file, the calibration data, the options, the tool versions. A job
whose key is in the build cache is copied from it, not reconverted. Builds into one
output folder take a lock, and the manifest is merged atomically.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from exporter import artifacts
from exporter.spec import ArtifactSpec, Budget, BuildSpec
from mobilectl.errors import UserError

Progress = Callable[[str], None]
LOCK_NAME = ".mobilectl.lock"
SUMMARY = "summary.md"


@dataclass(frozen=True)
class Job:
    spec: ArtifactSpec
    precision: str

    @property
    def label(self) -> str:
        return f"{self.spec.name}/{self.precision}"


@dataclass
class JobResult:
    job: Job
    status: str  # built, reused, failed
    entries: list[dict[str, Any]]
    error: str | None = None
    seconds: float = 0.0
    budget_checks: list[dict[str, Any]] | None = None


def jobs_of(spec: BuildSpec, only: Sequence[str] = ()) -> list[Job]:
    names = [a.name for a in spec.artifacts]
    for name in only:
        if name not in names:
            from mobilectl.errors import nearest

            raise UserError(f"--only {name}: no such artifact in {spec.source}"
                            f"{nearest(name, names)}; artifacts: {', '.join(names)}")
    return [Job(a, p) for a in spec.artifacts if not only or a.name in only for p in a.precisions]


# ---- cache keys --------------------------------------------------------------------

def _hash_file(path: Path, digest: Any) -> None:
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)


def _hash_tree(root: Path, suffixes: tuple[str, ...] | None = None) -> str:
    digest = hashlib.sha256()
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for path in files:
        if suffixes and path.suffix.lower() not in suffixes:
            continue
        if "__pycache__" in path.parts:
            continue
        digest.update(str(path.relative_to(root) if root.is_dir() else path.name).encode())
        _hash_file(path, digest)
    return digest.hexdigest()


def _code_hash() -> str:
    """The source that shapes artifacts: the zoo, the exporter, quantization."""
    import exporter
    import models_keras
    import quant

    return hashlib.sha256("".join(_hash_tree(Path(m.__file__).parent, (".py",))
                                  for m in (models_keras, exporter, quant)).encode()).hexdigest()


def cache_key(job: Job) -> str:
    """sha256 over everything that determines the job's files."""
    spec = job.spec
    model = Path(spec.model)
    parts = {
        "code": _code_hash(),
        "model": _hash_tree(model) if model.suffix == ".keras" else spec.model,
        "knobs": {k: v for k, v in spec.knobs.items() if k != "weights"},
        "weights": _hash_tree(Path(spec.knobs["weights"])) if spec.knobs.get("weights") else None,
        "calib": _calib_hash(spec.calib),
        "labels": _hash_tree(Path(spec.labels)) if spec.labels else None,
        "options": {"precision": job.precision, "formats": list(spec.formats),
                    "calib_samples": spec.calib_samples, "io": spec.io, "layout": spec.layout,
                    "keep_float": list(spec.keep_float), "thresholds": spec.thresholds.__dict__,
                    "output": spec.output, "seed": spec.seed},
        "tools": artifacts.tool_versions(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _calib_hash(calib: str | None) -> str:
    if calib is None:
        return f"default scikit-image {metadata.version('scikit-image')}"
    from quant.calibration import IMAGE_SUFFIXES

    path = Path(calib)
    return _hash_tree(path, IMAGE_SUFFIXES if path.is_dir() else None)


# ---- one job -------------------------------------------------------------------------

def export_options(job: Job) -> Any:
    from exporter.pipeline import ExportOptions

    spec = job.spec
    labels = ()
    if spec.labels:
        labels = tuple(x.strip() for x in Path(spec.labels).read_text().splitlines() if x.strip())
    io = spec.io if job.precision == "int8" else "float"
    return ExportOptions(precision=job.precision, formats=spec.formats, calib=spec.calib,
                         calib_samples=spec.calib_samples, io_type=io, layout=spec.layout,
                         keep_float=spec.keep_float if job.precision == "int8" else (),
                         labels=labels, thresholds=spec.thresholds, seed=spec.seed,
                         output=spec.output)


def run_job(job: Job, cache: Path) -> JobResult:
    """Build one job into the cache (or find it there). Runs in a worker process."""
    from exporter.pipeline import VerificationFailed, export

    start = time.monotonic()
    key = cache_key(job)
    slot = cache / key
    entries = _cached_entries(slot)
    if entries is not None:
        return JobResult(job, "reused", entries, seconds=time.monotonic() - start)
    staging = cache / f".{key}.{int(time.time() * 1e6)}.tmp"
    from mobilectl.tfenv import import_quietly

    import_quietly()  # only a job that really exports pays for TensorFlow
    try:
        knobs = job.spec.knobs if not job.spec.model.endswith(".keras") else None
        result = export(job.spec.model, knobs=knobs, options=export_options(job), out=staging)
        entries = [{**e, "cache_key": key, "artifact": job.spec.name} for e in result.entries]
        artifacts.write_atomic(staging / "entries.json", json.dumps(entries, indent=2).encode())
        (staging / artifacts.MANIFEST).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            staging.rename(slot)  # another builder may have won the race: same bytes
        return JobResult(job, "built", entries, seconds=time.monotonic() - start)
    except (UserError, VerificationFailed) as exc:
        return JobResult(job, "failed", [], error=" ".join(str(exc).split()),
                         seconds=time.monotonic() - start)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _cached_entries(slot: Path) -> list[dict[str, Any]] | None:
    index = slot / "entries.json"
    if not index.is_file():
        return None
    entries = json.loads(index.read_text())
    for e in entries:
        file = slot / e["path"]
        if not file.is_file() or artifacts.sha256(file.read_bytes()) != e["sha256"]:
            return None
    return entries


# ---- the build -----------------------------------------------------------------------

@contextlib.contextmanager
def locked(out: Path, progress: Progress) -> Iterator[None]:
    """An exclusive lock on the output folder (concurrent builds wait their turn)."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / LOCK_NAME).open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"waiting for another build to release {out}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build(spec: BuildSpec, *, out: Path, cache: Path, only: Sequence[str] = (),
          jobs: int = 1, keep_going: bool = False, budget_options: dict[str, Any] | None = None,
          progress: Progress = lambda s: None) -> list[JobResult]:
    """Build (or reuse) every job, copy the files into ``out``, merge the manifest,
    check budgets, write the summary. Stops at the first failure unless keep_going."""
    artifacts.check_out_dir(out)
    todo = jobs_of(spec, only)
    cache.mkdir(parents=True, exist_ok=True)
    results: list[JobResult] = []
    with locked(out, progress):
        for result in _run_all(todo, cache, jobs, keep_going, progress):
            results.append(result)
            if result.status != "failed":
                _publish(result, cache, out)
                _check_budgets(result, out, budget_options or {}, progress)
        write_summary(out, results)
    return results


def _run_all(todo: list[Job], cache: Path, jobs: int, keep_going: bool,
             progress: Progress) -> Iterator[JobResult]:
    if jobs <= 1:
        for i, job in enumerate(todo, start=1):
            progress(f"[{i}/{len(todo)}] {job.label}")
            result = run_job(job, cache)
            yield result
            if result.status == "failed" and not keep_going:
                return
        return
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # TensorFlow does not survive fork
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        progress(f"{len(todo)} jobs on {jobs} processes")
        futures = [pool.submit(run_job, job, cache) for job in todo]
        for future in futures:
            result = future.result()
            progress(f"{result.job.label}: {result.status}")
            yield result
            if result.status == "failed" and not keep_going:
                for other in futures:
                    other.cancel()
                return


def _publish(result: JobResult, cache: Path, out: Path) -> None:
    """Copy the job's files from the cache into ``out`` (atomically) and merge the
    manifest."""
    slot = cache / result.entries[0]["cache_key"]
    for entry in result.entries:
        target = out / entry["path"]
        if not target.is_file() or artifacts.sha256(target.read_bytes()) != entry["sha256"]:
            artifacts.write_atomic(target, (slot / entry["path"]).read_bytes())
    entries = [{**e, "build": result.status} for e in result.entries]
    artifacts.update_manifest(out, entries)


def _check_budgets(result: JobResult, out: Path, options: dict[str, Any],
                   progress: Progress) -> None:
    """Size and latency budgets per device profile; a miss fails the job."""
    checks = []
    for budget in result.job.spec.budgets:
        for entry in result.entries:
            checks += _budget_checks(budget, entry, out, options, progress)
    result.budget_checks = checks
    broken = [c["text"] for c in checks if not c["ok"]]
    if broken:
        result.status, result.error = "failed", "; ".join(broken)


def _budget_checks(budget: Budget, entry: dict[str, Any], out: Path, options: dict[str, Any],
                   progress: Progress) -> list[dict[str, Any]]:
    checks = []
    size_mb = entry["bytes"] / 2**20
    if budget.max_size_mb is not None:
        checks.append({"artifact": entry["path"], "profile": budget.profile, "metric": "size_mb",
                       "value": size_mb, "limit": budget.max_size_mb,
                       "ok": size_mb <= budget.max_size_mb,
                       "text": f"{entry['path']}: {size_mb:.2f} MB > {budget.max_size_mb} MB "
                               f"on {budget.profile}"})
    if budget.max_latency_ms is not None and (entry["format"] == "tflite" or budget.profile == "host"):
        median = _measure(out / entry["path"], budget.profile, options, progress)
        checks.append({"artifact": entry["path"], "profile": budget.profile,
                       "metric": "latency_ms", "value": median, "limit": budget.max_latency_ms,
                       "ok": median is not None and median <= budget.max_latency_ms,
                       "text": f"{entry['path']}: median {median if median is None else round(median, 3)} ms "
                               f"> {budget.max_latency_ms} ms on {budget.profile}"})
    return checks


def _measure(path: Path, profile_name: str, options: dict[str, Any],
             progress: Progress) -> float | None:
    from device_profiles.harness import Artifact, ProfileOptions, run_adb, run_host
    from device_profiles.profile import load_profile

    profile = load_profile(profile_name)
    fmt = path.suffix.lstrip(".")
    art = Artifact(path, path.stem, fmt, "fp32")
    opts = replace(ProfileOptions(device=profile_name), **options)
    run = run_host if profile.transport == "local" else run_adb
    try:
        result = run([art], profile, opts, progress)
    except UserError as exc:
        progress(f"latency budget on {profile_name}: {exc}")
        return None
    return result.measurements[0].latency.median_ms if result.measurements else None


def write_summary(out: Path, results: Sequence[JobResult]) -> Path:
    """A Markdown summary fit for a CI job summary or a pull-request comment."""
    lines = ["# mobilectl build", "",
             "| artifact | file | size | MACs | verification | budgets | build |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        if not r.entries:
            lines.append(f"| {r.job.label} | - | - | - | - | - | **failed**: {r.error} |")
        for e in r.entries:
            metrics = e["verification"]["metrics"]
            check = ("ok" if e["verification"]["passed"] else "below limit") + (
                "" if e["verification"]["enforced"] else " (not enforced)")
            key = "cosine" if e["precision"] in ("int8", "dynamic") else "max_abs_error"
            budgets = "; ".join(
                f"{c['profile']} {c['metric']} {c['value'] if c['value'] is None else round(c['value'], 2)}"
                f"/{c['limit']} {'ok' if c['ok'] else 'BROKEN'}"
                for c in (r.budget_checks or []) if c["artifact"] == e["path"]) or "-"
            status = r.status if r.status != "failed" else f"**failed**: {r.error}"
            macs = f"{e['macs'] / 1e6:.1f}M" if e.get("macs") else "-"
            lines.append(f"| {r.job.label} | `{e['path']}` | {e['bytes'] / 2**20:.2f} MiB | {macs} "
                         f"| {key} {metrics[key]} {check} | {budgets} | {status} |")
    built = sum(r.status == "built" for r in results)
    reused = sum(r.status == "reused" for r in results)
    failed = sum(r.status == "failed" for r in results)
    lines += ["", f"{built} built, {reused} reused, {failed} failed."]
    path = out / SUMMARY
    artifacts.write_atomic(path, ("\n".join(lines) + "\n").encode())
    return path


def merge(dirs: Sequence[Path], out: Path) -> list[dict[str, Any]]:
    """Join the outputs of matrix jobs: copy their files, merge their manifests. The
    same file name with different bytes is an error."""
    artifacts.check_out_dir(out)
    entries: dict[str, dict[str, Any]] = {}
    for folder in dirs:
        manifest = artifacts.read_manifest(folder)
        if not manifest["artifacts"]:
            raise UserError(f"--merge {folder}: no manifest.json with artifacts")
        for e in manifest["artifacts"]:
            seen = entries.get(e["path"])
            if seen and seen["sha256"] != e["sha256"]:
                raise UserError(f"--merge: {e['path']} differs between inputs "
                                f"({seen['sha256'][:12]} vs {e['sha256'][:12]})")
            entries[e["path"]] = {**e, "_from": folder}
    with locked(out, lambda s: None):
        for e in entries.values():
            artifacts.write_atomic(out / e["path"], (e.pop("_from") / e["path"]).read_bytes())
        artifacts.update_manifest(out, list(entries.values()))
    return list(entries.values())
