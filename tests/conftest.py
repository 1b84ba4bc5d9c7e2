"""Shared fixtures for the whole suite."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LITEFS = str(Path(sys.executable).with_name("litefs"))


def _find_ltx_fixtures() -> str:
    """The shared LTX/WAL fixtures live beside the repository (``../shared/ltx-fixtures``), not in
    it. ``LITEFS_LTX_FIXTURES`` overrides; test modules read that variable, set here once."""
    for candidate in (
        os.environ.get("LITEFS_LTX_FIXTURES", ""),
        REPO.parent / "shared" / "ltx-fixtures",
        Path("/work/shared/ltx-fixtures"),
    ):
        if candidate and Path(candidate).is_dir():
            return str(candidate)
    return str(REPO.parent / "shared" / "ltx-fixtures")


os.environ["LITEFS_LTX_FIXTURES"] = _find_ltx_fixtures()


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
