"""Only immutable Artifact Registry references (tag and digest) are accepted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops.errors import GitOpsError
from gitops.imageref import ImageRef

DATA = Path(__file__).parent / "data"
CASES: dict[str, list[dict[str, Any]]] = yaml.safe_load((DATA / "refs.yaml").read_text())


@pytest.mark.parametrize("case", CASES["valid"], ids=lambda c: c["tag"])
def test_valid_reference_parses_into_name_tag_and_digest(case: dict[str, Any]) -> None:
    parsed = ImageRef.parse(case["ref"])
    assert parsed.name == case["name"]
    assert parsed.tag == case["tag"]
    assert str(parsed) == case["ref"].strip()
    assert parsed.short_name == "iris-api"
    assert str(parsed) in parsed.rendered_forms()


@pytest.mark.parametrize("case", CASES["invalid"], ids=lambda c: c["error"])
def test_invalid_reference_is_refused_with_a_reason(case: dict[str, Any]) -> None:
    with pytest.raises(GitOpsError) as excinfo:
        ImageRef.parse(case["ref"])
    message = str(excinfo.value)
    assert case["error"] in message
    assert "\n" not in message


def test_reference_round_trips_through_its_parts() -> None:
    parsed = ImageRef.parse(CASES["valid"][0]["ref"])
    assert ImageRef.from_parts(parsed.name, parsed.tag, parsed.digest) == parsed


def test_the_golden_cases_file_is_yamllint_clean(repo_root: Path) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "yamllint"), "--strict", str(DATA)],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
