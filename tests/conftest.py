"""Shared fixtures for the whole suite."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LITEFS = str(Path(sys.executable).with_name("litefs"))


@pytest.fixture
def litefs_bin() -> str:
    """Path of the installed ``litefs`` console script (in the same venv as the tests)."""
    return LITEFS


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An environment without the plugin-selection variables, for CLI subprocesses."""
    for name in ("LITEFS_LOAD_PLUGINS", "LITEFS_DISABLE_PLUGINS"):
        monkeypatch.delenv(name, raising=False)
    return dict(os.environ)
