"""`gitops diff`: what a change does to the rendered manifests of every environment.

Each environment is rendered as Argo CD would render it with main at the base and at the
head: the first environment from that commit itself, a pinned one from the commit its
Application pins there. So a change to the base shows up under staging only, and a
promotion shows up under production.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from gitops.environments import PROMOTION_ORDER, follows_main
from gitops.errors import GitOpsError
from gitops.prbody import DIFF_MARKER, MAX_BODY, fenced_diff
from gitops.promotion import rendered_diff
from gitops.repo import Repo
from gitops.revisions import pinned_revision, read_at, render_env, resolve


@dataclass(frozen=True)
class EnvDiff:
    """One environment's rendered change between two commits of main."""

    env: str
    base: str
    head: str
    diff: str

    @property
    def counts(self) -> tuple[int, int]:
        """Lines added and removed."""
        lines = self.diff.splitlines()
        added = sum(1 for line in lines if line.startswith("+") and not line.startswith("+++"))
        removed = sum(1 for line in lines if line.startswith("-") and not line.startswith("---"))
        return added, removed


def _ordered(envs: list[str]) -> list[str]:
    return [e for e in PROMOTION_ORDER if e in envs] + [e for e in envs if e not in PROMOTION_ORDER]


def environment_diffs(repo: Repo, base: str, head: str, command: list[str]) -> list[EnvDiff]:
    """Every environment's rendered diff from main at `base` to main at `head`."""
    base_sha, head_sha = resolve(repo, base), resolve(repo, head)
    result = []
    for env in _ordered(repo.environments()):
        overlay = f"deploy/overlays/{env}/kustomization.yaml"
        head_rev = pinned_revision(repo, env, head_sha)
        new = render_env(repo, env, head_rev, command).text
        old = ""
        base_rev = base_sha
        # An environment added by the change has nothing to compare with.
        if read_at(repo, base_sha, overlay) is not None:
            # No Application file yet: it followed main.
            with contextlib.suppress(GitOpsError):
                base_rev = pinned_revision(repo, env, base_sha)
            old = render_env(repo, env, base_rev, command).text
        diff = rendered_diff(
            old, new, old_label=f"{env}@{base_rev[:12]}", new_label=f"{env}@{head_rev[:12]}"
        )
        result.append(EnvDiff(env, base_rev, head_rev, diff))
    return result


def as_text(diffs: list[EnvDiff]) -> str:
    """Plain unified diffs, one per environment that changes."""
    out = []
    for item in diffs:
        if item.diff:
            out.append(item.diff)
        else:
            out.append(f"# {item.env}: no change to the rendered manifests\n")
    return "".join(out)


def as_markdown(diffs: list[EnvDiff], *, base: str, head: str) -> str:
    """One pull request comment: a summary line and a folded diff per environment."""
    lines = [
        DIFF_MARKER,
        f"### Rendered manifests, `{base[:12]}` → `{head[:12]}`",
        "",
        "Rendered with kustomize as Argo CD renders each environment.",
        "",
    ]
    for item in diffs:
        if not item.diff:
            why = "" if follows_main(item.env) else f" (runs `{item.head[:12]}`, its pin)"
            lines.append(f"- **{item.env}**: no change{why}")
        else:
            added, removed = item.counts
            lines.append(f"- **{item.env}**: +{added} -{removed} lines")
    lines.append("")
    changed = [item for item in diffs if item.diff]
    budget = (MAX_BODY - sum(len(line) + 1 for line in lines)) // max(1, len(changed)) - 200
    for item in changed:
        lines += [
            f"<details><summary>{item.env}</summary>",
            "",
            fenced_diff(item.diff, budget),
            "</details>",
            "",
        ]
    return "\n".join(lines)
