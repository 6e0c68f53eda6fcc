"""Helpers the service tests import (fixtures stay in conftest.py)."""

from __future__ import annotations

import warnings

from service.app import create_app
from service.settings import Settings

with warnings.catch_warnings():
    # Starlette asks for the `httpx2` package instead of httpx, which the pinned dev
    # environment does not have; the TestClient works the same with httpx.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

__all__ = ["TestClient", "make_client"]


def make_client(settings: Settings) -> TestClient:
    """A TestClient for create_app(settings); use it in a `with` block so startup runs."""
    return TestClient(create_app(settings), raise_server_exceptions=False)
