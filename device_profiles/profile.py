"""Typed, validated device profiles.

A profile says how to find a device (adb ``ro.product.model``/``ro.product.name``/
serial patterns), how to run on it (ABI, threads, big-core affinity mask for
``taskset``, delegates, runs, warm-up, cool-down) and what it can do at best
(roofline: peak GMAC/s for float and int8, memory bandwidth, and where each figure
came from). Every key is checked on load: an unknown key or a bad value is an error
naming the file and the key.
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from device_profiles import load_profile_data, profile_names
from mobilectl.core.errors import UserError, nearest
from mobilectl.core.types import Precision, values
from quant.onnx_quant import host_arch


class Transport(StrEnum):
    """How a profile's device is reached: this machine, or adb."""

    LOCAL = "local"
    ADB = "adb"


TRANSPORTS = values(Transport)
DELEGATES = ("cpu", "gpu", "nnapi")
ABIS = ("arm64-v8a", "armeabi-v7a", "x86_64", "x86", "host")


@dataclass(frozen=True)
class Match:
    """fnmatch patterns; a device matches when any given pattern list matches."""

    model: tuple[str, ...] = ()
    product: tuple[str, ...] = ()
    serial: tuple[str, ...] = ()

    def matches(self, *, model: str, product: str, serial: str) -> bool:
        pairs = ((self.model, model), (self.product, product), (self.serial, serial))
        return any(any(fnmatch.fnmatchcase(value, p) for p in patterns)
                   for patterns, value in pairs if patterns)


@dataclass(frozen=True)
class Roofline:
    """Best-case throughput; ``None`` where no figure is known (no fraction shown)."""

    peak_gmacs_fp32: float | None
    peak_gmacs_int8: float | None
    bandwidth_gbs: float | None
    source: str

    def peak(self, precision: Precision) -> float | None:
        return self.peak_gmacs_int8 if precision == Precision.INT8 else self.peak_gmacs_fp32


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    transport: Transport
    abi: str
    threads: int
    affinity_mask: str | None
    delegates: tuple[str, ...]
    warmup: int
    runs: int
    cooldown_s: float
    match: Match
    roofline: Roofline
    source: str  # the file it came from
    max_temp_c: float | None = None  # cool below this before each run (None: cooldown_s)
    cool_timeout_s: float = 120.0  # give up waiting after this long

    @property
    def arch(self) -> str:
        """The CPU architecture the device runs (``host``: this machine's), which picks
        int8 ONNX's activation type (:func:`quant.onnx_quant.activations_for`)."""
        return host_arch() if self.abi == "host" else self.abi


# key -> (check, description of what is allowed)
def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _non_negative_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0


def _string_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


SCHEMA: dict[str, tuple[Any, str]] = {
    "name": (lambda v: isinstance(v, str) and re.fullmatch(r"[a-z0-9][a-z0-9_-]*", v), "a lower-case name"),
    "description": (lambda v: isinstance(v, str), "a string"),
    "transport": (lambda v: v in TRANSPORTS, f"one of {', '.join(TRANSPORTS)}"),
    "abi": (lambda v: v in ABIS, f"one of {', '.join(ABIS)}"),
    "threads": (_positive_int, "a positive integer"),
    "affinity_mask": (lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-fA-F]+", v),
                      "a hex CPU mask for taskset, e.g. \"f0\""),
    "delegates": (lambda v: _string_list(v) and v and set(v) <= set(DELEGATES),
                  f"a non-empty list of {', '.join(DELEGATES)}"),
    "runs.warmup": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
                    "an integer >= 0"),
    "runs.runs": (_positive_int, "a positive integer"),
    "runs.cooldown_s": (_non_negative_number, "a number of seconds >= 0"),
    "runs.max_temp_c": (_non_negative_number, "degrees C: wait until the hottest thermal zone "
                        "is below it before each run"),
    "runs.cool_timeout_s": (_non_negative_number, "a number of seconds >= 0"),
    "match.model": (_string_list, "a list of patterns"),
    "match.product": (_string_list, "a list of patterns"),
    "match.serial": (_string_list, "a list of patterns"),
    "roofline.peak_gmacs_fp32": (_non_negative_number, "a number (0: unknown)"),
    "roofline.peak_gmacs_int8": (_non_negative_number, "a number (0: unknown)"),
    "roofline.bandwidth_gbs": (_non_negative_number, "a number (0: unknown)"),
    "roofline.source": (lambda v: isinstance(v, str) and v, "a non-empty string"),
}
REQUIRED = ("name", "description", "transport", "abi", "threads", "delegates", "runs.warmup",
            "runs.runs", "runs.cooldown_s", "roofline.source")


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def validate(data: dict[str, Any], *, source: str) -> Profile:
    """Check every key of a parsed profile; raise UserError naming file and key."""
    flat = _flatten(data)
    for key, value in flat.items():
        if key not in SCHEMA:
            raise UserError(f"{source}: unknown key '{key}'{nearest(key, SCHEMA)}")
        check, allowed = SCHEMA[key]
        if not check(value):
            raise UserError(f"{source}: key '{key}' = {value!r} is not allowed: {allowed}")
    for key in REQUIRED:
        if key not in flat:
            raise UserError(f"{source}: missing key '{key}' ({SCHEMA[key][1]})")
    if flat["transport"] == "adb" and not any(k.startswith("match.") for k in flat):
        raise UserError(f"{source}: an adb profile needs a [match] table (model, product "
                        "or serial patterns)")
    return _build(flat, source)


def _build(flat: dict[str, Any], source: str) -> Profile:
    def figure(key: str) -> float | None:
        value = flat.get(f"roofline.{key}", 0)
        return float(value) if value else None

    return Profile(
        name=flat["name"], description=flat["description"], transport=Transport(flat["transport"]),
        abi=flat["abi"], threads=flat["threads"], affinity_mask=flat.get("affinity_mask"),
        delegates=tuple(flat["delegates"]), warmup=flat["runs.warmup"],
        runs=flat["runs.runs"], cooldown_s=float(flat["runs.cooldown_s"]),
        match=Match(*(tuple(flat.get(f"match.{k}", ())) for k in ("model", "product", "serial"))),
        roofline=Roofline(figure("peak_gmacs_fp32"), figure("peak_gmacs_int8"),
                          figure("bandwidth_gbs"), flat["roofline.source"]),
        source=source, max_temp_c=flat.get("runs.max_temp_c"),
        cool_timeout_s=float(flat.get("runs.cool_timeout_s", 120.0)),
    )


def load_profile(name_or_path: str) -> Profile:
    """A bundled profile by name, or a user's profile from a ``.toml`` path."""
    if name_or_path.endswith(".toml"):
        path = Path(name_or_path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise UserError(f"--device {path}: cannot read it ({exc.strerror})") from None
        except tomllib.TOMLDecodeError as exc:
            raise UserError(f"{path}: not valid TOML: {exc}") from None
        return validate(data, source=str(path))
    return validate(load_profile_data(name_or_path), source=f"{name_or_path}.toml")


def all_profiles() -> list[Profile]:
    """Every bundled profile, validated."""
    return [load_profile(name) for name in profile_names()]
