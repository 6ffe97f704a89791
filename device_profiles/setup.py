"""``mobilectl device setup``: put TFLite's ``benchmark_model`` for an ABI in the user
cache, from a local file or downloaded from TensorFlow's published nightly builds.
A checksum is always recorded beside it and checked when ``--sha256`` is given."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import urllib.request
from pathlib import Path

from device_profiles.harness import binary_cache
from mobilectl.core.errors import UserError

# TensorFlow's published prebuilt benchmark tools (the TFLite performance docs link these).
URLS = {
    "arm64-v8a": "https://storage.googleapis.com/tensorflow-nightly-public/prod/tensorflow/"
                 "release/lite/tools/nightly/latest/android_aarch64_benchmark_model",
    "armeabi-v7a": "https://storage.googleapis.com/tensorflow-nightly-public/prod/tensorflow/"
                   "release/lite/tools/nightly/latest/android_arm_benchmark_model",
    "x86_64": "https://storage.googleapis.com/tensorflow-nightly-public/prod/tensorflow/"
              "release/lite/tools/nightly/latest/android_x86_64_benchmark_model",
    "x86": "https://storage.googleapis.com/tensorflow-nightly-public/prod/tensorflow/"
           "release/lite/tools/nightly/latest/android_x86_benchmark_model",
}


def install_benchmark_binary(abi: str, *, source: str | None = None,
                             sha256: str | None = None) -> tuple[Path, str]:
    """Copy or download the binary into the cache; return its path and sha256."""
    if abi not in URLS:
        raise UserError(f"--abi {abi!r} is not allowed: one of {', '.join(URLS)}")
    target = binary_cache() / abi / "benchmark_model"
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
        tmp_path = Path(tmp.name)
    try:
        if source:
            if not Path(source).is_file():
                raise UserError(f"--from {source}: no such file")
            shutil.copyfile(source, tmp_path)
        else:
            _download(URLS[abi], tmp_path)
        digest = hashlib.sha256(tmp_path.read_bytes()).hexdigest()
        if sha256 and digest != sha256.lower():
            raise UserError(f"checksum mismatch for {abi}: got {digest}, expected {sha256}")
        tmp_path.chmod(0o755)
        tmp_path.replace(target)
    finally:
        tmp_path.unlink(missing_ok=True)
    (target.parent / "benchmark_model.sha256").write_text(f"{digest}  benchmark_model\n")
    return target, digest


def _download(url: str, path: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as response, path.open("wb") as handle:
            shutil.copyfileobj(response, handle)
    except OSError as exc:
        raise UserError(f"cannot download {url} ({exc}); without a network, pass "
                        "--from PATH to a benchmark_model you have") from None
