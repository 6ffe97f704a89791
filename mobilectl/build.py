"""``mobilectl build``: every artifact of a spec, incremental, reproducible, a CI gate.

Each job (one spec entry at one precision) has a cache key that hashes everything that
determines its files: the model definition (the zoo's source, or the .keras file),
knobs, the weights file, the calibration data, exactly the export options the job
uses, the tool versions. A job whose key is in the build cache is copied from it, not
reconverted. Builds into one output folder take a lock, and the manifest is merged
atomically. Latency budgets are measured with the profile harness.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import exporter
import models_keras
import quant
from device_profiles.harness import Artifact, ProfileOptions, measure
from device_profiles.predictor import fitted
from device_profiles.profile import Transport, load_profile
from exporter import formats as format_table
from exporter.artifacts import artifact_name, file_model_name
from exporter.options import ExportOptions
from mobilectl.baseline import LatencyRecord, judge, load_baseline, write_records
from mobilectl.core.errors import UserError, VerificationFailed, nearest
from mobilectl.core.files import check_out_dir, folder_lock, sha256, tool_versions, write_atomic
from mobilectl.core.manifest import (
    MANIFEST, AccuracyResult, ManifestEntry, read_manifest, update_manifest,
)
from mobilectl.core.tfenv import import_quietly
from mobilectl.core.types import Format, Precision
from mobilectl.evaluate import DataSource, Evaluated, evaluate
from mobilectl.predict import predict_flatbuffer
from mobilectl.spec import ArtifactSpec, Budget, BuildSpec, EvalGate
from models_keras.registry import get_model_spec
from quant.calibration import IMAGE_SUFFIXES

Progress = Callable[[str], None]
SUMMARY = "summary.md"
ENTRIES = "entries.json"


@dataclass(frozen=True)
class Job:
    spec: ArtifactSpec
    precision: Precision

    @property
    def label(self) -> str:
        return f"{self.spec.name}/{self.precision}"

    @property
    def options(self) -> ExportOptions:
        return self.spec.options_for(self.precision)


@dataclass(frozen=True)
class BudgetCheck:
    """One artifact's size or latency against a budget."""

    artifact: str
    profile: str
    metric: str  # "size_mb", "latency_ms" or "regression_pct" (against --baseline)
    value: float | None  # None: not measured (no device)
    limit: float
    ok: bool
    text: str
    baseline_ms: float | None = None  # regression checks: the baseline's median
    ratio: float | None = None  # new median over the baseline's
    ci_low: float | None = None
    ci_high: float | None = None
    verdict: str | None = None  # "regression", "faster", "no significant change"
    predicted: bool = False  # latency from the device's kernel table: no device to measure on

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class JobResult:
    job: Job
    status: str  # built, reused, failed
    entries: list[ManifestEntry]
    error: str | None = None
    seconds: float = 0.0
    budget_checks: list[BudgetCheck] = dataclasses.field(default_factory=list)
    worker: int | None = None  # pid of the fresh process that built it
    peak_rss_mb: float | None = None  # that process's peak RSS


def jobs_of(spec: BuildSpec, only: Sequence[str] = ()) -> list[Job]:
    names = [a.name for a in spec.artifacts]
    for name in only:
        if name not in names:
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


@functools.cache
def _code_hash() -> str:
    """The source that shapes artifacts: the zoo, the exporter, quantization."""
    return hashlib.sha256("".join(_hash_tree(Path(m.__file__).parent, (".py",))
                                  for m in (models_keras, exporter, quant)).encode()).hexdigest()


def cache_key(job: Job) -> str:
    """sha256 over everything that determines the job's files (the options: exactly
    those the job exports with)."""
    spec = job.spec
    parts = {
        "code": _code_hash(),
        "model": _hash_tree(Path(spec.model)) if spec.is_file else spec.model,
        "knobs": spec.knobs,
        "weights": _hash_tree(Path(spec.weights)) if spec.weights else None,
        "calib": _calib_hash(job.options.calib),
        "options": dataclasses.asdict(job.options),
        "tools": tool_versions(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _calib_hash(calib: str | None) -> str:
    if calib is None:
        return f"default scikit-image {metadata.version('scikit-image')}"
    path = Path(calib)
    return _hash_tree(path, IMAGE_SUFFIXES if path.is_dir() else None)


# ---- one job -------------------------------------------------------------------------

def reuse(job: Job, cache: Path, key: str) -> JobResult | None:
    """The job's result from the cache slot ``key``, if it is there (no TensorFlow)."""
    start = time.monotonic()
    entries = _cached_entries(cache / key)
    if entries is None:
        return None
    return JobResult(job, "reused", entries, seconds=time.monotonic() - start)


def run_in_worker(job: Job, cache: Path, key: str) -> JobResult:
    """:func:`run_job` in a worker process, with the worker's pid and peak RSS."""
    import resource  # stdlib, Unix: the worker's own peak memory

    result = run_job(job, cache, key)
    result.worker = os.getpid()
    result.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def run_job(job: Job, cache: Path, key: str) -> JobResult:
    """Build one job into the cache slot ``key`` (or find it there)."""
    start = time.monotonic()
    slot = cache / key
    reused = reuse(job, cache, key)
    if reused is not None:
        return reused
    staging = cache / f".{key}.{int(time.time() * 1e6)}.tmp"
    import_quietly()  # only a job that really exports pays for TensorFlow
    from exporter.pipeline import export  # heavy: imports TensorFlow/Keras

    try:
        result = export(job.spec.model, knobs=None if job.spec.is_file else job.spec.knobs,
                        weights=job.spec.weights, options=job.options, out=staging)
        entries = [e.with_build(cache_key=key, artifact=job.spec.name) for e in result.entries]
        write_atomic(staging / ENTRIES, json.dumps([e.to_dict() for e in entries],
                                                   indent=2).encode())
        (staging / MANIFEST).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            staging.rename(slot)  # another builder may have won the race: same bytes
        return JobResult(job, "built", entries, seconds=time.monotonic() - start)
    except (UserError, VerificationFailed) as exc:
        return JobResult(job, "failed", [], error=" ".join(str(exc).split()),
                         seconds=time.monotonic() - start)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def planned_files(job: Job, cache: Path, key: str) -> list[str]:
    """The files ``job`` writes: the names in its cache slot's index (``key``; the files'
    hashes are checked once, when the job runs), else the names it will get (which
    validates its model and knobs)."""
    index = cache / key / ENTRIES
    if index.is_file():
        return [e["path"] for e in json.loads(index.read_text())]
    spec = job.spec
    if spec.is_file:
        model, variant = file_model_name(Path(spec.model)), ""
    else:
        import_quietly()  # the zoo loads Keras: its native start-up lines go to the log
        try:
            registered = get_model_spec(spec.model)
            model, variant = registered.name, registered.variant(registered.resolve(**spec.knobs))
        except UserError as exc:
            raise UserError(f"artifact '{spec.name}': {exc}") from None
    return [artifact_name(model, variant, job.options, format_table.get(fmt))
            for fmt in job.options.formats]


def check_plan(jobs: Sequence[Job], cache: Path, *, source: Path) -> dict[str, str]:
    """Refuse, before any work, jobs whose models or knobs are bad, and two jobs that
    would write the same file; return each job's cache key (by label), computed once."""
    owners: dict[str, str] = {}
    keys = {job.label: cache_key(job) for job in jobs}
    for job in jobs:
        try:
            names = planned_files(job, cache, keys[job.label])
        except UserError as exc:
            raise UserError(f"{source}: {exc}") from None
        for name in names:
            other = owners.setdefault(name, job.label)
            if other != job.label:
                raise UserError(f"{source}: artifacts {other} and {job.label} would both write "
                                f"{name}: give one of them its own 'output' name")
    return keys


def _cached_entries(slot: Path) -> list[ManifestEntry] | None:
    index = slot / ENTRIES
    if not index.is_file():
        return None
    entries = [ManifestEntry.from_dict(e) for e in json.loads(index.read_text())]
    for e in entries:
        file = slot / e.path
        if not file.is_file() or sha256(file.read_bytes()) != e.sha256:
            return None
    return entries


# ---- the build -----------------------------------------------------------------------

@contextlib.contextmanager
def locked(out: Path, progress: Progress) -> Iterator[None]:
    """An exclusive lock on the output folder (concurrent builds wait their turn; no
    lock file is left behind)."""
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out, waiting=lambda: progress(f"waiting for another build to release {out}")):
        yield


@dataclass
class Gate:
    """How budgets are checked: the measuring options, the baseline's records (by
    artifact file and profile), and the records this build measures."""

    measure_with: ProfileOptions = dataclasses.field(default_factory=ProfileOptions)
    baseline: dict[tuple[str, str], LatencyRecord] | None = None
    records: list[LatencyRecord] = dataclasses.field(default_factory=list)


def build(spec: BuildSpec, *, out: Path, cache: Path, only: Sequence[str] = (),
          jobs: int = 1, keep_going: bool = False, measure_with: ProfileOptions | None = None,
          baseline: str | None = None, progress: Progress = lambda s: None) -> list[JobResult]:
    """Build (or reuse) every job, copy the files into ``out``, merge the manifest,
    check budgets (latency measured with ``measure_with``'s adb settings; regressions
    against the ``baseline`` build's ``latency.json``), write the summary and this
    build's ``latency.json``. Stops at the first failure unless keep_going."""
    gate = Gate(measure_with or ProfileOptions(),
                load_baseline(baseline) if baseline is not None else None)
    check_out_dir(out)
    todo = jobs_of(spec, only)
    for artifact in {job.spec.name: job.spec for job in todo}.values():
        if artifact.eval is not None:  # the labelled data, before any slow work
            _data_source(artifact.eval).check()
    keys = check_plan(jobs_of(spec), cache, source=spec.source)
    cache.mkdir(parents=True, exist_ok=True)
    results: list[JobResult] = []
    with locked(out, progress):
        for result in _run_all(todo, cache, keys, jobs, keep_going, progress):
            results.append(result)
            if result.status != "failed":
                _publish(result, cache, out)
                _check_budgets(result, out, cache, gate, progress)
                _check_accuracy(result, out, progress)
        write_summary(out, results)
        if gate.records:
            write_records(out, gate.records)
    return results


def _run_all(todo: list[Job], cache: Path, keys: dict[str, str], jobs: int,
             keep_going: bool, progress: Progress) -> Iterator[JobResult]:
    """Cached jobs are reused here; every other job is exported in a fresh worker
    process of its own (``max_tasks_per_child=1``), so a build's peak memory is its
    largest job's, not the sum of what TensorFlow keeps across conversions."""
    pending = []
    for job in todo:
        reused = reuse(job, cache, keys[job.label])
        if reused is None:
            pending.append(job)
        else:
            yield reused
    if not pending:
        return
    context = multiprocessing.get_context("spawn")  # TensorFlow does not survive fork
    with ProcessPoolExecutor(max_workers=max(1, jobs), mp_context=context,
                             max_tasks_per_child=1) as pool:
        progress(f"{len(pending)} job(s) to export, each in a fresh process, "
                 f"{max(1, jobs)} at a time")
        futures = [pool.submit(run_in_worker, job, cache, keys[job.label]) for job in pending]
        for i, future in enumerate(futures, start=1):
            result = future.result()
            progress(f"[{i}/{len(futures)}] {result.job.label}: {result.status}")
            yield result
            if result.status == "failed" and not keep_going:
                for other in futures:
                    other.cancel()
                return


def _publish(result: JobResult, cache: Path, out: Path) -> None:
    """Copy the job's files from the cache into ``out`` (atomically) and merge the
    manifest."""
    slot = cache / result.entries[0].cache_key
    for entry in result.entries:
        target = out / entry.path
        if not target.is_file() or sha256(target.read_bytes()) != entry.sha256:
            write_atomic(target, (slot / entry.path).read_bytes())
    update_manifest(out, [e.with_build(build=result.status) for e in result.entries])


def _check_budgets(result: JobResult, out: Path, cache: Path, gate: Gate,
                   progress: Progress) -> None:
    """Size, latency and regression budgets per device profile; a miss fails the job."""
    checks = [check for budget in result.job.spec.budgets for entry in result.entries
              for check in _budget_checks(budget, entry, out, cache, gate, progress)]
    result.budget_checks = checks
    broken = [c.text for c in checks if not c.ok]
    if broken:
        result.status, result.error = "failed", "; ".join(broken)


def _data_source(gate: EvalGate) -> DataSource:
    return DataSource(gate.data, labels=gate.labels, val=gate.val, val_split=gate.val_split)


def _check_accuracy(result: JobResult, out: Path, progress: Progress) -> None:
    """``[artifact.eval]``: each artifact's accuracy on the labelled data, measured in a
    fresh process (it loads TensorFlow for the float model), recorded in the manifest
    and checked against ``min_top1`` and ``max_top1_drop``."""
    gate = result.job.spec.eval
    if gate is None:
        return
    progress(f"{result.job.label}: accuracy on {gate.val or gate.data}")
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context,
                             initializer=import_quietly) as pool:  # before TensorFlow loads
        try:
            found = pool.submit(_evaluate_in_worker, out, _data_source(gate),
                                tuple(e.path for e in result.entries)).result()
        except UserError as exc:
            result.status, result.error = "failed", f"accuracy not measured: {exc}"
            return
    accuracy = {r.entry.path: r.accuracy for r in found}
    result.entries = [replace(e, accuracy=accuracy.get(e.path)) for e in result.entries]
    update_manifest(out, result.entries)
    checks = [c for r in found for c in _accuracy_checks(r.entry.path, r.accuracy, gate)]
    result.budget_checks += checks
    broken = [c.text for c in checks if not c.ok]
    if broken:
        result.status = "failed"
        result.error = "; ".join(filter(None, [result.error, *broken]))


def _evaluate_in_worker(out: Path, source: DataSource, only: tuple[str, ...]) -> list[Evaluated]:
    import_quietly()  # TensorFlow's start-up lines go to the log file
    return evaluate(str(out), source, record=False, only=only)


def _accuracy_checks(path: str, accuracy: AccuracyResult, gate: EvalGate) -> list[BudgetCheck]:
    checks = []
    if gate.min_top1 is not None:
        checks.append(BudgetCheck(path, "data", "top1", accuracy.top1, gate.min_top1,
                                  accuracy.top1 >= gate.min_top1,
                                  f"{path}: top-1 {accuracy.top1:.3f} < {gate.min_top1} on "
                                  f"{accuracy.data}"))
    if gate.max_top1_drop is not None:
        drop = accuracy.top1_drop
        checks.append(BudgetCheck(path, "data", "top1_drop", drop, gate.max_top1_drop,
                                  drop is not None and drop <= gate.max_top1_drop,
                                  f"{path}: top-1 drop not measured: no float model" if drop is None
                                  else f"{path}: top-1 {accuracy.top1:.3f} is {drop:.3f} below "
                                  f"the float model's {accuracy.float_top1:.3f} (max "
                                  f"{gate.max_top1_drop})"))
    return checks


def _budget_checks(budget: Budget, entry: ManifestEntry, out: Path, cache: Path, gate: Gate,
                   progress: Progress) -> list[BudgetCheck]:
    checks = []
    size_mb = entry.bytes / 2**20
    if budget.max_size_mb is not None:
        checks.append(BudgetCheck(entry.path, budget.profile, "size_mb", size_mb,
                                  budget.max_size_mb, size_mb <= budget.max_size_mb,
                                  f"{entry.path}: {size_mb:.2f} MB > {budget.max_size_mb} MB "
                                  f"on {budget.profile}"))
    if not (entry.format == Format.TFLITE or budget.profile == "host"):
        return checks
    if budget.require_delegate is not None:
        checks.append(_delegate_check(budget, entry, out, cache, gate, progress))
    if not budget.measures_latency:
        return checks
    record, why = _measure(out / entry.path, entry, budget.profile, cache, gate.measure_with,
                           progress)
    if record is not None:
        gate.records.append(record)
    if budget.max_latency_ms is not None:
        median = record.median_ms if record else None
        text = (f"{entry.path}: latency not measured on {budget.profile}: {why}" if median is None
                else f"{entry.path}: median {median:.3f} ms > {budget.max_latency_ms} ms "
                     f"on {budget.profile}")
        check = BudgetCheck(entry.path, budget.profile, "latency_ms", median,
                            budget.max_latency_ms,
                            median is not None and median <= budget.max_latency_ms, text)
        checks.append(check if record else _predicted_check(check, out / entry.path, why))
    if budget.max_regression_pct is not None and gate.baseline is not None:
        checks.append(_regression_check(budget, entry, record, why, gate))
    return checks


def _predicted_check(check: BudgetCheck, path: Path, why: str) -> BudgetCheck:
    """A latency budget no device could measure, checked by prediction from the
    profile's kernel table when it has one (and saying so); else ``check`` as it is."""
    try:
        predictor, _ = fitted(check.profile)
    except UserError:
        return check
    prediction, _, _ = predict_flatbuffer(path.read_bytes(), predictor)
    ms, bound = prediction.total_ms, prediction.lower_bound
    ok = ms <= check.limit and not bound
    verdict = ("a lower bound within the budget: cannot tell (no kernel model for "
               f"{', '.join(prediction.missing)})" if bound and ms <= check.limit
               else f"{'within' if ok else 'over'} {check.limit} ms")
    text = (f"{check.artifact}: predicted {'>=' if bound else ''}{ms:.3f} ms on {check.profile} "
            f"from its kernel table, not measured ({why}): {verdict}")
    return dataclasses.replace(check, value=ms, ok=ok, text=text, predicted=True)


def _delegate_check(budget: Budget, entry: ManifestEntry, out: Path, cache: Path, gate: Gate,
                    progress: Progress) -> BudgetCheck:
    """``require_delegate``: the artifact, run with that delegate, must have all of its
    graph on it (benchmark_model's own report), or the gate fails."""
    delegate = budget.require_delegate or ""
    record, why = _measure(out / entry.path, entry, budget.profile, cache, gate.measure_with,
                           progress, delegate=delegate)
    if record is None:
        return BudgetCheck(entry.path, budget.profile, "delegated_share", None, 1.0, False,
                           f"{entry.path}: {delegate} delegation not measured on "
                           f"{budget.profile}: {why}")
    share = record.delegated_share if record.delegated_share is not None else (
        1.0 if record.placement == "full" else 0.0 if record.placement == "none" else None)
    ok = record.placement == "full"
    text = (f"{entry.path}: {delegate} delegate required on {budget.profile}, but it ran "
            + ("none" if record.placement == "none" else "part" if record.placement == "partial"
               else "an unreported share") + " of the graph"
            + (f" ({100 * share:.0f}% of the nodes)" if share is not None else ""))
    return BudgetCheck(entry.path, budget.profile, "delegated_share", share, 1.0, ok, text)


def _regression_check(budget: Budget, entry: ManifestEntry, record: LatencyRecord | None,
                      why: str, gate: Gate) -> BudgetCheck:
    """``record`` against the baseline's record of the same file on the same profile."""
    limit = budget.max_regression_pct or 0.0
    if record is None:
        return BudgetCheck(entry.path, budget.profile, "regression_pct", None, limit, False,
                           f"{entry.path}: latency not measured on {budget.profile}: {why}")
    found = judge(record, (gate.baseline or {}).get((entry.path, budget.profile)),
                  max_regression_pct=limit, confidence=budget.confidence)
    interval = ("" if found.ci_low is None else
                f", {100 * budget.confidence:g}% interval {found.ci_low:.3f}-{found.ci_high:.3f}")
    text = (f"{entry.path}: {record.median_ms:.3f} ms vs baseline {found.baseline_ms:.3f} ms on "
            f"{budget.profile}: ratio {found.ratio:.3f}{interval}: {found.verdict}"
            + (f" (more than +{limit:g}%)" if not found.ok else ""))
    return BudgetCheck(entry.path, budget.profile, "regression_pct", 100 * (found.ratio - 1),
                       limit, found.ok, text, found.baseline_ms, found.ratio, found.ci_low,
                       found.ci_high, found.verdict)


def _measure(path: Path, entry: ManifestEntry, profile_name: str, cache: Path,
             measure_with: ProfileOptions, progress: Progress, *,
             delegate: str = "cpu") -> tuple[LatencyRecord | None, str]:
    """The latency record of one artifact on a profile's device, and how it was had
    ("measured", "reused") or why there is none. A measurement is reused while its
    inputs are unchanged: the artifact's bytes, the profile, the options, the tools."""
    profile = load_profile(profile_name)
    options = replace(measure_with, device=profile_name, out=Path("."), delegate=delegate)
    if profile.transport == Transport.LOCAL:  # adb settings are for the phone budgets
        options = replace(options, serials=(), benchmark_binary=None, adb=None, adb_server=None)
    key = hashlib.sha256(json.dumps(
        {"sha256": entry.sha256, "profile": dataclasses.asdict(profile),
         "options": dataclasses.asdict(options), "tools": tool_versions()},
        sort_keys=True, default=str).encode()).hexdigest()
    stored = cache / "measurements" / f"{key}.json"
    if stored.is_file():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            return LatencyRecord.of_dict(json.loads(stored.read_text())), "reused"
    try:
        result = measure([Artifact.of_entry(path, entry)], profile, options, progress)
    except UserError as exc:
        return None, " ".join(str(exc).split())
    if not result.measurements:
        return None, "; ".join(result.failures) or "no measurement"
    m = result.measurements[0]
    d = m.delegation
    record = LatencyRecord(entry.path, profile_name, m.device, m.repeats.medians_ms if m.repeats
                           else (m.latency.median_ms,), m.latency.median_ms, entry.sha256,
                           tool_versions(), delegate, d.placement if d else None,
                           d.nodes / d.total if d and d.nodes is not None and d.total else None)
    stored.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(stored, json.dumps(dataclasses.asdict(record), sort_keys=True).encode())
    return record, "measured"


def write_summary(out: Path, results: Sequence[JobResult]) -> Path:
    """A Markdown summary fit for a CI job summary or a pull-request comment."""
    lines = ["# mobilectl build", "",
             "| artifact | file | size | MACs | verification | budgets | build |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        if not r.entries:
            lines.append(f"| {r.job.label} | - | - | - | - | - | **failed**: {r.error} |")
        lines += [_summary_row(r, e) for e in r.entries]
    built = sum(r.status == "built" for r in results)
    reused = sum(r.status == "reused" for r in results)
    failed = sum(r.status == "failed" for r in results)
    lines += ["", f"{built} built, {reused} reused, {failed} failed."]
    path = out / SUMMARY
    write_atomic(path, ("\n".join(lines) + "\n").encode())
    return path


def _summary_row(r: JobResult, e: ManifestEntry) -> str:
    check = e.verification
    verdict = ("ok" if check.passed else "below limit") + ("" if check.enforced else " (not enforced)")
    key = check.headline
    value = check.as_dict()["metrics"].get(key)
    budgets = "; ".join(_budget_text(c) for c in r.budget_checks if c.artifact == e.path) or "-"
    status = r.status if r.status != "failed" else f"**failed**: {r.error}"
    macs = f"{e.macs / 1e6:.1f}M" if e.macs else "-"
    return (f"| {r.job.label} | `{e.path}` | {e.bytes / 2**20:.2f} MiB | {macs} "
            f"| {key} {value} {verdict} | {budgets} | {status} |")


def _budget_text(c: BudgetCheck) -> str:
    """One budget check in the summary; a regression check shows baseline, new figure,
    ratio with its interval and the verdict."""
    state = "ok" if c.ok else "BROKEN"
    if c.metric == "regression_pct" and c.ratio is not None:
        interval = "" if c.ci_low is None else f" [{c.ci_low:.3f}-{c.ci_high:.3f}]"
        return (f"{c.profile} vs baseline {c.baseline_ms:.3f} -> {c.baseline_ms * c.ratio:.3f} "
                f"ms, x{c.ratio:.3f}{interval} {c.verdict} (max +{c.limit:g}%) {state}")
    if c.metric == "top1" and c.value is not None:
        return f"top-1 {100 * c.value:.1f}% (min {100 * c.limit:g}%) {state}"
    if c.metric == "top1_drop" and c.value is not None:
        return f"top-1 drop {100 * c.value:+.1f} pt (max {100 * c.limit:g} pt) {state}"
    value = c.value if c.value is None else round(c.value, 2)
    return f"{c.profile} {c.metric} {value}/{c.limit} {state}" + (" (predicted)" if c.predicted else "")


def merge(dirs: Sequence[Path], out: Path) -> list[ManifestEntry]:
    """Join the outputs of matrix jobs: copy their files, merge their manifests. The
    same file name with different bytes is an error."""
    check_out_dir(out)
    found: dict[str, tuple[ManifestEntry, Path]] = {}
    for folder in dirs:
        manifest = read_manifest(folder)
        if not manifest.artifacts:
            raise UserError(f"--merge {folder}: no manifest.json with artifacts")
        for e in manifest.artifacts:
            seen = found.get(e.path)
            if seen and seen[0].sha256 != e.sha256:
                raise UserError(f"--merge: {e.path} differs between inputs "
                                f"({seen[0].sha256[:12]} vs {e.sha256[:12]})")
            found[e.path] = (e, folder)
    with locked(out, lambda s: None):
        for entry, folder in found.values():
            write_atomic(out / entry.path, (folder / entry.path).read_bytes())
        update_manifest(out, [entry for entry, _ in found.values()])
    return [entry for entry, _ in found.values()]
