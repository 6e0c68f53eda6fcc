"""Fixtures shared by every test package: the repository root and a freshly trained model."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.train import DEFAULT_MIN_ACCURACY, DEFAULT_SEED, train
from tests.xdist_groups import group_items

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.hookimpl(trylast=True)  # after xdist's own attempt at the same
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    group_items(config, items)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def trained_output_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Output of one real training run on data/v2: model/, metrics.json, confusion_matrix.png."""
    out = tmp_path_factory.mktemp("trained")
    train(REPO_ROOT / "data" / "v2" / "data.csv", out, DEFAULT_SEED, DEFAULT_MIN_ACCURACY)
    return out


@pytest.fixture(scope="session")
def trained_artifact_dir(trained_output_dir: Path) -> Path:
    """The artifact directory (model.joblib + metadata.json) of that training run.

    Shared by many tests: copy it before changing anything in it.
    """
    return trained_output_dir / "model"
