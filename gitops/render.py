"""Render an overlay with kustomize and check which image its workloads run."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from gitops.errors import GitOpsError
from gitops.imageref import ImageRef

KUSTOMIZE_ENV = "GITOPS_KUSTOMIZE"
_RENDER_TIMEOUT_S = 120
_POD_TEMPLATE_KINDS = frozenset(
    {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController"}
)


def kustomize_command(configured: str | None = None) -> list[str]:
    """The command that renders a kustomization directory (the directory is appended).

    Order: the explicit setting, then $GITOPS_KUSTOMIZE, then a standalone `kustomize build`
    (what Argo CD runs), then the copy built into `kubectl kustomize`.
    """
    setting = configured or os.environ.get(KUSTOMIZE_ENV)
    if setting:
        command = shlex.split(setting)
        if not command:
            raise GitOpsError(f"{KUSTOMIZE_ENV} is set but empty")
        return command
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    raise GitOpsError(
        "neither kustomize nor kubectl is on PATH; install one or set "
        f"{KUSTOMIZE_ENV} (e.g. 'kustomize build')"
    )


def render_text(directory: Path, command: list[str], *, label: str) -> str:
    """Run kustomize on `directory` and return its output as kustomize wrote it.

    `label` is how errors name the overlay (its path in the repository).
    """
    try:
        proc = subprocess.run(
            [*command, str(directory)],
            capture_output=True,
            text=True,
            timeout=_RENDER_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError as exc:
        raise GitOpsError(f"render failed: {command[0]} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise GitOpsError(f"render of {label} did not finish in {_RENDER_TIMEOUT_S} s") from exc
    if proc.returncode != 0:
        lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
        detail = lines[-1] if lines else f"exit code {proc.returncode}"
        # kustomize mentions the temporary directory; name the overlay the user knows instead.
        detail = detail.replace(str(directory), label)
        raise GitOpsError(f"render of {label} failed: {detail}")
    return proc.stdout


def parse_rendered(text: str, *, label: str) -> list[dict[str, Any]]:
    """The objects of a kustomize output."""
    try:
        docs = list(YAML(typ="safe", pure=True).load_all(text))
    except YAMLError as exc:
        raise GitOpsError(f"render of {label} produced invalid YAML: {exc}") from exc
    return [doc for doc in docs if isinstance(doc, dict)]


def render(directory: Path, command: list[str], *, label: str) -> list[dict[str, Any]]:
    """Run kustomize on `directory` and return the rendered objects."""
    return parse_rendered(render_text(directory, command, label=label), label=label)


@dataclass(frozen=True)
class Container:
    """One container (or init container) of a rendered workload."""

    kind: str
    workload: str
    container: str
    image: str


def containers(objects: list[dict[str, Any]]) -> Iterator[Container]:
    """Every container of every workload with a pod template (and bare Pods / CronJobs)."""
    for obj in objects:
        kind = str(obj.get("kind", ""))
        name = str((obj.get("metadata") or {}).get("name", ""))
        spec = obj.get("spec") or {}
        if kind in _POD_TEMPLATE_KINDS:
            pod_spec = (spec.get("template") or {}).get("spec") or {}
        elif kind == "CronJob":
            job = (spec.get("jobTemplate") or {}).get("spec") or {}
            pod_spec = (job.get("template") or {}).get("spec") or {}
        elif kind == "Pod":
            pod_spec = spec
        else:
            continue
        for key in ("initContainers", "containers"):
            for item in pod_spec.get(key) or []:
                yield Container(kind, name, str(item.get("name", "")), str(item.get("image", "")))


def _repository(image: str) -> str:
    # Strip "@digest", then a ":tag" that follows the last path separator.
    base = image.split("@", 1)[0]
    slash = base.rfind("/")
    colon = base.rfind(":")
    return base[:colon] if colon > slash else base


def verify_image(objects: list[dict[str, Any]], ref: ImageRef, *, label: str) -> list[Container]:
    """Check that the rendered Deployment runs exactly `ref`, and nothing runs another version.

    Returns the containers that run it; raises GitOpsError naming the first mismatch.
    """
    expected = ref.rendered_forms()
    running = [c for c in containers(objects) if _repository(c.image) == ref.name]
    for item in running:
        if item.image not in expected:
            raise GitOpsError(
                f"render of {label}: {item.kind}/{item.workload} container {item.container} "
                f"runs {item.image}, not {ref}"
            )
    if not any(c.kind == "Deployment" for c in running):
        found = sorted({f"{c.kind}/{c.workload}: {c.image}" for c in containers(objects)})
        raise GitOpsError(
            f"render of {label}: no Deployment runs {ref.name} "
            f"(rendered images: {', '.join(found) or 'none'}); "
            "does the images entry name match the image in the base Deployment?"
        )
    return running
