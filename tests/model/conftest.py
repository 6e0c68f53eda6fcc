"""Fixtures of the model tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture
def artifact(tmp_path: Path, trained_artifact_dir: Path) -> Path:
    """A private copy of the trained artifact that a test may change or damage."""
    return Path(shutil.copytree(trained_artifact_dir, tmp_path / "model"))
