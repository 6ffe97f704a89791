"""Device profiles ship as package data and are read with importlib.resources."""

from __future__ import annotations

import pytest

from device_profiles import load_profile_data, profile_names
from mobilectl.errors import UserError


def test_host_profile_is_package_data() -> None:
    assert "host" in profile_names()
    assert load_profile_data("host")["name"] == "host"


def test_unknown_profile_is_named() -> None:
    with pytest.raises(UserError, match="unknown device profile 'hots' \\(did you mean 'host'\\?\\)"):
        load_profile_data("hots")
