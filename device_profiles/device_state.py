"""What state the device was in: CPU governors and clocks, temperatures, battery, load.

Phones throttle: a SoC that heats up caps its cores' clocks (the cpufreq policy's
``scaling_max_freq`` drops below the hardware's ``cpuinfo_max_freq``), and a run on a
throttled or hot phone is not comparable with one on a cool phone. The same shell
script reads the state on a phone (over adb) and on this machine (with ``/bin/sh``):
Linux's cpufreq and thermal sysfs files, Android's ``dumpsys battery``, the load
average. A measurement records the state before and after its runs and is flagged
when it changed beyond limits (:func:`state_flags`).

The big cores are read from the same files (:func:`big_cores_mask`): every core
faster than the slowest cluster, so a phone needs no hand-written affinity mask.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: one shell script, run on the device or here: a line per core, zone and fact
STATE_SCRIPT = r"""
for c in /sys/devices/system/cpu/cpu[0-9]*; do
  f=$c/cpufreq
  echo "cpu ${c##*cpu} $(cat $f/scaling_governor 2>/dev/null || echo -) \
$(cat $f/scaling_cur_freq 2>/dev/null || echo -) $(cat $f/scaling_max_freq 2>/dev/null || echo -) \
$(cat $f/cpuinfo_max_freq 2>/dev/null || echo -)"
done
for z in /sys/class/thermal/thermal_zone*; do
  [ -r $z/temp ] && echo "zone $(cat $z/type 2>/dev/null | tr ' ' _) $(cat $z/temp 2>/dev/null)"
done
dumpsys battery 2>/dev/null | grep -E '^ *(level|status|AC powered|USB powered|Wireless powered):' \
  | sed 's/^ */battery /'
echo "load $(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo -)"
echo "cores $(grep -c ^processor /proc/cpuinfo 2>/dev/null || echo -)"
exit 0
"""
THROTTLED = 0.98  # a core whose policy caps it below this share of its hardware max
MAX_TEMP_RISE_C = 5.0  # a hotter rise than this during a measurement is flagged


@dataclass(frozen=True)
class Core:
    """One CPU core's cpufreq policy (kHz; None when the file is missing)."""

    index: int
    governor: str | None
    cur_khz: int | None
    max_khz: int | None  # the policy's cap now (thermal throttling lowers it)
    hw_max_khz: int | None  # what the hardware can do

    @property
    def throttled(self) -> bool:
        return bool(self.max_khz and self.hw_max_khz
                    and self.max_khz < THROTTLED * self.hw_max_khz)


@dataclass(frozen=True)
class DeviceState:
    """One reading of the device's state."""

    cores: tuple[Core, ...]
    temps_c: tuple[tuple[str, float], ...]  # thermal zone type -> degrees C
    battery_level: int | None
    charging: bool | None
    load_avg: float | None  # 1-minute load average
    cpu_count: int | None

    @property
    def hottest_c(self) -> float | None:
        return max((t for _, t in self.temps_c), default=None)

    @property
    def hottest_zone(self) -> str | None:
        return max(self.temps_c, key=lambda z: z[1])[0] if self.temps_c else None

    @property
    def governors(self) -> tuple[str, ...]:
        return tuple(sorted({c.governor for c in self.cores if c.governor}))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeviceState:
        """Back from its JSON form (``dataclasses.asdict``) in a profile report."""
        return cls(tuple(Core(**c) for c in data.get("cores", [])),
                   tuple((str(z), float(t)) for z, t in data.get("temps_c", [])),
                   data.get("battery_level"), data.get("charging"), data.get("load_avg"),
                   data.get("cpu_count"))


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _celsius(text: str) -> float | None:
    """A thermal zone's ``temp``: millidegrees on most kernels, degrees on a few."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value / 1000 if abs(value) >= 200 else value


def parse_state(text: str) -> DeviceState:
    """:data:`STATE_SCRIPT`'s output as a state (missing facts are None)."""
    cores, temps, battery = [], [], {}
    load = count = None
    for line in text.splitlines():
        word, _, rest = line.strip().partition(" ")
        parts = rest.split()
        if word == "cpu" and len(parts) == 5 and parts[0].isdigit():
            cores.append(Core(int(parts[0]), None if parts[1] == "-" else parts[1],
                              *(_int(p) for p in parts[2:])))
        elif word == "zone" and len(parts) == 2 and _celsius(parts[1]) is not None:
            temps.append((parts[0], _celsius(parts[1])))
        elif word == "battery" and ":" in rest:
            key, _, value = rest.partition(":")
            battery[key.strip()] = value.strip()
        elif word == "load" and re.fullmatch(r"[0-9.]+", rest.strip()):
            load = float(rest)
        elif word == "cores" and rest.strip().isdigit():
            count = int(rest)
    powered = [battery[k] == "true" for k in ("AC powered", "USB powered", "Wireless powered")
               if k in battery]
    return DeviceState(tuple(sorted(cores, key=lambda c: c.index)), tuple(temps),
                       _int(battery.get("level", "")), any(powered) if powered else None,
                       load, count)


def big_cores_mask(state: DeviceState) -> str | None:
    """Hex affinity mask of the cores faster than the slowest cluster (all cores when
    they are alike); None when the device gives no ``cpuinfo_max_freq``."""
    speeds = {c.index: c.hw_max_khz for c in state.cores if c.hw_max_khz}
    if not speeds:
        return None
    slowest = min(speeds.values())
    chosen = [i for i, khz in speeds.items() if khz > slowest] or list(speeds)
    return format(sum(1 << i for i in chosen), "x")


def state_flags(before: DeviceState, after: DeviceState, *,
                max_rise_c: float = MAX_TEMP_RISE_C) -> tuple[str, ...]:
    """Why a measurement between ``before`` and ``after`` may not be comparable."""
    flags = []
    capped = [c for c in after.cores if c.throttled]
    if capped:
        worst = min(capped, key=lambda c: (c.max_khz or 0) / (c.hw_max_khz or 1))
        flags.append(f"throttled: {len(capped)} core(s) capped, cpu{worst.index} at "
                     f"{(worst.max_khz or 0) / 1e6:.2f} of {(worst.hw_max_khz or 0) / 1e6:.2f} GHz")
    if before.hottest_c is not None and after.hottest_c is not None \
            and after.hottest_c - before.hottest_c > max_rise_c:
        flags.append(f"temperature rose {after.hottest_c - before.hottest_c:.1f} C "
                     f"({after.hottest_zone})")
    if before.load_avg is not None and before.cpu_count and before.load_avg > before.cpu_count:
        flags.append(f"busy: load {before.load_avg:.1f} on {before.cpu_count} cores")
    return tuple(flags)


class TooHot(Exception):
    """The device did not cool below the limit in time."""


NO_THERMAL_PAUSE_S = 5.0  # a device that reports no temperature pauses this long instead
POLL_S = 0.5


def wait_cool(read: Callable[[], DeviceState], *, max_temp_c: float, timeout_s: float,
              announce: Callable[[str], None], poll_s: float = POLL_S) -> DeviceState:
    """Read the state until the hottest zone is below ``max_temp_c``; TooHot after
    ``timeout_s``. A device with no thermal zone pauses :data:`NO_THERMAL_PAUSE_S`."""
    start = time.monotonic()
    state = read()
    if state.hottest_c is None:
        time.sleep(NO_THERMAL_PAUSE_S)
        return read()
    if state.hottest_c >= max_temp_c:
        announce(f"cool down: {state.hottest_c:.1f} C ({state.hottest_zone}) > {max_temp_c:g} C")
    while state.hottest_c is not None and state.hottest_c >= max_temp_c:
        if time.monotonic() - start >= timeout_s:
            raise TooHot(f"still {state.hottest_c:.1f} C ({state.hottest_zone}) after waiting "
                         f"{timeout_s:g}s to cool below {max_temp_c:g} C")
        time.sleep(poll_s)
        state = read()
    return state
