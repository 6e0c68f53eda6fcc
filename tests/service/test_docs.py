"""/docs works without internet access, and its examples are what this server answers.

The last test drives a real headless Chromium (Debian's chromium and chromium-driver,
through selenium) against a real server, with every host but the loopback made
unresolvable: the page must render and "Try it out" on POST /predict must return a species.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from harness.servers import ServiceServer, start_service
from model.artifact import load
from service.docs import ASSETS, ASSETS_URL
from service.schemas import EXAMPLE_MODEL_VERSION, EXAMPLE_ROW
from service.settings import Settings
from tests.service.support import make_client

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_docs_page_loads_only_files_this_server_serves(client: TestClient) -> None:
    page = client.get("/docs")

    assert page.status_code == 200
    loaded = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sorted(loaded) == sorted(f"{ASSETS_URL}/{name}" for name in ASSETS)
    assert "http://" not in page.text
    assert "https://" not in page.text
    for name, content_type in ASSETS.items():
        asset = client.get(f"{ASSETS_URL}/{name}")
        assert asset.status_code == 200, name
        assert asset.headers["content-type"] == content_type
        assert len(asset.content) > 1000
    assert b"SwaggerUIBundle" in client.get(f"{ASSETS_URL}/swagger-ui-bundle.js").content


def test_docs_assets_serve_nothing_but_the_listed_files(client: TestClient) -> None:
    for path in ("index.html", "..%2F..%2Fapp.py", "swagger-ui.css.map"):
        answer = client.get(f"{ASSETS_URL}/{path}")
        assert answer.status_code == 404, path
        assert "detail" in answer.json()


def test_docs_can_be_switched_off(trained_artifact_dir: Path) -> None:
    settings = Settings(model_dir=trained_artifact_dir, docs_enabled=False)
    with make_client(settings) as client:
        assert client.get("/docs").status_code == 404
        assert client.get(f"{ASSETS_URL}/swagger-ui.css").status_code == 404
        assert client.get("/openapi.json").status_code == 200


def test_examples_show_the_served_model_version_and_its_real_answers(
    client: TestClient, trained_artifact_dir: Path
) -> None:
    artifact = load(trained_artifact_dir)
    document = client.get("/openapi.json").json()
    text = json.dumps(document)

    assert EXAMPLE_MODEL_VERSION not in text
    schemas = document["components"]["schemas"]
    example = schemas["PredictResponse"]["examples"][0]
    assert example["model_version"] == artifact.metadata.model_version
    row = np.array([list(EXAMPLE_ROW.values())])
    expected = artifact.estimator.predict_proba(row)[0]
    assert list(example["probabilities"].values()) == pytest.approx(expected.tolist(), abs=1e-4)
    assert example["species"] == "setosa"
    versions = schemas["V2ModelMetadata"]["examples"][0]["versions"]
    assert versions == [artifact.metadata.model_version]


def test_every_model_name_parameter_has_the_served_name_as_example(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    named = [
        parameter
        for path, operations in paths.items()
        if "{model_name}" in path
        for operation in operations.values()
        for parameter in operation.get("parameters", [])
        if parameter["name"] == "model_name"
    ]
    assert len(named) >= 5
    for parameter in named:
        assert [example["value"] for example in parameter["examples"].values()] == ["iris"]


# --- a real browser -------------------------------------------------------------------------


def _chromium() -> tuple[str, str]:
    browser = next(
        (found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))),
        None,
    )
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip(
            "needs Chromium and its driver on PATH (Debian: apt-get install chromium "
            "chromium-driver); make test does not install them"
        )
    return browser, driver


@pytest.fixture
def browser() -> Iterator[Any]:
    browser_path, driver_path = _chromium()
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the suite may run as root in a container
        "--disable-dev-shm-usage",
        "--window-size=1280,2400",
        # Air-gapped: every name but the loopback fails to resolve, so a page that
        # reached for a CDN would stay blank.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(driver_path))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.integration
@pytest.mark.xdist_group("service-server")
def test_docs_render_offline_in_chromium_and_try_it_out_predicts_a_species(
    tmp_path: Path, trained_artifact_dir: Path, browser: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server: ServiceServer = start_service(trained_artifact_dir, tmp_path, workers=1)
    wait = WebDriverWait(browser, 30)
    try:
        browser.get(f"{server.base_url}/docs")

        def predict_operation(_: Any) -> Any:
            for block in browser.find_elements(By.CSS_SELECTOR, ".opblock.opblock-post"):
                if block.find_elements(By.CSS_SELECTOR, '[data-path="/predict"]'):
                    return block
            return False

        block = wait.until(predict_operation)  # rendered from /openapi.json by Swagger UI
        assert "Iris species API" in browser.find_element(By.CSS_SELECTOR, ".info .title").text
        block.find_element(By.CSS_SELECTOR, '[data-path="/predict"]').click()
        wait.until(lambda _: block.find_element(By.CSS_SELECTOR, ".try-out__btn")).click()
        wait.until(lambda _: block.find_element(By.CSS_SELECTOR, ".execute")).click()
        status = wait.until(
            lambda _: block.find_element(
                By.CSS_SELECTOR, ".live-responses-table tr.response td.response-col_status"
            )
        ).text
        body = wait.until(
            lambda _: block.find_element(
                By.CSS_SELECTOR, ".live-responses-table .response-col_description pre"
            )
        )
        answer = json.loads(body.text)
        screenshot = tmp_path / "docs-try-it-out.png"
        browser.save_screenshot(str(screenshot))
    finally:
        server.stop()

    assert status.strip().startswith("200"), status
    assert answer["species"] == "setosa"  # the example row is a setosa
    assert answer["model_version"] == load(trained_artifact_dir).metadata.model_version
    assert screenshot.read_bytes().startswith(PNG_SIGNATURE)
    print(f"screenshot: {screenshot}")  # noqa: T201 - where to look when it fails
