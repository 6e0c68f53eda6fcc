"""The rendered manifests and the image agree with the service's own code.

Probe and scrape paths must be routes of the app, the ports must be the port the
service binds, and every IRIS_* variable the Deployment or the image sets must be
a real settings field with a value the settings accept.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any

import pytest
from starlette.routing import BaseRoute

from service.app import create_app
from service.metrics import METRICS_PATH
from service.server import gunicorn_options
from service.settings import Settings
from tests.deploy.support import Render, assignments, parse_dockerfile

PREFIX = str(Settings.model_config.get("env_prefix", ""))


def container(render: Render) -> dict[str, Any]:
    return dict(render.one("Deployment")["spec"]["template"]["spec"]["containers"][0])


def deployment_env(render: Render) -> dict[str, str]:
    return {item["name"]: str(item["value"]) for item in container(render)["env"]}


def image_env(repo_root: Path) -> dict[str, str]:
    result: dict[str, str] = {}
    for instruction in parse_dockerfile((repo_root / "Dockerfile").read_text()):
        if instruction.stage == "runtime" and instruction.keyword == "ENV":
            result.update(assignments(instruction.arguments))
    return result


def get_routes(routes: list[BaseRoute]) -> set[str]:
    paths = set()
    for route in routes:
        methods = getattr(route, "methods", None) or set()
        if "GET" in methods:
            paths.add(str(getattr(route, "path", "")))
    return paths


@pytest.fixture(scope="module")
def app_get_paths() -> set[str]:
    # Building the app never loads the model, so no artifact is needed here.
    return get_routes(create_app(Settings()).api.routes)


def test_probe_paths_are_get_routes_of_the_app(rendered: Render, app_get_paths: set[str]) -> None:
    spec = container(rendered)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        path = spec[probe]["httpGet"]["path"]
        assert path in app_get_paths, f"{probe} asks for {path}, which the app does not serve"
    assert spec["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert spec["livenessProbe"]["httpGet"]["path"] == "/livez"


def test_scrape_is_the_metrics_port_and_path_the_service_serves_apart_from_the_api(
    rendered: Render, app_get_paths: set[str]
) -> None:
    annotations = rendered.one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    ports = {p["name"]: p["containerPort"] for p in container(rendered)["ports"]}
    assert annotations["prometheus.io/path"] == METRICS_PATH
    assert METRICS_PATH not in app_get_paths  # not on the API port the Service exposes
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]
    assert int(deployment_env(rendered)[f"{PREFIX}METRICS_PORT"]) == ports["metrics"]
    assert Settings.model_fields["metrics_port"].default == ports["metrics"]


def test_container_port_is_the_port_the_service_binds(rendered: Render, repo_root: Path) -> None:
    (port,) = [p for p in container(rendered)["ports"] if p["name"] == "http"]
    default = Settings.model_fields["port"].default
    assert port["containerPort"] == default
    assert int(deployment_env(rendered)[f"{PREFIX}PORT"]) == default
    assert int(image_env(repo_root)[f"{PREFIX}PORT"]) == default
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container(rendered)[probe]["httpGet"]["port"] == port["name"]


def settings_env_names() -> set[str]:
    return {f"{PREFIX}{name}".upper() for name in Settings.model_fields}


def test_every_iris_variable_of_the_deployment_is_a_settings_field(rendered: Render) -> None:
    names = {name for name in deployment_env(rendered) if name.startswith(PREFIX)}
    assert names, "the Deployment sets no IRIS_* variable"
    assert names <= settings_env_names(), names - settings_env_names()
    # Nothing else: every variable the container gets is one the service reads.
    assert set(deployment_env(rendered)) == names


def test_every_iris_variable_of_the_image_is_a_settings_field(repo_root: Path) -> None:
    names = {name for name in image_env(repo_root) if name.startswith(PREFIX)}
    assert names <= settings_env_names(), names - settings_env_names()


@pytest.fixture
def pod_env(rendered: Render, repo_root: Path) -> dict[str, str]:
    """The IRIS_* variables a container of this overlay sees: image ENV, then the Deployment's."""
    result = {k: v for k, v in image_env(repo_root).items() if k.startswith(PREFIX)}
    # What `docker build --build-arg GIT_REVISION=<sha>` puts in the image.
    result[f"{PREFIX}GIT_REVISION"] = "0123456789abcdef0123456789abcdef01234567"
    result.update(deployment_env(rendered))
    return result


@pytest.fixture
def pod_settings(pod_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in list(os.environ):
        if name.startswith(PREFIX):
            monkeypatch.delenv(name)
    for name, value in pod_env.items():
        monkeypatch.setenv(name, value)
    return Settings()


def test_settings_accept_the_pod_environment(
    pod_env: dict[str, str], pod_settings: Settings
) -> None:
    for name, value in pod_env.items():
        field = name.removeprefix(PREFIX).lower()
        parsed = getattr(pod_settings, field)
        # Booleans are written the way YAML and the environment spell them.
        shown = str(parsed).lower() if isinstance(parsed, bool) else str(parsed)
        assert shown == value, name


def test_gunicorn_binds_the_container_port_on_every_interface(
    rendered: Render, pod_env: dict[str, str], pod_settings: Settings
) -> None:
    (port,) = [p for p in container(rendered)["ports"] if p["name"] == "http"]
    options = gunicorn_options(pod_settings)
    assert options["bind"] == [f"{pod_env[PREFIX + 'HOST']}:{port['containerPort']}"]
    assert ipaddress.ip_address(pod_settings.host).is_unspecified
    assert options["workers"] == int(pod_env[PREFIX + "WORKERS"])
    assert options["graceful_timeout"] == int(pod_env[PREFIX + "GRACEFUL_TIMEOUT"])
