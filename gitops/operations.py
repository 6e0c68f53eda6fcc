"""The operations behind the CLI: release an image, promote it, report what runs where."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gitops import invocation, promotion
from gitops.environments import PROMOTION_ORDER, application_path, follows_main, read_pin
from gitops.errors import GitOpsError
from gitops.files import atomic_write
from gitops.history import Change, changes, image_commit, is_ancestor, pin_changes
from gitops.hold import refuse_if_held
from gitops.imageref import ImageRef
from gitops.kustomization import DEFAULT_IMAGE_NAME, ImageEntry, Kustomization
from gitops.prbody import promotion_body
from gitops.promotion import Gate, Promotion
from gitops.release import (
    RELEASE_KUSTOMIZATION,
    RELEASE_RECORD,
    ModelRecord,
    ReleaseRecord,
    render_record,
)
from gitops.render import Container, kustomize_command, render, verify_image
from gitops.repo import KUSTOMIZATION, Repo
from gitops.revisions import image_at, matching, record_at, resolve
from gitops.writeback import Edit, Proposal, workflow_run_url

DEFAULT_LOCK_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Options:
    """Settings shared by the commands (all have defaults that suit this repository)."""

    image_name: str = DEFAULT_IMAGE_NAME
    kustomize: str | None = None
    lock_timeout_s: float = DEFAULT_LOCK_TIMEOUT_S


@dataclass(frozen=True)
class SetImageResult:
    """What `set-image` or `promote` did to one overlay."""

    env: str
    path: str
    ref: ImageRef
    changed: bool
    containers: tuple[Container, ...]
    layout_preserved: bool = True


def set_image(
    repo: Repo,
    env: str,
    ref: ImageRef,
    options: Options,
    *,
    model: ModelRecord | None = None,
    source_commit: str | None = None,
) -> SetImageResult:
    """Point the release at `ref`, proving with kustomize that `env`'s Deployment runs it.

    Only the environment that follows main takes an image directly; the others take it by
    promotion. The image entry and the release record are written together, and only after
    the edited overlay has rendered and been checked; a failure leaves both byte-identical.
    Concurrent runs on one clone are serialised by a lock.
    """
    repo.overlay_dir(env)
    if not follows_main(env):
        first = PROMOTION_ORDER[0]
        raise GitOpsError(
            f"{env} runs the commit {application_path(env).as_posix()} pins and takes images "
            f"only by promotion: {invocation()} promote {first} {env}"
        )
    command = kustomize_command(options.kustomize)
    with repo.lock(options.lock_timeout_s):
        path = repo.root / RELEASE_KUSTOMIZATION
        label = RELEASE_KUSTOMIZATION
        kustomization = Kustomization.load(path, label=label)
        faithful = kustomization.dump() == kustomization.text
        kustomization.entry(options.image_name)  # fail early, naming the file
        new_text = kustomization.with_image(options.image_name, ref)
        record_path = repo.root / RELEASE_RECORD
        old_record = record_path.read_bytes() if record_path.exists() else None
        new_record = render_record(ref, source_commit, model).encode("utf-8")
        overlay = repo.overlay_dir(env)
        objects = _render_with(overlay, path, new_text, command, label=repo.relative(overlay))
        running = verify_image(objects, ref, label=repo.relative(overlay))
        changed = new_text != kustomization.text
        # The record first, the image entry last: the entry is what deploys, so its write is
        # the commit point. A record whose image differs from the entry is never shown.
        if new_record != old_record:
            atomic_write(record_path, new_record)
        if changed:
            try:
                atomic_write(path, new_text.encode("utf-8"))
            except BaseException:
                if old_record is None:
                    record_path.unlink(missing_ok=True)
                elif new_record != old_record:
                    atomic_write(record_path, old_record)
                raise
        return SetImageResult(env, label, ref, changed, tuple(running), faithful or not changed)


def promote(
    repo: Repo,
    source: str,
    target: str,
    options: Options,
    *,
    gate: Gate,
    revision: str = "HEAD",
) -> Promotion:
    """Pin `target` to `revision` once `source` ran it healthy (gitops.promotion)."""
    command = kustomize_command(options.kustomize)
    return promotion.promote(
        repo,
        source,
        target,
        revision=revision,
        gate=gate,
        command=command,
        image_name=options.image_name,
        lock_timeout_s=options.lock_timeout_s,
    )


def _render_with(
    overlay: Path, edited: Path, text: str, command: list[str], *, label: str
) -> list[dict[str, object]]:
    """Render `overlay` as it would be with `edited` (a file under deploy/) holding `text`.

    A copy of deploy/ in a hidden scratch directory next to it, so relative references such
    as ../../base resolve exactly as they do for the real one, and no real file is touched.
    """
    deploy = overlay.parents[2]
    scratch = Path(tempfile.mkdtemp(prefix=".gitops-", dir=deploy.parent))
    try:
        copy = scratch / deploy.name
        shutil.copytree(deploy, copy, symlinks=True)
        (copy / edited.relative_to(deploy)).write_text(text, encoding="utf-8")
        return render(copy / overlay.relative_to(deploy), command, label=label)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@dataclass(frozen=True)
class EnvStatus:
    """What one environment deploys, from which commit, and the change that put it there."""

    env: str
    path: str
    revision: str | None
    entry: ImageEntry | None
    record: ReleaseRecord | None
    problem: str | None
    uncommitted: bool
    last_change: Change | None

    @property
    def placeholder(self) -> bool:
        """True when the environment does not run a releasable image yet."""
        return self.problem is not None


def _entry_problem(entry: ImageEntry | None) -> str | None:
    if entry is None:
        return "no image entry"
    try:
        entry.reference()
    except GitOpsError as exc:
        return str(exc)
    return None


def status(repo: Repo, options: Options) -> list[EnvStatus]:
    """Per environment: the commit it runs, its image and release record, the last change.

    The first environment runs HEAD (the tip of main in a fresh clone); the others run the
    commit their Application pins. Uncommitted edits are flagged, never shown as deployed.
    """
    envs = repo.environments()
    if not envs:
        raise GitOpsError(f"{repo.root} has no deploy/overlays/<env>/{KUSTOMIZATION}")
    try:
        head: str | None = resolve(repo, "HEAD")
    except GitOpsError:
        head = None  # no commit yet
    ordered = [env for env in PROMOTION_ORDER if env in envs]
    ordered += [env for env in envs if env not in ordered]
    result = []
    for env in ordered:
        if follows_main(env):
            path = RELEASE_KUSTOMIZATION
            revision = head
            history = changes(repo, path, image_name=options.image_name)
            dirty_paths = ["deploy"]
        else:
            pin = read_pin(repo, env)
            path = pin.path
            revision = pin.revision
            history = pin_changes(repo, env, image_name=options.image_name)
            dirty_paths = [path]
        entry = record = None
        if revision is not None:
            try:
                revision = resolve(repo, revision)
                entry = image_at(repo, env, revision, options.image_name)
                record = matching(record_at(repo, revision), entry)
            except GitOpsError as exc:
                result.append(EnvStatus(env, path, revision, None, None, str(exc), False, None))
                continue
        dirty = repo.git("status", "--porcelain", "--", *dirty_paths).strip() != ""
        result.append(
            EnvStatus(
                env,
                path,
                revision,
                entry,
                record,
                _entry_problem(entry),
                dirty,
                history[0] if history else None,
            )
        )
    return result


def running_entry(repo: Repo, env: str, options: Options) -> ImageEntry:
    """The image entry `env` runs as the working tree says: the release for the first
    environment, the release at the pinned commit for the others."""
    repo.overlay_dir(env)
    if follows_main(env):
        path = repo.root / RELEASE_KUSTOMIZATION
        return Kustomization.load(path, label=RELEASE_KUSTOMIZATION).entry(options.image_name)
    pin = read_pin(repo, env)
    entry = image_at(repo, env, resolve(repo, pin.revision), options.image_name)
    if entry is None:
        raise GitOpsError(f"{env} has no image at {pin.revision[:12]}")
    return entry


def history(repo: Repo, env: str, options: Options) -> list[Change]:
    """Every change of `env`'s image (or, for a pinned environment, its pin), newest first."""
    repo.overlay_dir(env)
    if not follows_main(env):
        read_pin(repo, env)  # a malformed Application is reported like a malformed overlay
        return pin_changes(repo, env, image_name=options.image_name)
    # Fail on a malformed working copy the same way the other commands do.
    Kustomization.load(repo.root / RELEASE_KUSTOMIZATION, label=RELEASE_KUSTOMIZATION).entry(
        options.image_name
    )
    return changes(repo, RELEASE_KUSTOMIZATION, image_name=options.image_name)


def check_order(repo: Repo, env: str, ref: ImageRef, options: Options) -> str | None:
    """Refuse to move `env` to an image built from an older commit than the one it runs.

    A re-run of an old release run would otherwise roll staging back silently. Returns a
    note when the order cannot be told (a commit this clone does not have); the bump goes on.
    """
    path = repo.root / RELEASE_KUSTOMIZATION
    entry = Kustomization.load(path, label=RELEASE_KUSTOMIZATION).entry(options.image_name)
    try:
        current = entry.reference()
    except GitOpsError:
        return None  # the placeholder: any real image is an improvement
    if current.tag == ref.tag:
        return None
    new_commit = image_commit(repo, ref.tag)
    old_commit = image_commit(repo, current.tag)
    if new_commit is None or old_commit is None:
        unknown = ref.tag if new_commit is None else current.tag
        return (
            f"cannot tell whether {ref.tag} is newer than {current.tag}: "
            f"{unknown} names no commit in this clone's history"
        )
    if new_commit != old_commit and is_ancestor(repo, new_commit, old_commit):
        raise GitOpsError(
            f"{env} runs {current.tag}, built from a newer commit than {ref.tag}; refusing to "
            "move it back (a re-run of an old release?). Roll back with the revert that "
            f"'{invocation()} history {env}' prints, or pass --force"
        )
    return None


def bump_edit(
    env: str,
    ref: ImageRef,
    options: Options,
    *,
    force: bool,
    log: Callable[[str], None],
    model: ModelRecord | None = None,
    source_commit: str | None = None,
) -> Edit:
    """The edit a release writes back: `env` set to `ref`, unless held or older.

    It runs against the newest tip, so a hold or a newer image that landed while the image
    was being built is honoured.
    """

    def edit(work: Repo) -> Proposal | None:
        refuse_if_held(work, env)
        if not force:
            note = check_order(work, env, ref, options)
            if note:
                log(f"warning: {note}; bumping anyway")
        result = set_image(work, env, ref, options, model=model, source_commit=source_commit)
        if not result.changed:
            return None
        run_url = workflow_run_url()
        body = f"Image: {ref}" + (f"\nRelease run: {run_url}" if run_url else "")
        return Proposal(
            # The image entry and the record written with it.
            paths=(RELEASE_KUSTOMIZATION, RELEASE_RECORD),
            subject=f"deploy({env}): {ref.short_name} {ref.tag}",
            body=body,
            branch=f"bump/{env}/{ref.tag}",
        )

    return edit


def promote_edit(
    source: str,
    target: str,
    options: Options,
    *,
    gate: Gate,
    revision: str,
    done: Callable[[Promotion], None],
) -> Edit:
    """The edit a promotion writes back: `target` pinned to what `source` ran healthy.

    It runs on the newest tip, so `revision` (HEAD there) is the newest commit of main; the
    gate then finds the evidence for it. A held target is refused: a hold means "nothing new
    here" whoever proposes it. `done` receives the promotion (for the workflow's outputs).
    """

    def edit(work: Repo) -> Proposal | None:
        refuse_if_held(work, target)
        result = promote(work, source, target, options, gate=gate, revision=revision)
        done(result)
        if not result.changed:
            return None
        ref = result.ref
        run_url = workflow_run_url()
        body = f"Pins {target} to {result.candidate}\nImage: {ref}" + (
            f"\nPromotion run: {run_url}" if run_url else ""
        )
        return Proposal(
            paths=(result.path,),
            subject=f"deploy({target}): promote {ref.short_name} {ref.tag} from {source}",
            body=body,
            branch=f"promote/{target}/{ref.tag}",
            pr_body=promotion_body(result),
        )

    return edit
