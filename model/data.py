"""Loading and validating the versioned Iris CSV files in data/, and the contract they follow."""

from __future__ import annotations

import csv
import hashlib
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Imported where arrays are built: the names below are read by the service's
    # artifact check, which must not pay numpy's import to refuse a bad artifact.
    import numpy as np
    import numpy.typing as npt

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


@dataclass(frozen=True)
class DataContract:
    """What the data holds and what a request may send: the one place a fork changes.

    The artifact records all of it (model.artifact.Metadata), and the service builds its
    request schemas, feature order, tensor shapes and error messages from the artifact,
    so a model trained on other columns is served without editing the service.
    """

    feature_names: tuple[str, ...]
    """Feature columns, in the order the model is trained and served with."""
    label_name: str
    """The column holding the class."""
    class_names: tuple[str, ...]
    """The classes; class index i of the model is class_names[i]."""
    greater_than: float
    """Every feature value must be greater than this..."""
    at_most: float
    """...and at most this (and finite): one rule for the data and for requests."""
    unit: str
    """The unit of every feature, as the API documents it."""

    def __post_init__(self) -> None:
        # Names become CSV columns and JSON fields: plain identifiers keep both unambiguous.
        for name in (*self.feature_names, self.label_name):
            if not _NAME.match(name):
                raise ValueError(f"{name!r} is not a name (a letter, then letters, digits, _)")
        if not self.feature_names or len(set(self.feature_names)) != len(self.feature_names):
            raise ValueError(f"feature names {list(self.feature_names)} must be distinct, >= 1")
        if self.label_name in self.feature_names:
            raise ValueError(f"the label {self.label_name!r} cannot also be a feature")
        if len(self.class_names) < 2 or len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"class names {list(self.class_names)} must be distinct, >= 2")
        if not all(isinstance(name, str) and name for name in self.class_names):
            raise ValueError(f"class names {list(self.class_names)} must be non-empty strings")
        if not (math.isfinite(self.greater_than) and math.isfinite(self.at_most)):
            raise ValueError("the feature range must have finite bounds")
        if not self.unit.strip():
            raise ValueError("the unit of the features cannot be empty")
        if not self.greater_than < self.at_most:
            raise ValueError(f"empty feature range ({self.greater_than:g}, {self.at_most:g}]")

    @property
    def columns(self) -> tuple[str, ...]:
        """The CSV header: the features, then the label."""
        return (*self.feature_names, self.label_name)

    @property
    def feature_range(self) -> str:
        """The range rule in words, as error messages and the docs state it."""
        return f"greater than {self.greater_than:g} and at most {self.at_most:g} {self.unit}"

    def accepts(self, value: float) -> bool:
        """True for a finite value inside the range (NaN fails both comparisons)."""
        return self.greater_than < value <= self.at_most


CONTRACT = DataContract(
    feature_names=("sepal_length", "sepal_width", "petal_length", "petal_width"),
    label_name="species",
    class_names=("setosa", "versicolor", "virginica"),
    # A flower part has a positive length, and Iris flowers measure under 10 cm, so
    # anything above 100 is a unit or typing error.
    greater_than=0.0,
    at_most=100.0,
    unit="cm",
)
"""The data this repository trains on: Iris, four measurements in centimetres."""

FEATURE_NAMES = CONTRACT.feature_names
LABEL_NAME = CONTRACT.label_name
CLASS_NAMES = CONTRACT.class_names
COLUMNS = CONTRACT.columns
MIN_CM = CONTRACT.greater_than
MAX_CM = CONTRACT.at_most
FEATURE_RANGE = CONTRACT.feature_range


class DataValidationError(ValueError):
    """A data file does not follow the data card; the message names file, line and column."""


@dataclass(frozen=True)
class Dataset:
    """A validated data file: features as float64, labels as class indices."""

    path: Path
    sha256: str
    features: npt.NDArray[np.float64]
    labels: npt.NDArray[np.int64]
    contract: DataContract = CONTRACT

    @property
    def rows(self) -> int:
        return int(self.labels.shape[0])


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes, as recorded in the data card and the artifact metadata."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_dataset(path: Path, contract: DataContract = CONTRACT) -> Dataset:
    """Read and validate one data file against `contract` (the repository's by default).

    Raises DataValidationError naming the file, the line and the column for: a missing
    or empty file, missing or extra columns, a short or long row, a feature that is not
    a finite number within the contract's range, and a label outside its classes.
    """
    columns = contract.columns
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataValidationError(f"{path}: no such data file") from None
    except UnicodeDecodeError as exc:
        raise DataValidationError(f"{path}: not UTF-8 text ({exc.reason})") from None

    lines = list(csv.reader(text.splitlines()))
    if not lines or not any(cell.strip() for cell in lines[0]):
        raise DataValidationError(
            f"{path}: the file is empty; expected a header {','.join(columns)}"
        )

    header = [cell.strip() for cell in lines[0]]
    missing = [name for name in columns if name not in header]
    extra = [name for name in header if name not in columns]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing column(s) {', '.join(missing)}")
        if extra:
            parts.append(f"unexpected column(s) {', '.join(extra)}")
        raise DataValidationError(f"{path}, line 1: {'; '.join(parts)}")
    if len(set(header)) != len(header):
        raise DataValidationError(f"{path}, line 1: a column name appears twice")

    position = {name: header.index(name) for name in columns}
    features: list[list[float]] = []
    labels: list[int] = []
    for line_number, cells in enumerate(lines[1:], start=2):
        if not cells:
            continue  # a trailing blank line is harmless
        if len(cells) != len(header):
            raise DataValidationError(
                f"{path}, line {line_number}: expected {len(header)} values, found {len(cells)}"
            )
        row = [
            _feature(contract, path, line_number, name, cells[position[name]])
            for name in contract.feature_names
        ]
        features.append(row)
        labels.append(_label(contract, path, line_number, cells[position[contract.label_name]]))

    if not labels:
        raise DataValidationError(f"{path}: the file is empty; it has a header but no rows")

    import numpy

    return Dataset(
        path=path,
        sha256=sha256_of(path),
        features=numpy.asarray(features, dtype=numpy.float64),
        labels=numpy.asarray(labels, dtype=numpy.int64),
        contract=contract,
    )


def _feature(contract: DataContract, path: Path, line_number: int, column: str, raw: str) -> float:
    where = f"{path}, line {line_number}, column {column}"
    try:
        value = float(raw)
    except ValueError:
        raise DataValidationError(f"{where}: {raw.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise DataValidationError(f"{where}: {raw.strip()!r} is not a finite number")
    if not contract.accepts(value):
        raise DataValidationError(
            f"{where}: {value:g} is out of range; it must be {contract.feature_range}"
        )
    return value


def _label(contract: DataContract, path: Path, line_number: int, raw: str) -> int:
    name = raw.strip()
    try:
        return contract.class_names.index(name)
    except ValueError:
        label = contract.label_name
        raise DataValidationError(
            f"{path}, line {line_number}, column {label}: unknown {label} {name!r}; "
            f"expected one of {', '.join(contract.class_names)}"
        ) from None
