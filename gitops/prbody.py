"""Markdown for reviewers: the promotion pull request's body and the rendered-diff comment."""

from __future__ import annotations

from gitops.promotion import Promotion, format_age
from gitops.release import ReleaseRecord

# GitHub refuses a pull request body or comment over 65,536 characters.
MAX_BODY = 60_000
DIFF_MARKER = "<!-- gitops-rendered-diff -->"


def fenced_diff(diff: str, budget: int) -> str:
    """`diff` in a ```diff block, cut to `budget` characters with a note when longer."""
    if len(diff) > budget:
        cut = diff[:budget].rsplit("\n", 1)[0]
        note = f"\n... {len(diff) - len(cut)} more characters; run `python -m gitops diff`\n"
        diff = cut + note
    fence = "````" if "```" in diff else "```"
    return f"{fence}diff\n{diff}{'' if diff.endswith(chr(10)) else chr(10)}{fence}\n"


def _metric(record: ReleaseRecord | None, key: str) -> str:
    if record is None or record.model is None or key not in record.model.metrics:
        return "-"
    return f"{record.model.metrics[key]:.4f}"


def _delta(old: ReleaseRecord | None, new: ReleaseRecord | None, key: str) -> str:
    if old is None or new is None or old.model is None or new.model is None:
        return ""
    if key not in old.model.metrics or key not in new.model.metrics:
        return ""
    change = new.model.metrics[key] - old.model.metrics[key]
    return "±0" if abs(change) < 5e-7 else f"{change:+.4f}"


def model_table(old: ReleaseRecord | None, new: ReleaseRecord | None) -> str:
    """Production's model against the candidate's, one row per number a reviewer weighs."""

    def field(record: ReleaseRecord | None, what: str) -> str:
        if record is None or record.model is None:
            return "-"
        model = record.model
        return {
            "version": f"`{model.version}`",
            "estimator": model.estimator,
            "data": f"{model.data_version} (`{model.data_sha256[:12]}`)",
            "classes": ", ".join(model.class_names),
        }[what]

    rows = [
        "| | production now | candidate | change |",
        "| --- | --- | --- | --- |",
    ]
    for label, key in (
        ("holdout accuracy", "holdoutAccuracy"),
        ("holdout macro-F1", "holdoutMacroF1"),
        ("CV accuracy (mean)", "cvAccuracyMean"),
        ("CV accuracy (std)", "cvAccuracyStd"),
    ):
        rows.append(
            f"| {label} | {_metric(old, key)} | {_metric(new, key)} | {_delta(old, new, key)} |"
        )
    for label, what in (
        ("model version", "version"),
        ("estimator", "estimator"),
        ("data version", "data"),
        ("classes", "classes"),
    ):
        before, after = field(old, what), field(new, what)
        rows.append(f"| {label} | {before} | {after} | {'' if before == after else 'changed'} |")
    return "\n".join(rows) + "\n"


def promotion_body(promotion: Promotion, *, compare_url: str | None = None) -> str:
    """The pull request body: what changes, the staging evidence, the model, the diff."""
    p = promotion
    ev = p.evidence
    previous_image = p.previous_image.display() if p.previous_image else "none"
    lines = [
        f"Promotes `{p.source}` to `{p.target}`: pins {p.path} to `{p.candidate}`, so "
        f"{p.target} renders everything (base, overlay, image) from that commit.",
        "",
        f"- **Image:** `{p.ref}`",
        f"- **Was:** `{previous_image}`",
        f"- **Commits:** `{p.previous[:12]}..{p.candidate[:12]}`, {len(p.commits)} on main"
        + (f" ([compare]({compare_url}))" if compare_url else "")
        if p.previous is not None
        else f"- **Commits:** up to `{p.candidate[:12]}` (the previous pin is not in this clone)",
        "",
    ]
    if p.forced:
        lines += [
            "> [!WARNING]",
            f"> **Promoted with `--force`.** The gate refused: {ev.refusal}",
            "",
        ]
    lines += [f"### {p.source} evidence", ""]
    if ev.status is not None and ev.commit is not None:
        when = ev.status.created_at.strftime("%Y-%m-%d %H:%M:%S UTC")
        link = f" ([details]({ev.status.target_url}))" if ev.status.target_url else ""
        lines.append(
            f"`{ev.context}` = **{ev.status.state}** on `{ev.commit[:12]}` since {when} "
            f"({format_age(ev.age or ev.soak)} before this check; soak time "
            f"{format_age(ev.soak)}){link}"
        )
        if ev.commit != p.candidate:
            lines.append(
                f"`{p.candidate[:12]}` renders {p.source} exactly as `{ev.commit[:12]}` does."
            )
    else:
        lines.append(f"No `{ev.context}` status was found.")
    lines += ["", "### Model: production → candidate", "", model_table(p.previous_record, p.record)]
    if p.commits:
        lines += ["<details><summary>Commits</summary>", ""]
        lines += [f"- `{sha[:12]}` {subject}" for sha, subject in p.commits[:50]]
        if len(p.commits) > 50:
            lines.append(f"- ... and {len(p.commits) - 50} more")
        lines += ["", "</details>", ""]
    lines += [f"### Rendered diff of {p.target}", ""]
    head = "\n".join(lines) + "\n"
    if p.diff:
        tail = (
            "Merging this pull request is the promotion; reverting it restores all of the above.\n"
        )
        budget = MAX_BODY - len(head) - len(tail) - 200
        return head + fenced_diff(p.diff, budget) + "\n" + tail
    return head + "No change to the rendered manifests.\n"
