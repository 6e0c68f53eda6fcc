"""Command line: `python -m gitops <command>`; run `python -m gitops --help` for the list."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gitops.errors import GitOpsError
from gitops.history import Change, CodeCommits, code_commits
from gitops.hold import lift_hold, place_hold, read_hold
from gitops.imageref import ImageRef
from gitops.kustomization import DEFAULT_IMAGE_NAME, ImageEntry, Kustomization
from gitops.operations import (
    DEFAULT_LOCK_TIMEOUT_S,
    EnvStatus,
    Options,
    SetImageResult,
    bump_edit,
    history,
    promote,
    promote_edit,
    set_image,
    status,
)
from gitops.render import KUSTOMIZE_ENV
from gitops.repo import Repo
from gitops.repourl import set_repo
from gitops.writeback import ACTIONS_BOT, Edit, Identity, WriteBack, Written, write_back

# The only way to hand the tool a token: never a flag, which process listings show. main()
# takes it out of the environment at once, so no child but the fetch, the push and gh sees it.
TOKEN_ENV = "GITOPS_TOKEN"  # noqa: S105 (the name of a variable, not a token)

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

    cmd = commands.add_parser(
        "bump",
        help="set an environment's image on the newest remote branch, commit and push it",
        description="What the release runs: fetch the branch, refuse a held environment or an "
        "image older than the one running, set the image, commit only the overlay, and push "
        "(re-applying the edit on the new tip when the branch moved on) or open a pull request. "
        "exit status: 0 done or nothing to do, 1 push still rejected after the last attempt, "
        "2 error (nothing committed or pushed), 3 the environment is on hold.",
    )
    cmd.add_argument("env", help="environment (an overlay directory name)")
    cmd.add_argument("ref", help=_REF_HELP)
    cmd.add_argument(
        "--force",
        action="store_true",
        help="allow an image built from an older commit than the one running (not a hold)",
    )
    add_write_back_arguments(cmd)

    cmd = commands.add_parser(
        "hold", help="stop releases from changing an environment (after a rollback)"
    )
    cmd.add_argument("env")
    cmd.add_argument("--reason", required=True, help="why, in one line (shown to every release)")

    cmd = commands.add_parser("release", help="lift the hold on an environment")
    cmd.add_argument("env")

    cmd = commands.add_parser(
        "promote",
        help="copy one environment's exact image to another",
        description="Without --push or --pull-request, edit the working tree only. With one "
        "of them, do it on the newest remote branch and deliver it like bump does.",
    )
    cmd.add_argument("source", metavar="FROM")
    cmd.add_argument("target", metavar="TO")
    cmd.add_argument(
        "--push",
        action="store_true",
        help="commit on the newest remote branch and push it (the default delivery is none)",
    )
    add_write_back_arguments(cmd)

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


def add_write_back_arguments(cmd: argparse.ArgumentParser) -> None:
    """The options of every command that writes back to the remote (see gitops.writeback)."""
    env = os.environ
    group = cmd.add_argument_group(
        "write-back", f"where the commit goes; a GitHub token is read from ${TOKEN_ENV} only"
    )
    group.add_argument(
        "--remote",
        default=env.get("GITOPS_REMOTE", "origin"),
        help="remote to fetch from and push to (default: $GITOPS_REMOTE, else origin)",
    )
    group.add_argument(
        "--branch",
        default=env.get("GITOPS_BRANCH", "main"),
        help="the branch Argo CD deploys (default: $GITOPS_BRANCH, else main)",
    )
    group.add_argument(
        "--attempts",
        default=env.get("GITOPS_PUSH_ATTEMPTS", "5"),
        metavar="N",
        help="fetch/re-apply/push attempts (default: $GITOPS_PUSH_ATTEMPTS, else 5)",
    )
    group.add_argument(
        "--retry-delay",
        default=env.get("GITOPS_RETRY_DELAY", "2"),
        metavar="SECONDS",
        help="base wait between attempts, growing with each (default: $GITOPS_RETRY_DELAY, else 2)",
    )
    group.add_argument(
        "--author",
        default=env.get("GITOPS_AUTHOR", f"{ACTIONS_BOT.name} <{ACTIONS_BOT.email}>"),
        metavar="'NAME <EMAIL>'",
        help="commit identity (default: $GITOPS_AUTHOR, else github-actions[bot])",
    )
    group.add_argument(
        "--pull-request",
        action="store_true",
        help="push to a branch of its own and open (or update) a pull request with gh",
    )
    group.add_argument(
        "--auto-merge",
        action="store_true",
        help="with --pull-request: let GitHub merge it once the required checks pass",
    )


_IDENTITY = re.compile(r"^\s*([^<>]+?)\s*<([^<>\s]+@[^<>\s]+)>\s*$")


def write_back_settings(args: argparse.Namespace, token: str | None) -> WriteBack:
    """WriteBack from the options `add_write_back_arguments` added; GitOpsError if malformed."""
    try:
        attempts = int(args.attempts)
    except ValueError:
        raise GitOpsError(f"--attempts must be a positive integer, not {args.attempts!r}") from None
    try:
        delay = float(args.retry_delay)
    except ValueError:
        raise GitOpsError(
            f"--retry-delay must be a number of seconds, not {args.retry_delay!r}"
        ) from None
    match = _IDENTITY.match(args.author)
    if not match:
        raise GitOpsError(f"--author must look like 'Name <email>', not {args.author!r}")
    return WriteBack(
        remote=args.remote,
        branch=args.branch,
        mode="pull-request" if args.pull_request else "push",
        attempts=attempts,
        retry_delay_s=delay,
        identity=Identity(match.group(1), match.group(2)),
        token=token,
        auto_merge=args.auto_merge,
    )


def report_written(written: Written) -> None:
    """Hand the result to a GitHub Actions step ($GITHUB_OUTPUT), when there is one."""
    outputs = os.environ.get("GITHUB_OUTPUT")
    if not outputs:
        return
    lines = [f"changed={str(written.changed).lower()}", f"commit={written.commit}"]
    if written.pull_request:
        lines.append(f"pull_request={written.pull_request}")
    with open(outputs, "a", encoding="utf-8") as handle:  # noqa: PTH123
        handle.write("\n".join(lines) + "\n")


def _log(line: str) -> None:
    print(f"gitops: {line}", file=sys.stderr)


def _deliver(repo: Repo, edit: Edit, args: argparse.Namespace, env: str) -> None:
    """Run `edit` through the write-back the options describe and report the result."""
    settings = write_back_settings(args, args.token)
    written = write_back(repo, edit, settings, log=_log)
    report_written(written)
    if not written.changed:
        print(f"{env}: already runs that image; nothing to push")
    elif written.pull_request:
        print(f"{env}: {written.subject}: {written.pull_request}")
    else:
        print(
            f"{env}: pushed {written.commit} to {settings.remote}/{settings.branch} "
            f"(attempt {written.attempts}): {written.subject}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit status."""
    token = os.environ.pop(TOKEN_ENV, None) or None
    args = _parser().parse_args(argv)
    args.token = token
    try:
        return _dispatch(args)
    except GitOpsError as exc:
        writes_back = (
            args.command == "bump"
            or getattr(args, "push", False)
            or (getattr(args, "pull_request", False))
        )
        suffix = "; nothing was committed or pushed" if writes_back else ""
        print(f"gitops: error: {exc}{suffix}", file=sys.stderr)
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
    elif args.command == "bump":
        repo.overlay_dir(args.env)
        ref = ImageRef.parse(args.ref)
        edit = bump_edit(args.env, ref, options, force=args.force, log=_log)
        _deliver(repo, edit, args, args.env)
    elif args.command == "hold":
        with repo.lock(options.lock_timeout_s):
            path = repo.kustomization_path(args.env)
            entry = Kustomization.load(path, label=repo.relative(path)).entry(options.image_name)
            hold_file, placed = place_hold(repo, args.env, args.reason, entry.display())
        if placed:
            print(f"{args.env}: on hold in {hold_file}; commit it (with the revert) and push")
        else:
            print(f"{args.env}: already on hold for that reason; nothing to do")
    elif args.command == "release":
        with repo.lock(options.lock_timeout_s):
            hold = read_hold(repo, args.env)
            removed = lift_hold(repo, args.env)
        if removed and hold is not None:
            print(f"{args.env}: hold lifted ({hold.reason}); commit the removal of {removed}")
        else:
            print(f"{args.env}: not on hold; nothing to do")
    elif args.command == "promote" and (args.push or args.pull_request):
        if args.push and args.pull_request:
            raise GitOpsError("--push and --pull-request exclude each other")
        repo.overlay_dir(args.source)
        repo.overlay_dir(args.target)
        if args.source == args.target:
            raise GitOpsError(f"cannot promote {args.source!r} to itself")
        _deliver(repo, promote_edit(args.source, args.target, options), args, args.target)
    elif args.command == "promote":
        result = promote(repo, args.source, args.target, options)
        _report_set(result, verb=f"promoted from {args.source}")
    elif args.command == "status":
        _print_status(status(repo, options), as_json=args.json)
    elif args.command == "history":
        if args.limit < 1:
            raise GitOpsError("--limit must be at least 1")
        found = history(repo, args.env, options)
        code = code_commits(repo, found[0]) if found else None
        _print_history(args.env, found, args.limit, code, as_json=args.json)
    elif args.command == "set-repo":
        with repo.lock(options.lock_timeout_s):
            changed = set_repo(repo, args.url)
        if changed:
            print(f"repo URL set to {args.url} in: {', '.join(changed)}")
            _commit_and_push(changed, f"argocd: deploy from {args.url}")
        else:
            print(f"argocd/ already deploys from {args.url}; nothing to do")
    return 0


def _commit_and_push(paths: Sequence[str], subject: str) -> None:
    # The edit is only a file in this clone: Argo CD deploys what is pushed.
    quoted = " ".join(shlex.quote(path) for path in paths)
    print(f"now commit and push: git commit -m {shlex.quote(subject)} {quoted} && git push")


def _report_set(result: SetImageResult, *, verb: str) -> None:
    workloads = ", ".join(sorted({f"{c.kind}/{c.workload}" for c in result.containers}))
    if result.changed:
        print(f"{result.env}: {verb} {result.ref} in {result.path} (rendered {workloads} runs it)")
        _commit_and_push([result.path], f"{result.env}: {verb} {result.ref.tag}")
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


def _print_history(
    env: str,
    found: list[Change],
    limit: int,
    code: CodeCommits | None,
    *,
    as_json: bool,
) -> None:
    newest = found[0] if found else None
    revert = newest.commit.revert_command if newest is not None and newest.is_bump else None
    if as_json:
        payload = {
            "env": env,
            "changes": [_change_json(change) for change in found[:limit]],
            "total": len(found),
            "revert": revert,
            "code_commits": None
            if code is None
            else {
                "direction": code.direction,
                "range": code.range,
                "commits": [{"commit": sha, "subject": subject} for sha, subject in code.commits],
            },
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
    if code is not None:
        print(f"\ncode commits the newest change {code.direction} ({code.range}):")
        for sha, subject in code.commits or (("-", "(none outside deploy/overlays/)"),):
            print(f"  {sha[:12]}  {subject}")
        if code.direction == "rolled back":
            print(
                "the next release brings them back: hold the environment until the fix is on "
                f"main\n  python -m gitops hold {env} --reason '<why>'"
            )
    if revert:
        print(f"\nroll back the newest change (then push; Argo CD syncs it):\n  {revert}")
    elif newest is not None and newest.before is not None:
        print(
            "\nnothing to roll back: before the newest change the overlay held the placeholder, "
            "which no cluster can pull"
        )
    else:
        print("\nnothing to roll back: the image has not changed since the overlay was added")
