"""Loading and validating the versioned Iris CSV files in data/."""

from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Imported where arrays are built: the names below are read by the service's
    # artifact check, which must not pay numpy's import to refuse a bad artifact.
    import numpy as np
    import numpy.typing as npt

FEATURE_NAMES: tuple[str, ...] = ("sepal_length", "sepal_width", "petal_length", "petal_width")
"""Feature columns, in the order the model is trained and served with."""

LABEL_NAME = "species"
CLASS_NAMES: tuple[str, ...] = ("setosa", "versicolor", "virginica")
"""Species labels; class index i of the model is CLASS_NAMES[i]."""

COLUMNS: tuple[str, ...] = (*FEATURE_NAMES, LABEL_NAME)

MIN_CM = 0.0
MAX_CM = 100.0
FEATURE_RANGE = f"greater than {MIN_CM:g} and at most {MAX_CM:g} cm"
"""The one rule for a measurement, in training data and in requests alike: a finite number
of centimetres in (MIN_CM, MAX_CM]. A flower part has a positive length, and Iris flowers
measure under 10 cm, so anything above 100 is a unit or typing error."""


class DataValidationError(ValueError):
    """A data file does not follow the data card; the message names file, line and column."""


@dataclass(frozen=True)
class Dataset:
    """A validated data file: features as float64, labels as class indices."""

    path: Path
    sha256: str
    features: npt.NDArray[np.float64]
    labels: npt.NDArray[np.int64]

    @property
    def rows(self) -> int:
        return int(self.labels.shape[0])


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes, as recorded in the data card and the artifact metadata."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_dataset(path: Path) -> Dataset:
    """Read and validate one data file.

    Raises DataValidationError naming the file, the line and the column for: a missing
    or empty file, missing or extra columns, a short or long row, a feature that is not
    a finite number within FEATURE_RANGE, and a species outside CLASS_NAMES.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataValidationError(f"{path}: no such data file") from None
    except UnicodeDecodeError as exc:
        raise DataValidationError(f"{path}: not UTF-8 text ({exc.reason})") from None

    lines = list(csv.reader(text.splitlines()))
    if not lines or not any(cell.strip() for cell in lines[0]):
        raise DataValidationError(
            f"{path}: the file is empty; expected a header {','.join(COLUMNS)}"
        )

    header = [cell.strip() for cell in lines[0]]
    missing = [name for name in COLUMNS if name not in header]
    extra = [name for name in header if name not in COLUMNS]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing column(s) {', '.join(missing)}")
        if extra:
            parts.append(f"unexpected column(s) {', '.join(extra)}")
        raise DataValidationError(f"{path}, line 1: {'; '.join(parts)}")
    if len(set(header)) != len(header):
        raise DataValidationError(f"{path}, line 1: a column name appears twice")

    position = {name: header.index(name) for name in COLUMNS}
    features: list[list[float]] = []
    labels: list[int] = []
    for line_number, cells in enumerate(lines[1:], start=2):
        if not cells:
            continue  # a trailing blank line is harmless
        if len(cells) != len(header):
            raise DataValidationError(
                f"{path}, line {line_number}: expected {len(header)} values, found {len(cells)}"
            )
        row = [_feature(path, line_number, name, cells[position[name]]) for name in FEATURE_NAMES]
        features.append(row)
        labels.append(_label(path, line_number, cells[position[LABEL_NAME]]))

    if not labels:
        raise DataValidationError(f"{path}: the file is empty; it has a header but no rows")

    import numpy

    return Dataset(
        path=path,
        sha256=sha256_of(path),
        features=numpy.asarray(features, dtype=numpy.float64),
        labels=numpy.asarray(labels, dtype=numpy.int64),
    )


def _feature(path: Path, line_number: int, column: str, raw: str) -> float:
    where = f"{path}, line {line_number}, column {column}"
    try:
        value = float(raw)
    except ValueError:
        raise DataValidationError(f"{where}: {raw.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise DataValidationError(f"{where}: {raw.strip()!r} is not a finite number")
    if not MIN_CM < value <= MAX_CM:
        raise DataValidationError(f"{where}: {value:g} is out of range; it must be {FEATURE_RANGE}")
    return value


def _label(path: Path, line_number: int, raw: str) -> int:
    name = raw.strip()
    try:
        return CLASS_NAMES.index(name)
    except ValueError:
        raise DataValidationError(
            f"{path}, line {line_number}, column {LABEL_NAME}: unknown species {name!r}; "
            f"expected one of {', '.join(CLASS_NAMES)}"
        ) from None
