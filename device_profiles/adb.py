"""The adb backend: the real ``adb`` client (Debian's ``adb`` package or Android
platform-tools) driving TFLite's ``benchmark_model`` on a phone, an emulator or a
device farm's remote adb server.

Every adb call has a timeout, every path sent to the device shell is quoted
(``shlex.quote``), and what was pushed is removed afterwards. A remote adb server is
reached with ``--adb-server HOST:PORT`` (adb's ``-H``/``-P``) or adb's own
``ADB_SERVER_SOCKET``/``ANDROID_ADB_SERVER_PORT`` environment, the mechanism device
farms such as DeviceFarmer/STF expose.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mobilectl.core.errors import UserError

REMOTE_DIR = "/data/local/tmp/mobilectl"
DEFAULT_TIMEOUT_S = 30.0
INSTALL_HINT = ("install it (Debian/Ubuntu: apt-get install adb; or Android SDK "
                "platform-tools) or pass --adb PATH")
LOST = re.compile(r"device '.*' not found|device offline|no devices/emulators found|"
                  r"error: closed|protocol fault|connection reset|device still authorizing|"
                  r"failed to read|Broken pipe", re.IGNORECASE)


class AdbError(UserError):
    """adb could not do what was asked (one line for the user)."""


class DeviceLost(AdbError):
    """The device went away (disconnected, offline) while in use."""


class AdbTimeout(AdbError):
    """An adb call took longer than its timeout."""


@dataclass(frozen=True)
class AdbDevice:
    serial: str
    state: str  # device, unauthorized, offline, ...
    model: str = ""
    product: str = ""
    device: str = ""
    abi: str = ""


class AdbClient:
    """A thin, timed wrapper over the ``adb`` binary."""

    def __init__(self, *, adb: str | None = None, server: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT_S) -> None:
        found = adb or shutil.which("adb")
        if not found or not Path(found).exists():
            raise AdbError(f"adb not found{f' at {adb}' if adb else ''}: {INSTALL_HINT}")
        self.adb = found
        self.timeout = timeout
        self.server_args = server_args(server)

    def run(self, args: list[str], *, timeout: float | None = None,
            serial: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``adb [-H -P] [-s SERIAL] ARGS`` with a timeout; never raises on exit code."""
        argv = [self.adb, *self.server_args, *(["-s", serial] if serial else []), *args]
        limit = timeout or self.timeout
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=limit,
                                  stdin=subprocess.DEVNULL, env=os.environ.copy())
        except subprocess.TimeoutExpired:
            what = f"{serial}: " if serial else ""
            raise AdbTimeout(f"{what}adb {' '.join(args[:2])} timed out after {limit:.0f}s "
                             "(device too slow or unresponsive; raise --timeout)") from None

    def devices(self) -> list[AdbDevice]:
        """Connected devices with their state; model, product and ABI of usable ones."""
        done = self.run(["devices", "-l"])
        if done.returncode != 0:
            raise AdbError(f"adb devices failed: {_last_line(done)}")
        found = []
        for line in done.stdout.splitlines()[1:]:
            parts = line.split()
            if len(parts) < 2 or line.startswith("*"):
                continue
            serial, state = parts[0], parts[1]
            if state == "device":
                found.append(self.describe(serial))
            else:
                found.append(AdbDevice(serial, state))
        return found

    def describe(self, serial: str) -> AdbDevice:
        props = ("ro.product.model", "ro.product.name", "ro.product.device", "ro.product.cpu.abi")
        script = "; ".join(f"getprop {p}" for p in props)
        done = self.run(["shell", script], serial=serial)
        if done.returncode != 0:
            return AdbDevice(serial, "offline")
        values = (done.stdout.splitlines() + [""] * 4)[:4]
        return AdbDevice(serial, "device", *(v.strip() for v in values))

    def shell(self, serial: str, argv: list[str], *, timeout: float | None = None,
              check: bool = True) -> str:
        """Run ``argv`` on the device (each word quoted); return its output; raise
        DeviceLost / AdbError on failure (``check=False``: a command that printed
        something and exited non-zero returns what it printed, for its caller to read)."""
        command = " ".join(shlex.quote(word) for word in argv)
        done = self.run(["shell", command], serial=serial, timeout=timeout)
        output = done.stdout + done.stderr
        if done.returncode != 0 and not check and output.strip() and not LOST.search(output):
            return output
        if done.returncode != 0:
            if LOST.search(output) or not output.strip() or not self.alive(serial):
                raise DeviceLost(f"{serial}: device lost ({_last_line(done) or 'no answer'})")
            raise AdbError(f"{serial}: '{argv[0]}' failed ({_last_line(done)})")
        return output

    def alive(self, serial: str) -> bool:
        """Is the device still there and online (after a failed call)?"""
        try:
            done = self.run(["get-state"], serial=serial, timeout=10)
        except AdbTimeout:
            return False
        return done.returncode == 0 and done.stdout.strip() == "device"

    def push(self, serial: str, local: Path, remote: str, *, timeout: float | None = None) -> None:
        done = self.run(["push", str(local), remote], serial=serial, timeout=timeout)
        if done.returncode != 0:
            text = done.stdout + done.stderr
            if re.search(r"No space left|ENOSPC", text, re.IGNORECASE):
                raise AdbError(f"{serial}: no space left on the device for {local.name}; "
                               "free space in /data/local/tmp")
            if LOST.search(text) or not text.strip() or not self.alive(serial):
                raise DeviceLost(f"{serial}: device lost while pushing {local.name}")
            raise AdbError(f"{serial}: push of {local.name} failed ({_last_line(done)})")


def server_args(server: str | None) -> list[str]:
    """adb's ``-H HOST -P PORT`` for ``--adb-server HOST:PORT`` (a UserError otherwise)."""
    if not server:
        return []
    host, _, port = server.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"--adb-server {server!r} is not allowed: HOST:PORT, e.g. 127.0.0.1:5037")
    return ["-H", host, "-P", port]


def _last_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""
