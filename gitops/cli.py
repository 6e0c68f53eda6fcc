"""Command line: `python -m gitops <command>`; run `python -m gitops --help` for the list."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gitops.errors import GitOpsError
from gitops.history import Change
from gitops.imageref import ImageRef
from gitops.kustomization import DEFAULT_IMAGE_NAME, ImageEntry
from gitops.operations import (
    DEFAULT_LOCK_TIMEOUT_S,
    EnvStatus,
    Options,
    SetImageResult,
    history,
    promote,
    set_image,
    status,
)
from gitops.render import KUSTOMIZE_ENV
from gitops.repo import Repo
from gitops.repourl import set_repo

_DESCRIPTION = """\
Edit and inspect which image each environment deploys. The overlays in
deploy/overlays/<env>/kustomization.yaml are the desired state Argo CD syncs; this tool is
the only thing that should write their images: entries.

exit status: 0 on success, 2 on any error (one line on stderr naming what and why).
"""

_REF_HELP = (
    "immutable image reference: "
    "<region>-docker.pkg.dev/<project>/<repo>/<image>:sha-<hex>@sha256:<64 hex>"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gitops",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-C",
        "--repo",
        type=Path,
        default=Path(),
        metavar="DIR",
        help="a directory inside the git clone to work on (default: the current directory)",
    )
    parser.add_argument(
        "--image-name",
        default=DEFAULT_IMAGE_NAME,
        metavar="NAME",
        help="the images: entry to edit, as named in the base Deployment "
        f"(default: {DEFAULT_IMAGE_NAME})",
    )
    parser.add_argument(
        "--kustomize",
        metavar="CMD",
        help=f"render command, e.g. 'kustomize build' (default: ${KUSTOMIZE_ENV}, "
        "else kustomize build, else kubectl kustomize)",
    )
    parser.add_argument(
        "--lock-timeout",
        type=float,
        default=DEFAULT_LOCK_TIMEOUT_S,
        metavar="SECONDS",
        help="how long to wait for another run on the same clone (default: %(default)g)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    cmd = commands.add_parser("set-image", help="point an environment at an image")
    cmd.add_argument("env", help="environment (an overlay directory name)")
    cmd.add_argument("ref", help=_REF_HELP)

    cmd = commands.add_parser("promote", help="copy one environment's exact image to another")
    cmd.add_argument("source", metavar="FROM")
    cmd.add_argument("target", metavar="TO")

    cmd = commands.add_parser("status", help="what each environment runs, and since when")
    cmd.add_argument("--json", action="store_true", help="machine-readable output")

    cmd = commands.add_parser("history", help="the image changes of one environment")
    cmd.add_argument("env")
    cmd.add_argument("--json", action="store_true", help="machine-readable output")
    cmd.add_argument("--limit", type=int, default=20, help="show at most N changes (default: 20)")

    cmd = commands.add_parser(
        "set-repo", help="change the Git repository URL in every argocd/ manifest (for forks)"
    )
    cmd.add_argument("url", help="e.g. https://github.com/<you>/iris-gitops.git")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit status."""
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except GitOpsError as exc:
        print(f"gitops: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        # A disk or permission problem while writing: the file was not replaced.
        where = f": {exc.filename}" if exc.filename else ""
        print(f"gitops: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return GitOpsError.exit_code
    except KeyboardInterrupt:
        print("gitops: interrupted", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.lock_timeout < 0:
        raise GitOpsError("--lock-timeout must not be negative")
    options = Options(
        image_name=args.image_name, kustomize=args.kustomize, lock_timeout_s=args.lock_timeout
    )
    repo = Repo.open(args.repo)
    if args.command == "set-image":
        repo.overlay_dir(args.env)  # an unknown environment is the first thing to report
        ref = ImageRef.parse(args.ref)
        _report_set(set_image(repo, args.env, ref, options), verb="set")
    elif args.command == "promote":
        result = promote(repo, args.source, args.target, options)
        _report_set(result, verb=f"promoted from {args.source}")
    elif args.command == "status":
        _print_status(status(repo, options), as_json=args.json)
    elif args.command == "history":
        if args.limit < 1:
            raise GitOpsError("--limit must be at least 1")
        _print_history(args.env, history(repo, args.env, options), args.limit, as_json=args.json)
    elif args.command == "set-repo":
        with repo.lock(options.lock_timeout_s):
            changed = set_repo(repo, args.url)
        if changed:
            print(f"repo URL set to {args.url} in: {', '.join(changed)}")
        else:
            print(f"argocd/ already deploys from {args.url}; nothing to do")
    return 0


def _report_set(result: SetImageResult, *, verb: str) -> None:
    workloads = ", ".join(sorted({f"{c.kind}/{c.workload}" for c in result.containers}))
    if result.changed:
        print(f"{result.env}: {verb} {result.ref} in {result.path} (rendered {workloads} runs it)")
    else:
        print(f"{result.env}: already at {result.ref}; nothing to do")
    if not result.layout_preserved:
        print(
            f"gitops: warning: {result.path} could not be round-tripped byte for byte; "
            "check the diff for layout changes beyond the image lines",
            file=sys.stderr,
        )


def _entry_json(entry: ImageEntry | None) -> dict[str, Any] | None:
    if entry is None:
        return None
    return {
        "image": entry.new_name,
        "tag": entry.new_tag,
        "digest": entry.digest,
        "reference": entry.display(),
    }


def _change_json(change: Change) -> dict[str, Any]:
    commit = change.commit
    return {
        "commit": commit.sha,
        "parents": list(commit.parents),
        "date": commit.date,
        "author": commit.author,
        "subject": commit.subject,
        "before": _entry_json(change.before),
        "after": _entry_json(change.after),
    }


def _short_digest(digest: str | None) -> str:
    if not digest:
        return "-"
    algo, _, hexpart = digest.partition(":")
    return f"{algo}:{hexpart[:12]}..." if hexpart else digest


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)


def _print_status(envs: list[EnvStatus], *, as_json: bool) -> None:
    if as_json:
        payload = {
            "environments": [
                {
                    "env": env.env,
                    "path": env.path,
                    **(_entry_json(env.entry) or {}),
                    "placeholder": env.placeholder,
                    "problem": env.problem,
                    "uncommitted": env.uncommitted,
                    "last_change": _change_json(env.last_change) if env.last_change else None,
                }
                for env in envs
            ]
        }
        print(json.dumps(payload, indent=2))
        return
    rows = [["ENV", "TAG", "DIGEST", "COMMIT", "DATE", "NOTE"]]
    for env in envs:
        change = env.last_change
        notes = []
        if env.placeholder:
            notes.append("placeholder, not releasable")
        if env.uncommitted:
            notes.append("uncommitted change")
        if change is not None and not notes:
            notes.append(change.commit.subject)
        rows.append(
            [
                env.env,
                env.entry.new_tag or "-",
                _short_digest(env.entry.digest),
                change.commit.sha[:12] if change else "-",
                change.commit.date if change else "-",
                "; ".join(notes),
            ]
        )
    print(_table(rows))


def _print_history(env: str, found: list[Change], limit: int, *, as_json: bool) -> None:
    newest = found[0] if found else None
    revert = newest.commit.revert_command if newest is not None and newest.is_bump else None
    if as_json:
        payload = {
            "env": env,
            "changes": [_change_json(change) for change in found[:limit]],
            "total": len(found),
            "revert": revert,
        }
        print(json.dumps(payload, indent=2))
        return
    if not found:
        print(f"{env}: no commit has set an image yet")
        return
    shown = found[:limit]
    print(
        f"{env}: {len(found)} image change(s), newest first"
        + (f", showing {limit}" if len(found) > limit else "")
    )
    rows = [["COMMIT", "DATE", "TAG", "DIGEST", "SUBJECT"]]
    for change in shown:
        after = change.after
        rows.append(
            [
                change.commit.sha[:12],
                change.commit.date,
                (after.new_tag if after else None) or "-",
                _short_digest(after.digest if after else None),
                change.commit.subject,
            ]
        )
    print(_table(rows))
    if revert:
        print(f"\nroll back the newest change (then push; Argo CD syncs it):\n  {revert}")
    else:
        print("\nnothing to roll back: the image has not changed since the overlay was added")
