"""Write data/v1 and data/v2 from the Iris table that scikit-learn ships.

v2 is scikit-learn's table as is: since scikit-learn 0.20 it carries the two
corrections noted in the UCI repository. v1 is the table as UCI distributes it,
so those two rows are put back to their transcribed (wrong) values. No download.

Run with `make data`; the output is committed and checked by tests/model/test_data_versions.py.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

from sklearn.datasets import load_iris

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ("sepal_length", "sepal_width", "petal_length", "petal_width", "species")

# UCI iris.data, 1-based sample number -> the four features as UCI prints them.
# scikit-learn's copy holds the corrected values (35: 4.9,3.1,1.5,0.2; 38: 4.9,3.6,1.4,0.1).
UCI_TRANSCRIPTION = {
    35: (4.9, 3.1, 1.5, 0.1),
    38: (4.9, 3.1, 1.5, 0.1),
}


def corrected_rows() -> list[tuple[float, float, float, float, str]]:
    iris = load_iris()
    names = [str(name) for name in iris.target_names]
    rows = []
    for features, target in zip(iris.data.tolist(), iris.target.tolist(), strict=True):
        sepal_length, sepal_width, petal_length, petal_width = features
        rows.append((sepal_length, sepal_width, petal_length, petal_width, names[target]))
    return rows


def uci_rows() -> list[tuple[float, float, float, float, str]]:
    rows = corrected_rows()
    for sample, features in UCI_TRANSCRIPTION.items():
        rows[sample - 1] = (*features, rows[sample - 1][4])
    return rows


def write(path: Path, rows: list[tuple[float, float, float, float, str]]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    for version, rows in (("v1", uci_rows()), ("v2", corrected_rows())):
        target = ROOT / "data" / version / "data.csv"
        digest = write(target, rows)
        print(f"{target.relative_to(ROOT)}  {len(rows)} rows  sha256 {digest}")


if __name__ == "__main__":
    main()
