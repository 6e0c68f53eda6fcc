"""The operations behind the CLI: set an image, promote one, and report what runs where."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gitops.errors import GitOpsError
from gitops.files import atomic_write
from gitops.history import Change, changes, image_commit, is_ancestor
from gitops.hold import refuse_if_held
from gitops.imageref import ImageRef
from gitops.kustomization import DEFAULT_IMAGE_NAME, ImageEntry, Kustomization
from gitops.render import Container, kustomize_command, render, verify_image
from gitops.repo import KUSTOMIZATION, Repo
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


def set_image(repo: Repo, env: str, ref: ImageRef, options: Options) -> SetImageResult:
    """Point `env`'s overlay at `ref`, proving with kustomize that its Deployment runs it.

    The file is replaced only after the edited overlay has rendered and been checked, so any
    failure leaves it byte-identical. Concurrent runs on one clone are serialised by a lock.
    """
    path = repo.kustomization_path(env)
    command = kustomize_command(options.kustomize)
    with repo.lock(options.lock_timeout_s):
        return _set_image_locked(repo, env, path, ref, command, options.image_name)


def promote(repo: Repo, source: str, target: str, options: Options) -> SetImageResult:
    """Copy the exact image (same tag and digest) of `source` into `target`."""
    if source == target:
        raise GitOpsError(f"cannot promote {source!r} to itself")
    source_path = repo.kustomization_path(source)
    target_path = repo.kustomization_path(target)
    command = kustomize_command(options.kustomize)
    with repo.lock(options.lock_timeout_s):
        label = repo.relative(source_path)
        entry = Kustomization.load(source_path, label=label).entry(options.image_name)
        try:
            ref = entry.reference()
        except GitOpsError as exc:
            raise GitOpsError(f"{source} has no releasable image to promote: {exc}") from exc
        return _set_image_locked(repo, target, target_path, ref, command, options.image_name)


def _set_image_locked(
    repo: Repo, env: str, path: Path, ref: ImageRef, command: list[str], image_name: str
) -> SetImageResult:
    label = repo.relative(path)
    kustomization = Kustomization.load(path, label=label)
    faithful = kustomization.dump() == kustomization.text
    kustomization.entry(image_name)  # fail early, naming the file, if there is no such entry
    new_text = kustomization.with_image(image_name, ref)
    changed = new_text != kustomization.text
    overlay_label = repo.relative(path.parent)
    objects = _render_with(path.parent, new_text, command, label=overlay_label)
    running = verify_image(objects, ref, label=overlay_label)
    if changed:
        atomic_write(path, new_text.encode("utf-8"))
    return SetImageResult(env, label, ref, changed, tuple(running), faithful or not changed)


def _render_with(
    overlay: Path, text: str, command: list[str], *, label: str
) -> list[dict[str, object]]:
    """Render a copy of `overlay` whose kustomization.yaml holds `text`.

    The copy is a hidden sibling of the overlay, so relative references such as ../../base
    resolve exactly as they do for the real one, and the real file is not touched.
    """
    scratch = Path(tempfile.mkdtemp(prefix=f".{overlay.name}.gitops-", dir=overlay.parent))
    try:
        shutil.copytree(overlay, scratch, symlinks=True, dirs_exist_ok=True)
        (scratch / KUSTOMIZATION).write_text(text, encoding="utf-8")
        return render(scratch, command, label=label)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@dataclass(frozen=True)
class EnvStatus:
    """What one environment deploys, and the commit that put it there."""

    env: str
    path: str
    entry: ImageEntry
    problem: str | None
    uncommitted: bool
    last_change: Change | None

    @property
    def placeholder(self) -> bool:
        """True when the overlay does not hold a releasable image yet."""
        return self.problem is not None


def status(repo: Repo, options: Options) -> list[EnvStatus]:
    """The image of every environment and the commit that last changed it."""
    envs = repo.environments()
    if not envs:
        raise GitOpsError(f"{repo.root} has no deploy/overlays/<env>/{KUSTOMIZATION}")
    result = []
    for env in envs:
        path = repo.kustomization_path(env)
        label = repo.relative(path)
        entry = Kustomization.load(path, label=label).entry(options.image_name)
        try:
            entry.reference()
            problem = None
        except GitOpsError as exc:
            problem = str(exc)
        dirty = repo.git("status", "--porcelain", "--", label).strip() != ""
        history = changes(repo, env, image_name=options.image_name)
        result.append(EnvStatus(env, label, entry, problem, dirty, history[0] if history else None))
    return result


def history(repo: Repo, env: str, options: Options) -> list[Change]:
    """Every commit that changed `env`'s image, newest first."""
    path = repo.kustomization_path(env)
    # Fail on a malformed working copy the same way the other commands do.
    Kustomization.load(path, label=repo.relative(path)).entry(options.image_name)
    return changes(repo, env, image_name=options.image_name)


def check_order(repo: Repo, env: str, ref: ImageRef, options: Options) -> str | None:
    """Refuse to move `env` to an image built from an older commit than the one it runs.

    A re-run of an old release run would otherwise roll staging back silently. Returns a
    note when the order cannot be told (a commit this clone does not have); the bump goes on.
    """
    path = repo.kustomization_path(env)
    entry = Kustomization.load(path, label=repo.relative(path)).entry(options.image_name)
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
            f"'python -m gitops history {env}' prints, or pass --force"
        )
    return None


def bump_edit(
    env: str, ref: ImageRef, options: Options, *, force: bool, log: Callable[[str], None]
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
        result = set_image(work, env, ref, options)
        if not result.changed:
            return None
        run_url = workflow_run_url()
        body = f"Image: {ref}" + (f"\nRelease run: {run_url}" if run_url else "")
        return Proposal(
            paths=(result.path,),
            subject=f"deploy({env}): {ref.short_name} {ref.tag}",
            body=body,
            branch=f"bump/{env}/{ref.tag}",
        )

    return edit


def promote_edit(source: str, target: str, options: Options) -> Edit:
    """The edit a promotion writes back: `target` set to the exact image `source` runs.

    Read from the newest tip, so the pull request carries what staging runs now. A held
    target is refused: a hold means "no new image here" whoever proposes it.
    """

    def edit(work: Repo) -> Proposal | None:
        refuse_if_held(work, target)
        result = promote(work, source, target, options)
        if not result.changed:
            return None
        ref = result.ref
        run_url = workflow_run_url()
        body = (
            f"Promotes the image that {source} runs to {target}, by digest:\n\n    {ref}\n\n"
            f"Merging this pull request is the promotion: Argo CD syncs {target} from the "
            "branch it deploys. Roll back by reverting the merge commit."
            + (f"\n\nPromotion run: {run_url}" if run_url else "")
        )
        return Proposal(
            paths=(result.path,),
            subject=f"deploy({target}): promote {ref.short_name} {ref.tag} from {source}",
            body=body,
            branch=f"promote/{target}/{ref.tag}",
        )

    return edit
