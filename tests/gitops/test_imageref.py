"""Only immutable Artifact Registry references (tag and digest) are accepted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gitops.errors import GitOpsError
from gitops.imageref import ImageRef
from tests.tools import run_tool

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
    result = run_tool("yamllint", "--strict", DATA, cwd=repo_root)
    assert result.returncode == 0, result.stdout + result.stderr
