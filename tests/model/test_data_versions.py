"""The committed data files are what the data card says they are."""

from __future__ import annotations

import csv
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_iris

from model.data import COLUMNS, load_dataset

# 1-based sample numbers that the UCI notes list as transcription errors.
UCI_ERRATA = {35, 38}


def read_rows(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_v2_equals_the_table_scikit_learn_ships_row_for_row(repo_root: Path) -> None:
    dataset = load_dataset(repo_root / "data" / "v2" / "data.csv")
    iris = load_iris()
    np.testing.assert_array_equal(dataset.features, iris.data)
    np.testing.assert_array_equal(dataset.labels, iris.target)


def test_v1_differs_from_v2_exactly_in_the_two_uci_errata_rows(repo_root: Path) -> None:
    v1 = read_rows(repo_root / "data" / "v1" / "data.csv")
    v2 = read_rows(repo_root / "data" / "v2" / "data.csv")
    assert v1[0] == v2[0] == list(COLUMNS)
    assert len(v1) == len(v2) == 151
    differing = {
        sample for sample, (a, b) in enumerate(zip(v1[1:], v2[1:], strict=True), 1) if a != b
    }
    assert differing == UCI_ERRATA
    # The corrected values the UCI notes give.
    assert v2[35][:4] == ["4.9", "3.1", "1.5", "0.2"]
    assert v2[38][:4] == ["4.9", "3.6", "1.4", "0.1"]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_data_card_records_the_sha256_and_row_count_of_each_file(
    repo_root: Path, version: str
) -> None:
    path = repo_root / "data" / version / "data.csv"
    card = (repo_root / "data" / "README.md").read_text(encoding="utf-8")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    row = re.search(rf"^\|\s*`?{version}/data\.csv`?\s*\|(?P<rest>.*)$", card, flags=re.MULTILINE)
    assert row, f"data/README.md has no table row for {version}/data.csv"
    cells = [cell.strip(" `") for cell in row.group("rest").split("|")]
    assert digest in cells
    assert str(load_dataset(path).rows) in cells
