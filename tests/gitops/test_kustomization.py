"""Editing an overlay changes the image values and nothing else: comments and layout survive."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from gitops.errors import GitOpsError
from gitops.imageref import ImageRef
from gitops.kustomization import Kustomization
from tests.gitops.support import REPO_ROOT, ref

OVERLAYS = sorted((REPO_ROOT / "deploy" / "overlays").glob("*/kustomization.yaml"))
# The one file that holds the image both overlays run.
RELEASE = REPO_ROOT / "deploy" / "release" / "kustomization.yaml"


def changed_lines(before: str, after: str) -> list[str]:
    return [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


@pytest.mark.parametrize("path", [*OVERLAYS, RELEASE], ids=lambda p: p.parent.name)
def test_project_overlay_round_trips_byte_for_byte(path: Path) -> None:
    text = path.read_text()
    assert Kustomization.parse(text, label=path.name).dump() == text


def test_setting_an_image_changes_exactly_the_three_image_lines() -> None:
    path = RELEASE
    text = path.read_text()
    target = ImageRef.parse(ref(1))
    after = Kustomization.parse(text, label=path.name).with_image("iris-api", target)
    assert changed_lines(text, after) == [
        line
        for line in changed_lines(text, after)
        if line.lstrip("+-").strip().startswith(("newName:", "newTag:", "digest:"))
    ]
    assert len(changed_lines(text, after)) == 6
    entry = Kustomization.parse(after, label=path.name).entry("iris-api")
    assert entry.reference() == target


STYLED = """\
---
# leading comment
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- ../../base   # no indentation before the dash
images:
- name: iris-api  # trailing comment kept
  newName: "europe-west1-docker.pkg.dev/your-gcp-project/iris/iris-api"
  newTag: 'sha-0000000'
  # a comment between keys
  digest: sha256:0000000000000000000000000000000000000000000000000000000000000000
- name: other
  newTag: "1.0"
"""


def test_quoting_comments_and_dash_indentation_of_the_author_are_kept() -> None:
    target = ImageRef.parse(ref(2))
    after = Kustomization.parse(STYLED, label="k").with_image("iris-api", target)
    expected = (
        STYLED.replace("your-gcp-project", "iris-demo-123")
        .replace("'sha-0000000'", f"'{target.tag}'")
        .replace("sha256:" + "0" * 64, target.digest)
    )
    assert after == expected


def test_missing_fields_are_added_to_the_entry() -> None:
    text = "images:\n  - name: iris-api\n    newTag: sha-0000000\n"
    target = ImageRef.parse(ref(3))
    after = Kustomization.parse(text, label="k").with_image("iris-api", target)
    assert Kustomization.parse(after, label="k").entry("iris-api").reference() == target


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("images: [\n", "k: malformed kustomization at line"),
        ("- just\n- a list\n", "k: malformed kustomization: the top level is not a mapping"),
        ("kind: Deployment\nimages: []\n", "k: malformed kustomization: kind is 'Deployment'"),
        ("resources: [../../base]\n", "k: no images: entry"),
        ("images: iris-api\n", "k: malformed kustomization: images: is not a list"),
        ("images: [iris-api]\n", "k: malformed kustomization: an images: item is not a mapping"),
        (
            "images:\n  - name: other\n",
            "k: images: has no entry with name: iris-api (found: 'other')",
        ),
        (
            "images:\n  - name: iris-api\n  - name: iris-api\n",
            "k: malformed kustomization: images: names 'iris-api' twice",
        ),
    ],
)
def test_malformed_kustomization_is_reported_in_one_line(text: str, message: str) -> None:
    with pytest.raises(GitOpsError) as excinfo:
        Kustomization.parse(text, label="k").entry("iris-api")
    assert str(excinfo.value).startswith(message)
    assert "\n" not in str(excinfo.value)
