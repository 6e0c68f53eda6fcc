"""Command line: `python -m gitops <command>`; run `python -m gitops --help` for the list."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from gitops import invocation
from gitops.diff import as_markdown, as_text, environment_diffs
from gitops.environments import PROMOTION_ORDER, check_direction
from gitops.errors import GitOpsError
from gitops.files import atomic_write
from gitops.history import Change, CodeCommits, code_commits
from gitops.hold import lift_hold, place_hold, read_hold
from gitops.imageref import ImageRef
from gitops.kustomization import DEFAULT_IMAGE_NAME, ImageEntry
from gitops.operations import (
    DEFAULT_LOCK_TIMEOUT_S,
    EnvStatus,
    Options,
    SetImageResult,
    bump_edit,
    history,
    promote,
    promote_edit,
    running_entry,
    set_image,
    status,
)
from gitops.prbody import promotion_body
from gitops.promotion import DEFAULT_SOAK, Gate, Promotion
from gitops.release import (
    RELEASE_KUSTOMIZATION,
    RELEASE_RECORD,
    ReleaseRecord,
    model_from_metadata,
)
from gitops.render import KUSTOMIZE_ENV, kustomize_command
from gitops.repo import Repo
from gitops.repourl import set_repo
from gitops.revisions import resolve
from gitops.statuses import (
    KUBECTL_ENV,
    ArgoCDApplication,
    GitHubStatuses,
    RecordedStatuses,
    StatusSource,
    application_name,
)
from gitops.writeback import (
    ACTIONS_BOT,
    Edit,
    Identity,
    PullRequestError,
    WriteBack,
    Written,
    write_back,
)

# The only way to hand the tool a token: never a flag, which process listings show. main()
# takes it out of the environment at once, so no child but the fetch, the push and gh sees it.
TOKEN_ENV = "GITOPS_TOKEN"  # noqa: S105 (the name of a variable, not a token)

_DESCRIPTION = """\
Edit and inspect what each environment deploys. deploy/release holds the image (and its
release record) that staging runs from main; production runs the commit its Argo CD
Application pins (argocd/apps/production.yaml), moved only by `promote` once staging ran it
healthy. This tool is the only thing that should write either.

exit status: 0 on success, 2 on any error (one line on stderr naming what and why).
"""

_REF_HELP = (
    "immutable image reference: "
    "<region>-docker.pkg.dev/<project>/<repo>/<image>:sha-<hex>@sha256:<64 hex>"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=invocation(),
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

    cmd = commands.add_parser(
        "set-image", help="release an image: the first environment runs it from main"
    )
    cmd.add_argument("env", help=f"environment (only {PROMOTION_ORDER[0]} takes images directly)")
    cmd.add_argument("ref", help=_REF_HELP)
    add_release_record_arguments(cmd, from_github_sha=False)

    cmd = commands.add_parser(
        "bump",
        help="set an environment's image on the newest remote branch, commit and push it",
        description="What the release runs: fetch the branch, refuse a held environment or an "
        "image older than the one running, write the image and its release record, commit "
        "only them, and push "
        "(re-applying the edit on the new tip when the branch moved on) or open a pull request. "
        "exit status: 0 done or nothing to do, 1 push still rejected after the last attempt, "
        "2 error (nothing committed or pushed), 3 the environment is on hold.",
    )
    cmd.add_argument("env", help="environment (an overlay directory name)")
    cmd.add_argument("ref", help=_REF_HELP)
    add_release_record_arguments(cmd, from_github_sha=True)
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

    order = " -> ".join(PROMOTION_ORDER)
    cmd = commands.add_parser(
        "promote",
        help=f"pin the next environment to a commit the previous one ran healthy ({order})",
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
    cmd.add_argument(
        "--revision",
        default="HEAD",
        metavar="REV",
        help="the commit of main to promote (default: HEAD)",
    )
    cmd.add_argument(
        "--soak",
        type=_duration,
        default=DEFAULT_SOAK,
        metavar="DURATION",
        help="how long FROM must have run it healthy, e.g. 600s, 10m, 1h (default: 10m)",
    )
    cmd.add_argument(
        "--force",
        action="store_true",
        help="promote even without the evidence (loud; recorded in the pull request body)",
    )
    cmd.add_argument(
        "--evidence",
        choices=("github", "argocd"),
        default="github",
        help="github (default): the commit status Argo CD Notifications set, read from GitHub "
        "or --statuses-file; argocd: FROM's Application read from the cluster with kubectl "
        f"(${KUBECTL_ENV}, e.g. 'kubectl --context kind-iris'), for clusters that cannot reach "
        "GitHub",
    )
    source = cmd.add_mutually_exclusive_group()
    source.add_argument(
        "--github-repo",
        default=os.environ.get("GITHUB_REPOSITORY") or None,
        metavar="OWNER/NAME",
        help="read commit statuses from GitHub (token: $GITOPS_TOKEN, else $GITHUB_TOKEN; "
        "default: $GITHUB_REPOSITORY)",
    )
    source.add_argument(
        "--statuses-file",
        type=Path,
        metavar="FILE",
        help='read commit statuses from a JSON file {"<commit>": [<GitHub status objects>]}',
    )
    cmd.add_argument(
        "--pr-body", type=Path, metavar="FILE", help="write the pull request body (Markdown)"
    )
    cmd.add_argument("--json", action="store_true", help="machine-readable output")

    cmd = commands.add_parser(
        "diff", help="each environment's rendered manifests, main at --base against --head"
    )
    cmd.add_argument("--base", required=True, metavar="REV", help="e.g. the pull request's base")
    cmd.add_argument("--head", default="HEAD", metavar="REV", help="default: HEAD")
    cmd.add_argument(
        "--markdown", action="store_true", help="one pull request comment instead of a diff"
    )

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


def add_release_record_arguments(cmd: argparse.ArgumentParser, *, from_github_sha: bool) -> None:
    """--metadata and --source-commit: what set-image and bump write into the release record."""
    cmd.add_argument(
        "--metadata",
        type=Path,
        metavar="FILE",
        help="the image's model metadata.json (or its artifact directory), for the release record",
    )
    default_help = " (default: $GITHUB_SHA)" if from_github_sha else ""
    cmd.add_argument(
        "--source-commit",
        default=(os.environ.get("GITHUB_SHA") or None) if from_github_sha else None,
        metavar="SHA",
        help=f"the commit the image was built from{default_help}, for the release record",
    )


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
        help="push to a branch of its own and open (or update) a pull request through GitHub's "
        "API (the repository: $GITHUB_REPOSITORY, else the remote's github.com URL)",
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
        github_repo=getattr(args, "github_repo", None) or os.environ.get("GITHUB_REPOSITORY"),
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
        pushed = isinstance(exc, PullRequestError)  # it says itself what was pushed
        suffix = "; nothing was committed or pushed" if writes_back and not pushed else ""
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
    _COMMANDS[args.command](repo, args, options)
    return 0


Command = Callable[[Repo, argparse.Namespace, Options], None]


def _set_image(repo: Repo, args: argparse.Namespace, options: Options) -> None:
    repo.overlay_dir(args.env)  # an unknown environment is the first thing to report
    ref = ImageRef.parse(args.ref)
    model = model_from_metadata(args.metadata) if args.metadata else None
    result = set_image(repo, args.env, ref, options, model=model, source_commit=args.source_commit)
    _report_set(result, verb="set")


def _bump(repo: Repo, args: argparse.Namespace, options: Options) -> None:
    repo.overlay_dir(args.env)
    ref = ImageRef.parse(args.ref)
    model = model_from_metadata(args.metadata) if args.metadata else None
    edit = bump_edit(
        args.env,
        ref,
        options,
        force=args.force,
        log=_log,
        model=model,
        source_commit=args.source_commit,
    )
    _deliver(repo, edit, args, args.env)


def _hold(repo: Repo, args: argparse.Namespace, options: Options) -> None:
    with repo.lock(options.lock_timeout_s):
        entry = running_entry(repo, args.env, options)
        hold_file, placed = place_hold(repo, args.env, args.reason, entry.display())
    if placed:
        print(f"{args.env}: on hold in {hold_file}; commit it (with the revert) and push")
    else:
        print(f"{args.env}: already on hold for that reason; nothing to do")


def _release(repo: Repo, args: argparse.Namespace, options: Options) -> None:
    with repo.lock(options.lock_timeout_s):
        hold = read_hold(repo, args.env)
        removed = lift_hold(repo, args.env)
    if removed and hold is not None:
        print(f"{args.env}: hold lifted ({hold.reason}); commit the removal of {removed}")
    else:
        print(f"{args.env}: not on hold; nothing to do")


def _promote(repo: Repo, args: argparse.Namespace, options: Options) -> None:
    if not (args.push or args.pull_request):
        pinned = promote(
            repo, args.source, args.target, options, gate=_gate(args), revision=args.revision
        )
        _report_promotion(pinned, args, quiet=False)
        return
    if args.push and args.pull_request:
        raise GitOpsError("--push and --pull-request exclude each other")
    check_direction(args.source, args.target, repo.environments())
    promoted: list[Promotion] = []
    edit = promote_edit(
        args.source,
        args.target,
        options,
        gate=_gate(args),
        revision=args.revision,
        done=promoted.append,
    )
    _deliver(repo, edit, args, args.target)
    if promoted:
        _report_promotion(promoted[-1], args, quiet=True)


def _diff(repo: Repo, args: argparse.Namespace, options: Options) -> None:
    diffs = environment_diffs(repo, args.base, args.head, kustomize_command(options.kustomize))
    if args.markdown:
        base, head = resolve(repo, args.base), resolve(repo, args.head)
        print(as_markdown(diffs, base=base, head=head))
    else:
        print(as_text(diffs), end="")


def _status(repo: Repo, args: argparse.Namespace, options: Options) -> None:
    _print_status(status(repo, options), as_json=args.json)


def _history(repo: Repo, args: argparse.Namespace, options: Options) -> None:
    if args.limit < 1:
        raise GitOpsError("--limit must be at least 1")
    found = history(repo, args.env, options)
    code = code_commits(repo, found[0]) if found else None
    _print_history(args.env, found, args.limit, code, as_json=args.json)


def _set_repo(repo: Repo, args: argparse.Namespace, options: Options) -> None:
    with repo.lock(options.lock_timeout_s):
        changed = set_repo(repo, args.url)
    if changed:
        print(f"repo URL set to {args.url} in: {', '.join(changed)}")
        _commit_and_push(changed, f"argocd: deploy from {args.url}")
    else:
        print(f"argocd/ already deploys from {args.url}; nothing to do")


# One function per subcommand: the parser's command names, each with what it does.
_COMMANDS: dict[str, Command] = {
    "set-image": _set_image,
    "bump": _bump,
    "hold": _hold,
    "release": _release,
    "promote": _promote,
    "diff": _diff,
    "status": _status,
    "history": _history,
    "set-repo": _set_repo,
}


def _commit_and_push(paths: Sequence[str], subject: str) -> None:
    # The edit is only a file in this clone: Argo CD deploys what is pushed.
    quoted = " ".join(shlex.quote(path) for path in paths)
    print(f"now commit and push: git commit -m {shlex.quote(subject)} {quoted} && git push")


def _duration(text: str) -> timedelta:
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        value = float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration like 600s, 10m or 1h"
        ) from None
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return timedelta(seconds=value * units[unit])


def _statuses(args: argparse.Namespace) -> StatusSource | None:
    if args.evidence == "argocd":
        if args.statuses_file is not None:
            raise GitOpsError("--statuses-file is GitHub's evidence; drop it or --evidence argocd")
        return ArgoCDApplication(application_name(args.source))
    if args.statuses_file is not None:
        return RecordedStatuses(args.statuses_file)
    if args.github_repo:
        # The write-back's token when there is one (the workflow's App token reads statuses).
        return GitHubStatuses.from_environment(args.github_repo, args.token)
    return None


def _gate(args: argparse.Namespace) -> Gate:
    return Gate(statuses=_statuses(args), soak=args.soak, force=args.force)


def _report_promotion(result: Promotion, args: argparse.Namespace, *, quiet: bool) -> None:
    """Warn about a forced promotion, write the body and the JSON; `quiet` when the
    write-back already said what it did."""
    if result.forced:
        # Loud on purpose: a forced promotion skips the only evidence that staging is healthy.
        print(
            f"gitops: WARNING: --force: promoting {result.candidate[:12]} to {result.target} "
            f"without the evidence the gate asks for: {result.evidence.refusal}",
            file=sys.stderr,
        )
        if os.environ.get("GITHUB_ACTIONS") == "true":
            print(f"::warning::forced promotion: {result.evidence.refusal}")
    if args.pr_body is not None:
        atomic_write(args.pr_body, promotion_body(result).encode("utf-8"))
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary and result.changed:
        # The run's page shows what the pull request says.
        with open(summary, "a", encoding="utf-8") as handle:  # noqa: PTH123
            handle.write(promotion_body(result))
    if args.json:
        print(json.dumps(_promotion_json(result), indent=2))
        return
    if quiet:
        return
    if result.changed:
        print(
            f"{result.target}: pinned to {result.candidate} in {result.path} "
            f"(runs {result.ref}; promoted from {result.source})"
        )
        _commit_and_push(
            [result.path],
            f"deploy({result.target}): promote {result.ref.short_name} {result.ref.tag}",
        )
        print("(as a pull request: merging it is the promotion)")
    else:
        pinned = result.previous[:12] if result.previous else "?"
        print(
            f"{result.target}: pinned to {pinned}, which renders it exactly as "
            f"{result.candidate[:12]} would; nothing to do"
        )


def _promotion_json(result: Promotion) -> dict[str, Any]:
    evidence = result.evidence
    status = evidence.status
    return {
        "source": result.source,
        "target": result.target,
        "path": result.path,
        "changed": result.changed,
        "previous": result.previous,
        "candidate": result.candidate,
        "reference": str(result.ref),
        "tag": result.ref.tag,
        "forced": result.forced,
        "evidence": {
            "context": evidence.context,
            "commit": evidence.commit,
            "state": status.state if status else None,
            "since": status.created_at.isoformat() if status else None,
            "refusal": evidence.refusal,
        },
        "commits": [sha for sha, _ in result.commits],
        "record": result.record.to_json() if result.record else None,
    }


def _report_set(result: SetImageResult, *, verb: str) -> None:
    workloads = ", ".join(sorted({f"{c.kind}/{c.workload}" for c in result.containers}))
    if result.changed:
        print(f"{result.env}: {verb} {result.ref} in {result.path} (rendered {workloads} runs it)")
        # The release record is written with the image entry; they are committed together.
        paths = (
            [result.path, RELEASE_RECORD] if result.path == RELEASE_KUSTOMIZATION else [result.path]
        )
        _commit_and_push(paths, f"{result.env}: {verb} {result.ref.tag}")
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
        "pinned_before": change.pinned_before,
        "pinned_after": change.pinned_after,
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


def _accuracy(record: ReleaseRecord | None) -> str:
    if record is None or record.model is None:
        return "-"
    value = record.model.metrics.get("holdoutAccuracy")
    return "-" if value is None else f"{value:.4f}"


def _print_status(envs: list[EnvStatus], *, as_json: bool) -> None:
    if as_json:
        payload = {
            "environments": [
                {
                    "env": env.env,
                    "path": env.path,
                    "revision": env.revision,
                    **(_entry_json(env.entry) or {}),
                    "placeholder": env.placeholder,
                    "problem": env.problem,
                    "uncommitted": env.uncommitted,
                    "release": env.record.to_json() if env.record else None,
                    "last_change": _change_json(env.last_change) if env.last_change else None,
                }
                for env in envs
            ]
        }
        print(json.dumps(payload, indent=2))
        return
    rows = [["ENV", "RUNS", "TAG", "DIGEST", "MODEL", "ACCURACY", "CHANGED", "NOTE"]]
    for env in envs:
        change = env.last_change
        notes = []
        if env.placeholder:
            notes.append("placeholder, not releasable")
        if env.uncommitted:
            notes.append("uncommitted change")
        if change is not None and not notes:
            notes.append(change.commit.subject)
        model = env.record.model if env.record else None
        rows.append(
            [
                env.env,
                env.revision[:12] if env.revision else "-",
                (env.entry.new_tag if env.entry else None) or "-",
                _short_digest(env.entry.digest if env.entry else None),
                model.version[:12] if model else "-",
                _accuracy(env.record),
                change.commit.date[:10] if change else "-",
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
                f"main\n  {invocation()} hold {env} --reason '<why>'"
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
