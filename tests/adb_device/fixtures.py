"""pytest fixtures: a private adb server per test session and test devices on it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from adb_device.device import DeviceConfig, TestDevice

HERE = Path(__file__).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def adb_server() -> Iterator[dict[str, str]]:
    """An adb server of our own on a free port (ANDROID_ADB_SERVER_PORT), killed at the
    end with every process it started; a user's adb server is left alone."""
    if shutil.which("adb") is None:
        pytest.fail("adb is not installed: apt-get install -y adb (.ci/run does this)")
    port = str(_free_port())
    saved = os.environ.get("ANDROID_ADB_SERVER_PORT")
    os.environ["ANDROID_ADB_SERVER_PORT"] = port
    subprocess.run(["adb", "start-server"], capture_output=True, timeout=30, check=True)
    try:
        yield {"ANDROID_ADB_SERVER_PORT": port}
    finally:
        subprocess.run(["adb", "kill-server"], capture_output=True, timeout=30)
        if saved is None:
            os.environ.pop("ANDROID_ADB_SERVER_PORT", None)
        else:
            os.environ["ANDROID_ADB_SERVER_PORT"] = saved


@pytest.fixture
def connect_device(adb_server: dict[str, str]) -> Iterator:
    """Factory: start a test device with the given faults and ``adb connect`` to it."""
    devices: list[TestDevice] = []

    def connect(*faults: str, **config: object) -> TestDevice:
        device = TestDevice(DeviceConfig(faults=set(faults), **config))
        devices.append(device)
        subprocess.run(["adb", "connect", device.serial], capture_output=True, timeout=30)
        _wait_listed(device.serial)
        return device

    yield connect
    for device in devices:
        subprocess.run(["adb", "disconnect", device.serial], capture_output=True, timeout=30)
        device.close()


def _wait_listed(serial: str, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        listing = subprocess.run(["adb", "devices"], capture_output=True, text=True,
                                 timeout=30).stdout
        for line in listing.splitlines():
            if line.startswith(serial) and "connecting" not in line:
                if "offline" not in line or time.monotonic() > end - timeout / 2:
                    return
        time.sleep(0.2)


@pytest.fixture(scope="session")
def benchmark_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test device's benchmark_model, runnable by the device shell."""
    path = tmp_path_factory.mktemp("bin") / "benchmark_model"
    body = (HERE / "benchmark_model.py").read_text()
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(0o755)
    return path
