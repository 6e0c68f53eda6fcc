"""The suite's `xdist_group` marks really keep a group on one worker under `make test`'s
`-n 2 --dist loadgroup`."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

CONFTEST = textwrap.dedent(
    """
    import pytest
    from tests.xdist_groups import group_items

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(config, items):
        group_items(config, items)
    """
)

# Each test records the worker it ran on; the grouped ones sleep, so that an ungrouped
# scheduler would hand them to both workers.
TESTS = textwrap.dedent(
    """
    import os, time
    from pathlib import Path
    import pytest

    def record(kind, i):
        worker = os.environ["PYTEST_XDIST_WORKER"]
        (Path(os.environ["RECORD_DIR"]) / f"{kind}-{i}").write_text(worker)

    @pytest.mark.xdist_group("shared")
    @pytest.mark.parametrize("i", range(6))
    def test_grouped(i):
        time.sleep(0.1)
        record("grouped", i)

    @pytest.mark.parametrize("i", range(6))
    def test_free(i):
        time.sleep(0.1)
        record("free", i)
    """
)


def test_a_groups_tests_all_run_on_one_worker(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "conftest.py").write_text(CONFTEST)
    (project / "test_groups.py").write_text(TESTS)
    (project / "pytest.ini").write_text("[pytest]\n")
    records = tmp_path / "records"
    records.mkdir()
    make_test = ["-n", "2", "--dist", "loadgroup", "-p", "no:cacheprovider"]
    # Only xdist: the suite's other plugins (schemathesis, hypothesis) take seconds to load.
    plugins = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "xdist.plugin", *make_test],
        cwd=project,
        env={**os.environ, **plugins, "PYTHONPATH": str(REPO_ROOT), "RECORD_DIR": str(records)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    ran = {path.name: path.read_text() for path in records.iterdir()}
    grouped = {worker for name, worker in ran.items() if name.startswith("grouped-")}
    assert len(ran) == 12
    assert len(set(ran.values())) == 2, "both workers should have run something"
    assert len(grouped) == 1, ran
