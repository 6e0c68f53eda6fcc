"""Settings, the gunicorn configuration derived from them, and the log formats."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from gunicorn.config import Config

from service.logs import ConsoleFormatter, JsonFormatter, logging_config, resolve_format
from service.server import WORKER_CLASS, gunicorn_options
from service.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTRACT_FIELDS = {
    "model_dir",
    "host",
    "port",
    "workers",
    "timeout",
    "graceful_timeout",
    "keepalive",
    "max_body_bytes",
    "max_batch_rows",
    "log_level",
    "log_format",
    "docs_enabled",
    "git_revision",
    "metrics_dir",
}


def test_settings_keep_every_documented_field_with_a_description() -> None:
    fields = Settings.model_fields
    assert set(fields) >= CONTRACT_FIELDS
    for name, field in fields.items():
        assert field.description, f"IRIS_{name.upper()} has no docstring"


def test_settings_come_from_iris_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IRIS_PORT", "9001")
    monkeypatch.setenv("IRIS_DOCS_ENABLED", "false")
    monkeypatch.setenv("IRIS_MODEL_DIR", "/srv/model")
    monkeypatch.setenv("PORT", "1")  # unprefixed variables are not ours

    settings = Settings()

    assert settings.port == 9001
    assert settings.docs_enabled is False
    assert settings.model_dir == Path("/srv/model")
    assert (settings.host, settings.workers, settings.max_body_bytes) == ("127.0.0.1", 2, 65536)


def test_readme_configuration_table_lists_every_setting_with_its_docstring() -> None:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    for name, field in Settings.model_fields.items():
        assert f"`IRIS_{name.upper()}`" in text, f"IRIS_{name.upper()} missing from the README"
        first_sentence = (field.description or "").split(";")[0].split(".")[0]
        assert " ".join(first_sentence.split()) in " ".join(text.split()), name


def test_gunicorn_configuration_is_derived_from_settings() -> None:
    settings = Settings(
        host="0.0.0.0",  # noqa: S104 - what the container image binds
        port=8123,
        workers=3,
        timeout=11,
        graceful_timeout=7,
        keepalive=2,
        log_level="warning",
    )

    options = gunicorn_options(settings)
    config = Config()
    for key, value in options.items():
        config.set(key, value)  # gunicorn validates every value

    assert config.bind == ["0.0.0.0:8123"]
    assert config.workers == 3
    assert config.worker_class_str == WORKER_CLASS == "uvicorn_worker.UvicornWorker"
    assert (config.timeout, config.graceful_timeout, config.keepalive) == (11, 7, 2)
    assert config.loglevel == "warning"
    assert config.logconfig_dict["loggers"]["iris"]["level"] == "WARNING"


def test_ipv6_hosts_are_bracketed() -> None:
    assert gunicorn_options(Settings(host="::1", port=8000))["bind"] == ["[::1]:8000"]


def test_invalid_configuration_exits_2_naming_the_variable(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service"],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", "IRIS_PORT": "eighty"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert "invalid IRIS_* configuration" in result.stderr
    assert "port" in result.stderr


def test_serving_process_keeps_pandas_out_when_it_unpickles(
    trained_artifact_dir: Path, tmp_path: Path
) -> None:
    # Without exported arrays the service unpickles the estimator, which imports
    # scikit-learn, which would import pandas.
    pickled = Path(shutil.copytree(trained_artifact_dir, tmp_path / "model"))
    metadata = json.loads((pickled / "metadata.json").read_text())
    del metadata["fast_path"]
    (pickled / "metadata.json").write_text(json.dumps(metadata))
    script = f"""
import sys
from pathlib import Path
from service.server import keep_pandas_out
keep_pandas_out()
from service.app import create_app
from service.dataplane import load_model
app = create_app()
app.serve(load_model(Path({str(pickled)!r})))
body = b'{{"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}}'
assert app.plane.predict(body)
print("sklearn" in sys.modules, "pandas" in sys.modules)
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False"]


def test_the_master_preloads_the_model_then_freezes_it_for_the_workers(
    trained_artifact_dir: Path,
) -> None:
    # What gunicorn calls in the master before forking, with the collector off as
    # `python -m service` starts it.
    script = """
import gc
gc.disable()
from service.server import _application
from service.settings import Settings
app = _application(Settings()).load()
print(app.preloaded is not None, app.state.model is None, gc.isenabled(), gc.get_freeze_count())
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", "IRIS_MODEL_DIR": str(trained_artifact_dir)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    preloaded, not_served_yet, collecting, frozen = result.stdout.split()
    assert (preloaded, not_served_yet, collecting) == ("True", "True", "True")
    # Everything built at start-up is out of the collector's reach in the workers.
    assert int(frozen) > 100_000


def test_json_log_lines_carry_fields_and_tracebacks() -> None:
    record = logging.LogRecord("iris", logging.INFO, __file__, 1, "model %s", ("loaded",), None)
    record.fields = {"model_version": "abc", "pid": 7}
    line = json.loads(JsonFormatter().format(record))

    assert line["level"] == "info"
    assert line["logger"] == "iris"
    assert line["message"] == "model loaded"
    assert (line["model_version"], line["pid"]) == ("abc", 7)
    assert line["ts"].endswith("+00:00")

    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.LogRecord("iris", logging.ERROR, __file__, 1, "x", (), sys.exc_info())
    assert "ValueError: boom" in json.loads(JsonFormatter().format(failed))["exception"]


def test_console_lines_are_readable() -> None:
    record = logging.LogRecord("iris.access", logging.INFO, __file__, 1, "request", (), None)
    record.fields = {"status": 200}

    assert ConsoleFormatter().format(record).endswith("INFO    iris.access: request status=200")


def test_auto_log_format_is_json_off_a_terminal() -> None:
    assert resolve_format("auto") == "json"  # pytest captures stdout: not a terminal
    assert resolve_format("console") == "console"
    config = logging_config("info", "console")
    assert config["formatters"]["iris"]["()"] == "service.logs.ConsoleFormatter"


def test_the_metrics_port_must_differ_from_the_api_port() -> None:
    assert Settings().metrics_port == 9090
    with pytest.raises(ValueError, match="IRIS_METRICS_PORT and IRIS_PORT are both 8000"):
        Settings(port=8000, metrics_port=8000)


def test_request_lines_of_one_event_loop_turn_are_written_together_in_order(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio

    from service.logs import REQUEST_LOGGER, RequestLog

    caplog.set_level(logging.INFO, logger=REQUEST_LOGGER)
    request_log = RequestLog("json")
    seen: list[list[str]] = []

    async def three_requests_finish_in_one_turn() -> None:
        for n in range(3):
            request_log.write(logging.INFO, "POST", "/predict", 200 + n, 0.001, "id", "v1")
            seen.append(capsys.readouterr().out.splitlines())
        await asyncio.sleep(0)  # the next turn
        seen.append(capsys.readouterr().out.splitlines())
        request_log.write(logging.INFO, "POST", "/predict", 203, 0.001, "id", "v1")  # a new turn
        seen.append(capsys.readouterr().out.splitlines())
        await asyncio.sleep(0)

    asyncio.run(three_requests_finish_in_one_turn())

    # The lines of a turn together when it ends, in order; the next turn's at its end.
    assert [[json.loads(line)["status"] - 200 for line in lines] for lines in seen] == [
        [],
        [],
        [],
        [0, 1, 2],
        [],
    ]
    assert [json.loads(line)["status"] for line in capsys.readouterr().out.splitlines()] == [203]
    assert capsys.readouterr().out == ""
