"""Strict JSON Schemas from Argo CD's own CRDs, and reading the argocd/ manifests.

An API server prunes unknown fields of a custom resource silently, and kubectl's strict
field validation needs a cluster. Validating offline against the CRD's openAPIV3Schema, closed
with `additionalProperties: false` wherever the CRD lists its properties, turns a misspelt
field into a test failure instead of a setting that quietly does nothing.
"""

from __future__ import annotations

import copy
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.tools import kustomize_command

CRDS_ENV = "ARGOCD_CRDS_DIR"
ARGOCD_VERSION = "v3.5.1"
CRD_FILES = {"Application": "application-crd.yaml", "AppProject": "appproject-crd.yaml"}
API_VERSION = "argoproj.io/v1alpha1"

# metadata is a bare `type: object` in every CRD (the API server validates ObjectMeta
# itself). These are the ObjectMeta fields a manifest in Git may set; anything else, such as
# `finalizer` for `finalizers`, is a typo.
OBJECT_META: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
        "namespace": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "finalizers": {"type": "array", "items": {"type": "string"}},
    },
}


def crds_dir(repo_root: Path) -> Path | None:
    """Where the v3.5.1 CRDs are: $ARGOCD_CRDS_DIR, else ../shared/argocd-crds/v3.5.1."""
    configured = os.environ.get(CRDS_ENV)
    candidate = (
        Path(configured)
        if configured
        else repo_root.parent / "shared" / "argocd-crds" / ARGOCD_VERSION
    )
    if all((candidate / name).is_file() for name in CRD_FILES.values()):
        return candidate
    return None


def strict(node: Any) -> Any:
    """A copy of an openAPIV3Schema node that JSON Schema validates as strictly as possible.

    - `x-kubernetes-int-or-string` becomes integer-or-string (it carries no `type`);
    - `nullable: true` admits null;
    - objects that list `properties` reject any other key, unless the CRD marks them
      `x-kubernetes-preserve-unknown-fields` or gives `additionalProperties` itself.
    """
    if isinstance(node, list):
        return [strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: strict(value) for key, value in node.items() if not key.startswith("x-")}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["type"] = ["integer", "string"]
    if node.get("nullable") and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def crd_schema(crd_path: Path, kind: str, api_version: str) -> dict[str, Any]:
    """The strict schema of `kind` at `api_version` from a CRD file, ObjectMeta and
    apiVersion/kind pinned."""
    crd = yaml.safe_load(crd_path.read_text())
    assert crd["spec"]["names"]["kind"] == kind
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == api_version.split("/")[-1]]
    schema = strict(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
    schema["properties"]["metadata"] = OBJECT_META
    schema["properties"]["apiVersion"] = {"const": api_version}
    schema["properties"]["kind"] = {"const": kind}
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind"})
    return dict(schema)


def load_schema(directory: Path, kind: str) -> dict[str, Any]:
    """The strict schema of one Argo CD kind."""
    return crd_schema(directory / CRD_FILES[kind], kind, API_VERSION)


@dataclass(frozen=True)
class Manifest:
    """One YAML document of a file under argocd/."""

    path: Path
    relpath: str
    doc: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.doc.get("kind"))

    @property
    def name(self) -> str:
        return str(self.doc["metadata"]["name"])


# Argo CD's own installation: a kustomization over the upstream manifest, not plain
# manifests; tests/scripts/test_gke_argocd_install.py renders and checks it.
INSTALL_DIR = "argocd/install"


def argocd_manifests(repo_root: Path) -> list[Manifest]:
    """Every document of every YAML file under argocd/ but install/, in a stable order."""
    result = []
    for path in sorted((repo_root / "argocd").rglob("*.y*ml")):
        if path.relative_to(repo_root).as_posix().startswith(f"{INSTALL_DIR}/"):
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                result.append(Manifest(path, path.relative_to(repo_root).as_posix(), doc))
    return result


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """Render a kustomization with the same kustomize the gitops tool uses."""
    proc = subprocess.run(
        [*kustomize_command(), str(directory)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, f"kustomize {directory} failed: {proc.stderr}"
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def group_of(api_version: str) -> str:
    """The API group of an apiVersion ("" for the core group)."""
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""
