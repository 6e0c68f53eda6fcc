"""Reads `kubectl get ... -o json` on stdin and says what is wrong, one line per problem.

The kind scripts call it while they wait, so a loop that cannot succeed stops within a
minute with the reason and what to change, instead of timing out ten minutes later:

    kubectl get pods -o json | python scripts/kind/triage.py pods
    kubectl get application NAME -o json | python scripts/kind/triage.py errors
    kubectl get application NAME -o json | python scripts/kind/triage.py application

`pods` and `errors` print nothing when nothing is wrong; `application` always prints a
summary (sync, health, revision, conditions, last operation, resources out of sync).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any

# Waiting reasons that do not go away by waiting.
_PULL = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName"}
_CRASH = {"CrashLoopBackOff", "RunContainerError"}
_CONFIG = {"CreateContainerConfigError", "CreateContainerError"}

_FIX_RESOURCES = (
    "the node has too little CPU or memory for these requests: give Docker at least 2 CPUs "
    "and 4 GiB (scripts/kind/preflight.sh checks) or lower the kind sizing in "
    "scripts/kind/sizing/kustomization.yaml"
)
_FIX_PULL = (
    "containerd on the node cannot pull it: the registry container must be on the 'kind' "
    "network and the node must mirror the registry host (make kind-up sets up both; "
    "check with 'docker network inspect kind')"
)


def _items(document: dict[str, Any]) -> list[dict[str, Any]]:
    items = document.get("items")
    return list(items) if isinstance(items, list) else [document]


def _container_statuses(status: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for key in ("initContainerStatuses", "containerStatuses"):
        yield from status.get(key) or []


def pod_problems(document: dict[str, Any]) -> list[str]:
    """Problems of the pods in a Pod or PodList, each with what to do about it."""
    problems = []
    for pod in _items(document):
        name = pod.get("metadata", {}).get("name", "?")
        status = pod.get("status", {})
        for condition in status.get("conditions") or []:
            if (
                condition.get("type") == "PodScheduled"
                and condition.get("status") == "False"
                and condition.get("reason") == "Unschedulable"
            ):
                message = condition.get("message", "").strip()
                fix = _FIX_RESOURCES if "Insufficient" in message else "see the message"
                problems.append(f"pod/{name}: cannot be scheduled: {message} -> {fix}")
        for container in _container_statuses(status):
            waiting = (container.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason", "")
            message = (waiting.get("message") or "").strip()
            what = f"pod/{name} container {container.get('name', '?')}: {reason}"
            if reason in _PULL:
                image = container.get("image", "?")
                problems.append(f"{what} for {image}: {message} -> {_FIX_PULL}")
            elif reason in _CRASH:
                # No restart count: the line must stay the same while the problem does.
                problems.append(
                    f"{what} -> read its last output: kubectl logs {name} "
                    f"-c {container.get('name')} --previous"
                )
            elif reason in _CONFIG:
                problems.append(f"{what}: {message}")
    return problems


def application_errors(document: dict[str, Any]) -> list[str]:
    """Error conditions of an Application and a failed last sync."""
    name = document.get("metadata", {}).get("name", "?")
    status = document.get("status", {})
    problems = [
        f"application {name}: {condition.get('type')}: {condition.get('message', '').strip()}"
        for condition in status.get("conditions") or []
        if str(condition.get("type", "")).endswith("Error")
    ]
    operation = status.get("operationState") or {}
    if operation.get("phase") in {"Failed", "Error"}:
        message = str(operation.get("message", "")).strip()
        problems.append(f"application {name}: last sync {operation['phase']}: {message}")
    return problems


def application_summary(document: dict[str, Any]) -> list[str]:
    """A few lines that say where an Application stands and why."""
    name = document.get("metadata", {}).get("name", "?")
    status = document.get("status", {})
    sync = status.get("sync", {})
    health = status.get("health", {})
    lines = [
        f"application {name}: sync {sync.get('status', '?')}, health "
        f"{health.get('status', '?')}, revision {str(sync.get('revision', '?'))[:12]}"
    ]
    if health.get("message"):
        lines.append(f"  health: {health['message']}")
    lines += [
        f"  condition {c.get('type')}: {str(c.get('message', '')).strip()}"
        for c in status.get("conditions") or []
    ]
    operation = status.get("operationState") or {}
    if operation:
        message = str(operation.get("message", "")).strip()
        lines.append(f"  last operation: {operation.get('phase', '?')}: {message}")
    for resource in status.get("resources") or []:
        resource_health = (resource.get("health") or {}).get("status", "")
        if resource.get("status") != "Synced" or resource_health not in {"", "Healthy"}:
            lines.append(
                f"  {resource.get('kind')}/{resource.get('name')} in "
                f"{resource.get('namespace', '-')}: {resource.get('status', '?')} "
                f"{resource_health}".rstrip()
            )
    return lines


_MODES = {"pods": pod_problems, "errors": application_errors, "application": application_summary}


def main(argv: Iterable[str]) -> int:
    args = list(argv)
    if len(args) != 1 or args[0] not in _MODES:
        print(f"usage: triage.py {{{'|'.join(_MODES)}}} < kubectl-json", file=sys.stderr)
        return 2
    try:
        document = json.load(sys.stdin)
    except json.JSONDecodeError as error:
        print(f"triage.py: stdin is not JSON: {error}", file=sys.stderr)
        return 2
    for line in _MODES[args[0]](document):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
