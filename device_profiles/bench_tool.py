"""What a ``benchmark_model`` binary can report, asked once per binary.

Releases differ in their flags: ``--report_peak_memory_footprint`` (peak memory by
periodic monitoring) is recent, ``--max_secs`` (a limit on a slow device's run) older.
The binary's ``--help`` lists the flags it knows; the answer is cached in the user
cache by the binary's sha256 and the device, so each binary is asked once per device
(a binary that runs on one phone may lack a library on another). A binary that prints
nothing, is for another ABI or is not benchmark_model at all is one clear error
naming it and what to do.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device_profiles.adb import AdbError
from device_profiles.parse import version_in
from mobilectl.core.files import user_cache, write_atomic

_NOT_RUNNABLE = re.compile(r"(?i)exec format error|not executable|cannot execute|"
                           r"syntax error|\bELF\b|unexpected|bad cpu type")
REPORTED_FLAGS = ("report_peak_memory_footprint", "max_secs")


@dataclass(frozen=True)
class ToolCapabilities:
    """The flags a benchmark_model binary knows, and the version it prints, if any."""

    sha256: str
    flags: frozenset[str]
    version: str | None = None

    def extra_flags(self, timeout_s: float) -> list[str]:
        """Ask for what the binary can report: peak memory, and a time limit inside the
        harness's own timeout (so a slow device ends its run instead of being killed)."""
        extra = []
        if "report_peak_memory_footprint" in self.flags:
            extra.append("--report_peak_memory_footprint=true")
        if "max_secs" in self.flags:
            extra.append(f"--max_secs={max(1, int(0.8 * timeout_s))}")
        return extra

    def as_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "flags": sorted(self.flags), "version": self.version}


def cache_dir() -> Path:
    return user_cache("benchmark_model", "capabilities")


def tool_capabilities(client: Any, serial: str, binary: Path, *, remote: str,
                      abi: str) -> ToolCapabilities:
    """The capabilities of ``binary`` (pushed to ``remote`` on ``serial``): cached, else
    read from its ``--help`` on the device."""
    digest = hashlib.sha256(binary.read_bytes()).hexdigest()
    device = hashlib.sha256(serial.encode()).hexdigest()[:12]
    stored = cache_dir() / f"{digest}-{device}.json"
    if stored.is_file():
        try:
            data = json.loads(stored.read_text())
            return ToolCapabilities(digest, frozenset(data["flags"]), data.get("version"))
        except (ValueError, KeyError, TypeError):
            pass  # a damaged entry: ask again
    done = client.run(["shell", f"{shlex.quote(remote)} --help"], serial=serial, timeout=60)
    found = from_help(done.stdout + done.stderr, digest=digest, binary=binary, abi=abi)
    stored.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(stored, json.dumps(found.as_dict(), sort_keys=True).encode())
    return found


def from_help(text: str, *, digest: str, binary: Path, abi: str) -> ToolCapabilities:
    """Read ``--help``; raise AdbError for a binary that cannot be benchmark_model."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise AdbError(f"benchmark_model {binary} printed nothing on the device: it is not "
                       f"a working build for {abi}; pass one built for {abi} "
                       f"(--benchmark-binary, or mobilectl device setup --abi {abi})")
    flags = frozenset(re.findall(r"--(\w+)", text))
    if "graph" not in flags:
        why = next((line for line in lines if _NOT_RUNNABLE.search(line)), lines[-1])
        if _NOT_RUNNABLE.search(text):
            raise AdbError(f"benchmark_model {binary} does not run on this {abi} device "
                           f"({why[:160]}): it is built for another ABI; pass one built for "
                           f"{abi} (mobilectl device setup --abi {abi})")
        raise AdbError(f"{binary} is not benchmark_model: its --help lists no --graph flag "
                       f"({why[:160]}); pass TFLite's benchmark_model for {abi}")
    return ToolCapabilities(digest, flags, version_in(text))
