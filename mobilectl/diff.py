"""``mobilectl diff OLD NEW``: what changed between two builds or two profiles.

Either side is a manifest (``manifest.json`` or the folder holding it), a profile
report (``profile.json``) or a build's ``latency.json``. Artifacts pair by file name.
For each pair: bytes, the op types of the files (when they are beside their
manifests), tool versions, calibration data (its hash), and, from profiles and
latency records, the device state and the latency (the ratio of medians with its
bootstrap interval, :func:`device_profiles.stats.ratio_interval`).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from device_profiles.device_state import DeviceState
from device_profiles.stats import ratio_interval
from exporter.tflite import op_types
from mobilectl.core.errors import UserError
from mobilectl.core.manifest import MANIFEST, read_manifest

Facts = dict[str, Any]  # one artifact's facts on one side, by topic


@dataclass
class Side:
    """What one side says about each artifact, by file name."""

    source: Path
    artifacts: dict[str, Facts] = field(default_factory=dict)


def load_side(given: str) -> Side:
    """A manifest, folder, ``profile.json`` or ``latency.json`` (else a UserError)."""
    path = Path(given)
    if path.is_dir():
        path = next((path / n for n in (MANIFEST, "profile.json", "latency.json")
                     if (path / n).is_file()), path / MANIFEST)
    if not path.is_file():
        raise UserError(f"diff: {given}: no such file (a manifest.json, profile.json, "
                        "latency.json or a folder with one)")
    side = Side(path)
    try:
        if path.name == MANIFEST:
            _manifest_facts(side, path)
        else:
            _measured_facts(side, json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"diff: {given}: not a mobilectl manifest, profile or latency "
                        f"file ({exc})") from None
    return side


def _manifest_facts(side: Side, path: Path) -> None:
    for entry in read_manifest(path.parent).artifacts:
        file = path.parent / entry.path
        ops = Counter(op_types(file.read_bytes())) if entry.path.endswith(".tflite") \
            and file.is_file() else None
        side.artifacts[entry.path] = {
            "bytes": entry.bytes, "sha256": entry.sha256, "macs": entry.macs,
            "ops": dict(ops) if ops is not None else None, "tools": dict(entry.tools),
            "calibration": entry.calibration.sha256 if entry.calibration else None}


def _measured_facts(side: Side, data: dict[str, Any]) -> None:
    if "records" in data:  # latency.json
        for r in data["records"]:
            side.artifacts.setdefault(r["path"], {}).update(
                medians_ms=r["medians_ms"], median_ms=r["median_ms"], device=r["device"],
                tools=r["tools"], sha256=r["sha256"])
        return
    for m in data["measurements"]:  # profile.json
        reps = m.get("repeats") or {}
        state = DeviceState.from_dict(m.get("state_before") or {})
        side.artifacts.setdefault(m["artifact"], {}).update(
            medians_ms=reps.get("medians_ms", [m["latency"]["median_ms"]]),
            median_ms=m["latency"]["median_ms"], device=m["device"],
            bytes=m["size_bytes"], state={
                "governors": list(state.governors), "hottest_c": state.hottest_c,
                "battery": state.battery_level, "load": state.load_avg},
            flags=m.get("state_flags", []))


def diff(old: Side, new: Side) -> dict[str, Any]:
    """Per artifact file: each topic that differs (old, new), and the latency ratio."""
    rows = []
    for name in sorted(old.artifacts.keys() | new.artifacts.keys()):
        a, b = old.artifacts.get(name), new.artifacts.get(name)
        if a is None or b is None:
            rows.append({"artifact": name, "only_in": "new" if a is None else "old"})
            continue
        changes = {key: _change(a[key], b[key]) for key in sorted(a.keys() & b.keys())
                   if key not in ("medians_ms", "median_ms", "sha256") and a[key] != b[key]}
        row: dict[str, Any] = {"artifact": name, "same_bytes": a.get("sha256") == b.get("sha256")
                               if "sha256" in a and "sha256" in b else None, "changes": changes}
        if "medians_ms" in a and "medians_ms" in b:
            found = ratio_interval(b["medians_ms"], a["medians_ms"])
            row["latency"] = {"old_ms": a["median_ms"], "new_ms": b["median_ms"],
                              "ratio": b["median_ms"] / a["median_ms"],
                              "ci_low": found and found[0], "ci_high": found and found[1]}
        rows.append(row)
    return {"old": str(old.source), "new": str(new.source), "artifacts": rows}


def _change(old: Any, new: Any) -> dict[str, Any]:
    """old -> new; for tables (ops, tools, state) only the keys that differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        return {"old": {k: old.get(k) for k in keys}, "new": {k: new.get(k) for k in keys}}
    return {"old": old, "new": new}


def lines(report: dict[str, Any]) -> list[str]:
    """The diff as text, one line per change."""
    out = [f"diff {report['old']} -> {report['new']}"]
    for row in report["artifacts"]:
        if "only_in" in row:
            out.append(f"{row['artifact']}: only in {row['only_in']}")
            continue
        same = {True: "same bytes", False: "bytes differ", None: ""}[row["same_bytes"]]
        out.append(f"{row['artifact']}: {same}".rstrip(": "))
        for key, change in row["changes"].items():
            out.append(f"  {key}: {_text(change['old'])} -> {_text(change['new'])}")
        lat = row.get("latency")
        if lat:
            interval = ("" if lat["ci_low"] is None
                        else f" (95% interval {lat['ci_low']:.3f}-{lat['ci_high']:.3f})")
            out.append(f"  latency: {lat['old_ms']:.3f} -> {lat['new_ms']:.3f} ms, "
                       f"x{lat['ratio']:.3f}{interval}")
    return out


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)
