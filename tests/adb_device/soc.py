"""The test device's SoC as Android shows it: cpufreq and thermal sysfs files, /proc,
``dumpsys battery`` and ``cmd power``.

A Tensor G2 layout (cpu0-3 at 1.80 GHz, cpu4-5 at 2.35 GHz, cpu6-7 at 2.85 GHz). The
temperature is a first-order thermal model driven by real work: the device's
``benchmark_model`` appends the seconds each run took (load and inference) to
``work.log`` and waits until the thread has taken it into the zones (``work.seen``),
so the heat shows before the run returns, however loaded this host is; the thread heats
the zones by that work and cools them toward ambient while idle (or never, with the
``never_cools`` fault). Above the trip point the policy caps cpu4-7 (``scaling_max_freq``
drops), as thermal throttling does on a phone. ``cmd power
set-fixed-performance-mode-enabled`` is logged and kept as state; the
``no_perf_mode`` fault answers like a build without it.

This is a test fixture, not part of the installed package.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

CLUSTERS = ((range(0, 4), 1_803_000), (range(4, 6), 2_350_000), (range(6, 8), 2_850_000))
ZONES = ("BIG", "MID", "LITTLE", "battery")
AMBIENT_C = 30.0
HOT_START_C = 52.0  # where a never-cooling device starts
HEAT_C_PER_BUSY_S = 20.0  # exaggerated: a test run of 0.2 s heats it by 4 C
COOL_TAU_S = 2.0
TRIP_C = 45.0
THROTTLE = 0.7
BATTERY = """Current Battery Service state:
  AC powered: false
  USB powered: true
  Wireless powered: false
  Max charging current: 500000
  Max charging voltage: 5000000
  Charge counter: 3412000
  status: 2
  health: 2
  present: true
  level: 87
  scale: 100
  voltage: 4281
  temperature: 312
  technology: Li-ion
"""


class Soc:
    """Sysfs under ``root/sys``, /proc under ``root/proc``, a thermal thread."""

    def __init__(self, root: Path, bin_dir: Path, *, faults: set[str]) -> None:
        self.root, self.faults = root, faults
        self.temp = HOT_START_C if "never_cools" in faults else AMBIENT_C
        self.work_seen = 0.0
        self.stop = threading.Event()
        self._write_static(bin_dir)
        self._update(0.0)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def close(self) -> None:
        """Stop the thermal thread (before the sandbox goes)."""
        self.stop.set()
        self.thread.join(timeout=5)

    def _write_static(self, bin_dir: Path) -> None:
        for cores, khz in CLUSTERS:
            for i in cores:
                policy = self.root / f"sys/devices/system/cpu/cpu{i}/cpufreq"
                policy.mkdir(parents=True)
                (policy / "scaling_governor").write_text("schedutil\n")
                (policy / "cpuinfo_max_freq").write_text(f"{khz}\n")
        for n, name in enumerate(ZONES):
            zone = self.root / f"sys/class/thermal/thermal_zone{n}"
            zone.mkdir(parents=True)
            (zone / "type").write_text(f"{name}\n")
        proc = self.root / "proc"
        proc.mkdir()
        (proc / "cpuinfo").write_text("".join(f"processor\t: {i}\nBogoMIPS\t: 49.15\n\n"
                                              for i in range(8)))
        (proc / "loadavg").write_text("0.41 0.52 0.60 1/1234 5678\n")
        (bin_dir / "dumpsys").write_text(
            "#!/bin/sh\n[ \"$1\" = battery ] || { echo \"Can't find service: $1\"; exit 0; }\n"
            f"cat <<'EOF'\n{BATTERY}EOF\n")
        unsupported = "no_perf_mode" in self.faults
        (bin_dir / "cmd").write_text(
            "#!/bin/sh\n"
            f"echo \"$*\" >> '{self.root}/cmd.log'\n"
            "if [ \"$1 $2\" = 'power set-fixed-performance-mode-enabled' ]; then\n"
            + ("  echo \"Unknown command: $2\" >&2; exit 255\n" if unsupported else
               f"  echo \"$3\" > '{self.root}/fixed_performance_mode'; exit 0\n")
            + "fi\necho \"Unknown command: $2\" >&2; exit 255\n")
        for tool in ("dumpsys", "cmd"):
            (bin_dir / tool).chmod(0o755)

    def _busy_seconds(self) -> tuple[float, int]:
        """The seconds logged in ``work.log`` and how many of its bytes that was."""
        log = self.root / "work.log"
        if not log.exists():
            return 0.0, 0
        text = log.read_bytes()
        return sum(float(x) for x in text.split()), len(text)

    def _update(self, dt: float) -> None:
        busy, counted = self._busy_seconds()
        self.temp += HEAT_C_PER_BUSY_S * (busy - self.work_seen)
        self.work_seen = busy
        if "never_cools" not in self.faults and dt:
            self.temp = AMBIENT_C + (self.temp - AMBIENT_C) * math.exp(-dt / COOL_TAU_S)
        hot = self.temp > TRIP_C
        for cores, khz in CLUSTERS:
            for i in cores:
                policy = self.root / f"sys/devices/system/cpu/cpu{i}/cpufreq"
                cap = int(khz * THROTTLE) if hot and i >= 4 else khz
                _write(policy / "scaling_max_freq", f"{cap}\n")
                _write(policy / "scaling_cur_freq", f"{cap}\n")
        for n, name in enumerate(ZONES):
            offset = {"BIG": 0.0, "MID": -2.0, "LITTLE": -4.0, "battery": -8.0}[name]
            _write(self.root / f"sys/class/thermal/thermal_zone{n}/temp",
                   f"{round((self.temp + offset) * 1000)}\n")
        _write(self.root / "work.seen", f"{counted}\n")  # bytes of work.log in the zones

    def _run(self) -> None:
        last = time.monotonic()
        while not self.stop.wait(0.1):
            now = time.monotonic()
            self._update(now - last)
            last = now

    def perf_mode_log(self) -> list[str]:
        log = self.root / "cmd.log"
        return log.read_text().splitlines() if log.exists() else []


def _write(path: Path, text: str) -> None:
    """Replace a file whole (a reader never sees it half-written)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
