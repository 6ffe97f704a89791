"""Device profiles ship as package data and are read with importlib.resources."""

from __future__ import annotations

import pytest

from device_profiles import load_profile_data, profile_names
from mobilectl.core.errors import UserError


def test_host_profile_is_package_data() -> None:
    assert "host" in profile_names()
    assert load_profile_data("host")["name"] == "host"


def test_unknown_profile_is_named() -> None:
    with pytest.raises(UserError, match="unknown device profile 'hots' \\(did you mean 'host'\\?\\)"):
        load_profile_data("hots")


def test_every_bundled_profile_validates() -> None:
    from device_profiles.profile import all_profiles

    profiles = {p.name: p for p in all_profiles()}
    assert set(profiles) >= {"host", "pixel", "emulator", "android-arm64"}
    pixel = profiles["pixel"]
    assert pixel.transport == "adb" and pixel.affinity_mask is None and pixel.abi == "arm64-v8a"
    assert pixel.max_temp_c == 40.0 and pixel.cooldown_s == 0  # wait to cool, not sleep
    assert pixel.match.matches(model="Pixel 7", product="panther", serial="X")
    assert profiles["emulator"].match.matches(model="sdk", product="x", serial="emulator-5554")
    assert not profiles["emulator"].match.matches(model="Pixel 7", product="p", serial="abc")
    assert pixel.roofline.peak("int8") > pixel.roofline.peak("fp32") > 0
    assert profiles["host"].roofline.peak("fp32") is None  # measured at run time


@pytest.mark.parametrize("patch,message", [
    ({"threads": 0}, "key 'threads' = 0 is not allowed: a positive integer"),
    ({"runs": {"warmpu": 3}}, "unknown key 'runs.warmpu' (did you mean 'runs.warmup'?)"),
    ({"delegates": ["tpu"]}, "key 'delegates' = ['tpu'] is not allowed"),
    ({"affinity_mask": "0xzz"}, "key 'affinity_mask'"),
])
def test_bad_profile_names_file_and_key(tmp_path, patch: dict, message: str) -> None:
    import tomllib

    from device_profiles import load_profile_data
    from device_profiles.profile import load_profile

    data = load_profile_data("pixel")
    for key, value in patch.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    path = tmp_path / "mine.toml"
    path.write_text(_to_toml(data))
    assert tomllib.loads(path.read_text())
    with pytest.raises(UserError) as caught:
        load_profile(str(path))
    assert str(path) in str(caught.value) and message in str(caught.value)


def _to_toml(data: dict) -> str:
    import json

    lines, tables = [], []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    for name, table in tables:
        lines.append(f"[{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"
