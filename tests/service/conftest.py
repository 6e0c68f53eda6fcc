"""Fixtures for the service tests: settings, an in-process client, a real gunicorn server.

Helpers that test modules import live in tests/service/support.py; real servers are
started through harness.servers, as bench and reliability start them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.servers import ServiceServer, start_service
from service.settings import Settings
from tests.service.support import TestClient, make_client


@pytest.fixture(scope="session")
def service_settings(trained_artifact_dir: Path) -> Settings:
    """Settings for in-process tests: the freshly trained artifact, JSON logs."""
    return Settings(model_dir=trained_artifact_dir, log_format="json")


@pytest.fixture(scope="module")
def client(service_settings: Settings) -> Iterator[TestClient]:
    """One started app per test module (loading the model takes ~0.1 s)."""
    with make_client(service_settings) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def server(
    tmp_path_factory: pytest.TempPathFactory, trained_artifact_dir: Path
) -> Iterator[ServiceServer]:
    """A real gunicorn with two uvicorn workers serving the trained artifact.

    Session-scoped: under xdist the tests using it may be interleaved with other
    modules, and a module-scoped server would be started more than once.
    """
    running = start_service(trained_artifact_dir, tmp_path_factory.mktemp("server"), workers=2)
    try:
        yield running
    finally:
        running.stop()
