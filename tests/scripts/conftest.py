"""Fixtures for the script tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.scripts.support import install_fakes


@pytest.fixture(scope="module")
def fakes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory of gcloud and kubectl stand-ins (support.install_fakes), one per module."""
    return install_fakes(tmp_path_factory.mktemp("fake-bin"))
