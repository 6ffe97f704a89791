"""What a build measured, kept as the next build's baseline: ``latency.json``.

Every latency budget a build checks leaves a record (artifact file, device profile,
device, the medians of its repetitions, the tools that made and ran it). A later
build given ``--baseline`` (that build's output folder or its ``latency.json``)
judges each artifact against the record of the same file on the same profile: the
ratio of medians with a bootstrap interval (:func:`device_profiles.stats.ratio_interval`),
a regression only when the whole interval lies above ``1 + max_regression_pct``, so
noise does not fail a pull request and a real slowdown does not pass.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from device_profiles.stats import ratio_interval
from mobilectl.core.errors import UserError
from mobilectl.core.files import tool_versions, write_atomic

LATENCY = "latency.json"


@dataclass(frozen=True)
class LatencyRecord:
    """One artifact's measured latency on one device profile."""

    path: str
    profile: str
    device: str
    medians_ms: tuple[float, ...]
    median_ms: float
    sha256: str
    tools: dict[str, str]
    delegate: str = "cpu"
    placement: str | None = None  # full/partial/none/unknown with a delegate (benchmark_model)
    delegated_share: float | None = None  # nodes the delegate took over the graph's, if known

    @classmethod
    def of_dict(cls, data: dict[str, Any]) -> LatencyRecord:
        return cls(str(data["path"]), str(data["profile"]), str(data["device"]),
                   tuple(float(x) for x in data["medians_ms"]), float(data["median_ms"]),
                   str(data["sha256"]), {str(k): str(v) for k, v in data["tools"].items()},
                   str(data.get("delegate", "cpu")), data.get("placement"),
                   data.get("delegated_share"))


@dataclass(frozen=True)
class Regression:
    """A new measurement against its baseline."""

    baseline_ms: float
    ratio: float
    ci_low: float | None
    ci_high: float | None
    verdict: str  # "regression", "faster", "no significant change"

    @property
    def ok(self) -> bool:
        return self.verdict != "regression"


def write_records(out: Path, records: list[LatencyRecord]) -> Path:
    """``latency.json`` under ``out``, merged with the records already there."""
    path = out / LATENCY
    found = {(r.path, r.profile): r for r in _read(path)} if path.is_file() else {}
    found.update({(r.path, r.profile): r for r in records})
    rows = [asdict(found[key]) for key in sorted(found)]
    write_atomic(path, (json.dumps({"records": rows}, indent=2, sort_keys=True) + "\n").encode())
    return path


def _read(path: Path) -> list[LatencyRecord]:
    try:
        return [LatencyRecord.of_dict(r) for r in json.loads(path.read_text())["records"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"--baseline {path}: not a mobilectl latency.json ({exc})") from None


def load_baseline(given: str) -> dict[tuple[str, str], LatencyRecord]:
    """``--baseline DIR_OR_FILE``: the records of an earlier build, measured with the
    tools this build uses (else a UserError: latencies from other tools do not compare)."""
    path = Path(given)
    path = path / LATENCY if path.is_dir() else path
    if not path.is_file():
        raise UserError(f"--baseline {given}: no {LATENCY} there (a build with latency "
                        "budgets writes one into its --out folder)")
    records = _read(path)
    tools = tool_versions()
    for record in records:
        changed = sorted(k for k in tools if record.tools.get(k) != tools[k])
        if changed:
            name = changed[0]
            raise UserError(f"--baseline {given}: {record.path} was measured with {name} "
                            f"{record.tools.get(name, '?')}, this build has {tools[name]}; "
                            "rebuild the baseline with the same tools")
    return {(r.path, r.profile): r for r in records}


def judge(new: LatencyRecord, baseline: LatencyRecord | None, *, max_regression_pct: float,
          confidence: float) -> Regression:
    """``new`` against ``baseline`` (same file name, same profile); a UserError when
    the baseline lacks it or ran on another device."""
    if baseline is None:
        raise UserError(f"--baseline has no latency of {new.path} on {new.profile}: build "
                        "the baseline with the same artifact and budget")
    if baseline.device != new.device:
        raise UserError(f"--baseline measured {new.path} on {baseline.device}, this build on "
                        f"{new.device}: compare on the same device")
    found = ratio_interval(new.medians_ms, baseline.medians_ms, confidence=confidence)
    ratio = new.median_ms / baseline.median_ms
    limit = 1 + max_regression_pct / 100
    verdict = ("regression" if found and found[0] > limit else
               "faster" if found and found[1] < 1 else "no significant change")
    return Regression(baseline.median_ms, ratio, found and found[0], found and found[1], verdict)
