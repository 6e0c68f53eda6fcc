"""The data loader refuses malformed files with a message naming file, line and column."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.data import DataValidationError, load_dataset

HEADER = "sepal_length,sepal_width,petal_length,petal_width,species\n"
GOOD_ROW = "5.1,3.5,1.4,0.2,setosa\n"


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        pytest.param("", ["the file is empty"], id="empty-file"),
        pytest.param(HEADER, ["has a header but no rows"], id="header-only"),
        pytest.param(
            "sepal_length,sepal_width,petal_length,species\n5.1,3.5,1.4,setosa\n",
            ["line 1", "missing column(s) petal_width"],
            id="missing-column",
        ),
        pytest.param(
            HEADER.replace("\n", ",colour\n") + GOOD_ROW.replace("\n", ",blue\n"),
            ["line 1", "unexpected column(s) colour"],
            id="extra-column",
        ),
        pytest.param(
            HEADER + GOOD_ROW + "5.0,abc,1.4,0.2,setosa\n",
            ["line 3", "column sepal_width", "'abc' is not a number"],
            id="non-numeric",
        ),
        pytest.param(
            HEADER + "5.0,3.1,nan,0.2,setosa\n",
            ["line 2", "column petal_length", "not a finite number"],
            id="nan",
        ),
        pytest.param(
            HEADER + "5.0,3.1,1.4,-0.2,setosa\n",
            ["line 2", "column petal_width", "-0.2 is out of range", "greater than 0"],
            id="negative",
        ),
        pytest.param(
            HEADER + "5.0,3.1,1.4,0,setosa\n",
            ["line 2", "column petal_width", "0 is out of range", "greater than 0"],
            id="zero",
        ),
        pytest.param(
            HEADER + "500,3.1,1.4,0.2,setosa\n",
            ["line 2", "column sepal_length", "500 is out of range", "at most 100 cm"],
            id="above-100",
        ),
        pytest.param(
            HEADER + GOOD_ROW + GOOD_ROW + "6.3,3.3,6.0,2.5,Iris-virginica\n",
            ["line 4", "column species", "unknown species 'Iris-virginica'"],
            id="unknown-species",
        ),
        pytest.param(
            HEADER + "5.1,3.5,1.4,setosa\n",
            ["line 2", "expected 5 values, found 4"],
            id="short-row",
        ),
    ],
)
def test_invalid_data_is_refused_with_file_line_and_column(
    tmp_path: Path, content: str, fragments: list[str]
) -> None:
    path = tmp_path / "data.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataValidationError) as caught:
        load_dataset(path)
    message = str(caught.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="no such data file"):
        load_dataset(tmp_path / "absent.csv")


def test_columns_in_another_order_load_by_name(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text(
        "species,petal_width,petal_length,sepal_width,sepal_length\nsetosa,0.2,1.4,3.5,5.1\n"
    )
    dataset = load_dataset(path)
    assert dataset.features.tolist() == [[5.1, 3.5, 1.4, 0.2]]
    assert dataset.labels.tolist() == [0]
