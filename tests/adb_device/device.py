"""A test device that speaks the device side of the adb transport protocol over TCP.

The real ``adb`` client reaches it with ``adb connect 127.0.0.1:PORT``. It implements
the CNXN handshake with a device banner, AUTH (to stay unauthorized), the ``shell:``
service (legacy and shell v2) and the ``sync:`` service (STAT, LIST, SEND, RECV, DONE,
QUIT), so ``adb shell``, ``adb push`` and ``adb pull`` work. ``/data/local/tmp`` maps
to a temporary folder; shell commands run there with ``/bin/sh`` and a few device
tools (``getprop``, a logging ``taskset``) first on the PATH. Faults can be injected to
test what users see when devices misbehave.

This is a test fixture, not part of the installed package.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import struct
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from adb_device.soc import Soc

A_SYNC, A_CNXN, A_OPEN, A_OKAY = 0x434E5953, 0x4E584E43, 0x4E45504F, 0x59414B4F
A_CLSE, A_WRTE, A_AUTH = 0x45534C43, 0x45545257, 0x48545541
A_VERSION = 0x01000001
MAX_PAYLOAD = 256 * 1024
AUTH_TOKEN = 1
DEVICE_ROOT = "/data/local/tmp"
FAULTS = ("unauthorized", "offline", "drop_on_push", "drop_on_benchmark", "slow",
          "benchmark_error", "no_space", "never_cools", "no_perf_mode", "no_op_profiling")


@dataclass
class DeviceConfig:
    serial_name: str = "panther"
    model: str = "Pixel 7"
    device: str = "panther"
    abi: str = "arm64-v8a"
    faults: set[str] = field(default_factory=set)
    slow_seconds: float = 30.0
    bench_format: str = "litert"  # or "tflite-2.4": the release benchmark_model speaks
    gpu_ops: tuple[str, ...] | None = None  # op types its GPU delegate takes (None: no GPU)


class Connection:
    """One adb transport connection (one TCP socket from the adb server)."""

    def __init__(self, sock: socket.socket, device: TestDevice) -> None:
        self.sock, self.device = sock, device
        self.lock = threading.Lock()
        self.next_id = 1
        self.streams: dict[int, Stream] = {}
        self.max_payload = MAX_PAYLOAD

    # -- packets --
    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        header = struct.pack("<6I", command, arg0, arg1, len(data), sum(data) & 0xFFFFFFFF,
                             command ^ 0xFFFFFFFF)
        with self.lock:
            self.sock.sendall(header + data)

    def recv(self) -> tuple[int, int, int, bytes] | None:
        header = self._read(24)
        if header is None:
            return None
        command, arg0, arg1, length, _, _ = struct.unpack("<6I", header)
        data = self._read(length) if length else b""
        return (command, arg0, arg1, data or b"")

    def _read(self, n: int) -> bytes | None:
        chunks, got = [], 0
        while got < n:
            chunk = self.sock.recv(n - got)
            if not chunk:
                return None
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def drop(self) -> None:
        """Cut the connection, as a pulled cable does."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    # -- main loop --
    def serve(self) -> None:
        try:
            self._serve()
        except OSError:
            pass
        finally:
            for s in list(self.streams.values()):
                s.closed.set()
            self.sock.close()

    def _serve(self) -> None:
        faults = self.device.config.faults
        while (packet := self.recv()) is not None:
            command, arg0, arg1, data = packet
            if command == A_CNXN:
                self.max_payload = min(arg1 or MAX_PAYLOAD, MAX_PAYLOAD)
                if "offline" in faults:
                    continue  # never answer: the client sees the device offline
                if "unauthorized" in faults:
                    self.send(A_AUTH, AUTH_TOKEN, 0, os.urandom(20))
                else:
                    self.send(A_CNXN, A_VERSION, MAX_PAYLOAD, self.device.banner())
            elif command == A_AUTH:
                if "unauthorized" in faults:
                    if arg0 != 3:  # a signature: reject with a new token
                        self.send(A_AUTH, AUTH_TOKEN, 0, os.urandom(20))
                    continue  # a public key: wait for a user who never comes
            elif command == A_OPEN:
                self._open(arg0, data.rstrip(b"\0").decode())
            elif command == A_OKAY:
                stream = self.streams.get(arg1)
                if stream:
                    stream.acked.set()
            elif command == A_WRTE:
                stream = self.streams.get(arg1)
                if stream:
                    self.send(A_OKAY, arg1, arg0)
                    stream.incoming(data)
            elif command == A_CLSE:
                stream = self.streams.pop(arg1, None)
                if stream:
                    stream.closed.set()

    def _open(self, remote_id: int, service: str) -> None:
        local_id = self.next_id
        self.next_id += 1
        if service.startswith("shell"):
            stream: Stream = ShellStream(self, local_id, remote_id, service)
        elif service.startswith("sync:"):
            stream = SyncStream(self, local_id, remote_id, service)
        else:
            self.send(A_CLSE, 0, remote_id)
            return
        self.streams[local_id] = stream
        self.send(A_OKAY, local_id, remote_id)
        threading.Thread(target=stream.run, daemon=True).start()


class Stream:
    def __init__(self, conn: Connection, local_id: int, remote_id: int, service: str) -> None:
        self.conn, self.local_id, self.remote_id, self.service = conn, local_id, remote_id, service
        self.acked = threading.Event()
        self.acked.set()
        self.closed = threading.Event()
        self.buffer = bytearray()
        self.data_ready = threading.Condition()

    def write(self, data: bytes) -> None:
        step = self.conn.max_payload
        for start in range(0, len(data), step):
            if not self.acked.wait(timeout=60) or self.closed.is_set():
                raise OSError("stream closed")
            self.acked.clear()
            self.conn.send(A_WRTE, self.local_id, self.remote_id, data[start:start + step])

    def close(self) -> None:
        self.acked.wait(timeout=10)
        self.conn.streams.pop(self.local_id, None)
        self.conn.send(A_CLSE, self.local_id, self.remote_id)

    def incoming(self, data: bytes) -> None:
        with self.data_ready:
            self.buffer += data
            self.data_ready.notify_all()

    def read_exact(self, n: int) -> bytes:
        with self.data_ready:
            while len(self.buffer) < n:
                if self.closed.is_set() or not self.data_ready.wait(timeout=60):
                    raise OSError("stream closed while reading")
            out = bytes(self.buffer[:n])
            del self.buffer[:n]
            return out

    def run(self) -> None:
        raise NotImplementedError


class ShellStream(Stream):
    """``shell:CMD`` (raw output) or ``shell,v2,...:CMD`` (packets with an exit code)."""

    def run(self) -> None:
        options, _, command = self.service.partition(":")
        v2 = "v2" in options.split(",")
        device = self.conn.device
        faults = device.config.faults
        try:
            if "--graph" in command and device.bump("benchmark") > 1 and "drop_on_benchmark" in faults:
                time.sleep(0.2)  # the second model's run loses the cable
                self.conn.drop()
                return
            if "slow" in faults and "--graph" in command:
                time.sleep(device.config.slow_seconds)
            code, out, err = device.run_shell(command)
            if v2:
                self.write(self._packet(1, out) + self._packet(2, err) + self._packet(3, bytes([code & 0xFF])))
            else:
                self.write(out + err)
            self.close()
        except OSError:
            pass

    @staticmethod
    def _packet(kind: int, data: bytes) -> bytes:
        return struct.pack("<BI", kind, len(data)) + data if data or kind == 3 else b""


class SyncStream(Stream):
    """The file sync protocol: STAT, LIST, SEND, RECV, QUIT."""

    def run(self) -> None:
        try:
            while True:
                request = self.read_exact(8)
                tag, length = request[:4], struct.unpack("<I", request[4:])[0]
                if tag == b"QUIT":
                    self.close()
                    return
                path = self.read_exact(length).decode()
                handler = {b"STAT": self._stat, b"LIST": self._list, b"SEND": self._send,
                           b"RECV": self._recv}.get(tag)
                if handler is None:
                    self._fail(f"unknown sync request {tag!r}")
                    continue
                handler(path)
        except OSError:
            pass

    def _fail(self, message: str) -> None:
        data = message.encode()
        self.write(b"FAIL" + struct.pack("<I", len(data)) + data)

    def _stat(self, path: str) -> None:
        local = self.conn.device.local_path(path)
        if local is None or not local.exists():
            self.write(b"STAT" + struct.pack("<3I", 0, 0, 0))
            return
        st = local.stat()
        self.write(b"STAT" + struct.pack("<3I", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime)))

    def _list(self, path: str) -> None:
        local = self.conn.device.local_path(path)
        if local is not None and local.is_dir():
            for entry in sorted(local.iterdir()):
                st, name = entry.stat(), entry.name.encode()
                self.write(b"DENT" + struct.pack("<4I", st.st_mode, st.st_size & 0xFFFFFFFF,
                                                 int(st.st_mtime), len(name)) + name)
        self.write(b"DONE" + struct.pack("<4I", 0, 0, 0, 0))

    def _send(self, spec: str) -> None:
        path, _, mode = spec.rpartition(",")
        device = self.conn.device
        local = device.local_path(path)
        received = 0
        chunks = []
        while True:
            header = self.read_exact(8)
            tag, value = header[:4], struct.unpack("<I", header[4:])[0]
            if tag == b"DONE":
                break
            chunk = self.read_exact(value)
            received += len(chunk)
            if ("drop_on_push" in device.config.faults and path.endswith(".tflite")
                    and device.count("tflite_push") >= 1 and received > 1024):
                self.conn.drop()  # the second model's push loses the cable
                raise OSError("dropped")
            chunks.append(chunk)
        if path.endswith(".tflite"):
            device.bump("tflite_push")
        if local is None:
            self._fail(f"{path}: Permission denied")
        elif "no_space" in device.config.faults:
            self._fail(f"{path}: No space left on device")
        else:
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_bytes(b"".join(chunks))
            local.chmod(stat.S_IMODE(int(mode)) if mode.isdigit() else 0o644)
            self.write(b"OKAY" + struct.pack("<I", 0))

    def _recv(self, path: str) -> None:
        local = self.conn.device.local_path(path)
        if local is None or not local.is_file():
            self._fail(f"{path}: No such file or directory")
            return
        data = local.read_bytes()
        for start in range(0, len(data), 64 * 1024):
            chunk = data[start:start + 64 * 1024]
            self.write(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
        self.write(b"DONE" + struct.pack("<I", 0))


class TestDevice:
    """One device: a TCP listener on 127.0.0.1, a sandbox folder, a config."""

    def __init__(self, config: DeviceConfig) -> None:
        self.config = config
        self.root = Path(tempfile.mkdtemp(prefix="mobilectl-adb-device-"))
        self.tmp = self.root / "data_local_tmp"
        self.bin = self.root / "system_bin"
        self.tmp.mkdir()
        self.bin.mkdir()
        self._install_tools()
        self.soc = Soc(self.root, self.bin, faults=config.faults)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.connections: list[Connection] = []
        self.processes: list[subprocess.Popen] = []
        self.counters: dict[str, int] = {}
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def serial(self) -> str:
        return f"127.0.0.1:{self.port}"

    def banner(self) -> bytes:
        c = self.config
        props = (f"ro.product.name={c.serial_name};ro.product.model={c.model};"
                 f"ro.product.device={c.device};features=shell_v2,cmd")
        return f"device::{props}".encode() + b"\0"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            conn = Connection(client, self)
            self.connections.append(conn)
            threading.Thread(target=conn.serve, daemon=True).start()

    def _install_tools(self) -> None:
        c = self.config
        getprop = self.bin / "getprop"
        getprop.write_text(
            "#!/bin/sh\ncase \"$1\" in\n"
            f"  ro.product.model) echo '{c.model}';;\n  ro.product.name) echo '{c.serial_name}';;\n"
            f"  ro.product.device) echo '{c.device}';;\n  ro.product.cpu.abi) echo '{c.abi}';;\n"
            "  *) echo '';;\nesac\n")
        taskset = self.bin / "taskset"
        taskset.write_text(  # logs the pinning, then runs the command (the host has 2 cores)
            "#!/bin/sh\nmask=\"$1\"; shift\n"
            "case \"$mask\" in *[!0-9a-fA-F]*|'') echo \"taskset: bad mask $mask\" >&2; exit 1;; esac\n"
            f"echo \"$mask $*\" >> '{self.root}/taskset.log'\nexec \"$@\"\n")
        for tool in (getprop, taskset):
            tool.chmod(0o755)

    def bump(self, name: str) -> int:
        self.counters[name] = self.counters.get(name, 0) + 1
        return self.counters[name]

    def count(self, name: str) -> int:
        return self.counters.get(name, 0)

    def local_path(self, device_path: str) -> Path | None:
        """Map a device path under /data/local/tmp into the sandbox; None elsewhere."""
        path = os.path.normpath(device_path)
        if path != DEVICE_ROOT and not path.startswith(DEVICE_ROOT + "/"):
            return None
        return self.tmp / os.path.relpath(path, DEVICE_ROOT)

    def run_shell(self, command: str) -> tuple[int, bytes, bytes]:
        """Run a device shell command in the sandbox with /bin/sh."""
        mapped = (command.replace(DEVICE_ROOT, str(self.tmp))
                  .replace("/sys/", f"{self.root}/sys/").replace("/proc/", f"{self.root}/proc/"))
        env = {"PATH": f"{self.bin}:/usr/bin:/bin", "HOME": str(self.tmp),
               "MOBILECTL_TEST_DEVICE_FAULTS": ",".join(sorted(self.config.faults)),
               "MOBILECTL_TEST_DEVICE_ROOT": str(self.root),
               "MOBILECTL_TEST_DEVICE_BENCH_FORMAT": self.config.bench_format}
        if self.config.gpu_ops is not None:
            env["MOBILECTL_TEST_DEVICE_GPU_OPS"] = ",".join(self.config.gpu_ops)
        proc = subprocess.Popen(["/bin/sh", "-c", mapped], cwd=self.tmp, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        self.processes.append(proc)
        out, err = proc.communicate()
        return proc.returncode, out, err

    def taskset_log(self) -> list[str]:
        log = self.root / "taskset.log"
        return log.read_text().splitlines() if log.exists() else []

    def close(self) -> None:
        self.soc.close()
        self.sock.close()
        for conn in self.connections:
            conn.drop()
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)
