"""Parse and validate the image references the overlays may deploy.

Only immutable Artifact Registry references are accepted: the registry host, project,
repository and image, a `sha-<hex>` tag naming the source commit, and the `sha256:` digest that
pins the exact bytes. The tag is what people read; the digest is what the cluster pulls.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gitops.errors import GitOpsError

# Regional (europe-west1-docker.pkg.dev) and multi-regional (europe-docker.pkg.dev) hosts.
_HOST = re.compile(r"^[a-z]+(?:-[a-z]+[0-9]+)?-docker\.pkg\.dev$")
# Google Cloud project ids: 6-30 characters, lowercase letters, digits and hyphens.
_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
# Artifact Registry repository ids.
_REPOSITORY = re.compile(r"^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# Docker image path components.
_IMAGE_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^sha-[0-9a-f]{7,40}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")

PLACEHOLDER_PROJECT = "your-gcp-project"
_MUTABLE_TAGS = frozenset({"latest", "stable", "main", "master", "edge", "dev"})


@dataclass(frozen=True)
class ImageRef:
    """An image pinned by tag and digest: `<host>/<project>/<repository>/<image>:<tag>@<digest>`."""

    host: str
    project: str
    repository: str
    image: str
    tag: str
    digest: str

    @property
    def name(self) -> str:
        """The repository part without tag or digest (the overlay's `newName`)."""
        return f"{self.host}/{self.project}/{self.repository}/{self.image}"

    @property
    def short_name(self) -> str:
        """The last path component of the image, which is the name the base manifests use."""
        return self.image.rsplit("/", 1)[-1]

    def __str__(self) -> str:
        return f"{self.name}:{self.tag}@{self.digest}"

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        """Parse `name:tag@sha256:digest`, raising GitOpsError that names the bad part."""
        ref = text.strip()
        if not ref:
            raise GitOpsError(
                "image reference is empty; expected "
                "<host>/<project>/<repo>/<image>:sha-<hex>@sha256:<64 hex>"
            )
        name_tag, at, digest = ref.partition("@")
        last_slash = name_tag.rfind("/")
        colon = name_tag.rfind(":")
        tag = name_tag[colon + 1 :] if colon > last_slash else ""
        if tag in _MUTABLE_TAGS:
            raise GitOpsError(f"tag {tag!r} is mutable; use the sha-<commit> tag and the digest")
        if not at:
            raise GitOpsError(
                f"image reference {ref!r} has no digest: a tag alone is mutable; "
                "pass <name>:<tag>@sha256:<64 hex> as printed by the push"
            )
        if not tag:
            raise GitOpsError(
                f"image reference {ref!r} has no tag: expected <name>:sha-<hex>@{digest}"
            )
        return cls.from_parts(name_tag[:colon], tag, digest)

    @classmethod
    def from_parts(cls, name: str, tag: str, digest: str) -> ImageRef:
        """Validate a name, tag and digest given separately (as an overlay stores them)."""
        host, project, repository, image = _checked_name(name)
        _check_tag(tag)
        _check_digest(digest)
        return cls(host, project, repository, image, tag, digest)

    def rendered_forms(self) -> frozenset[str]:
        """The container `image` strings kustomize may render for this reference.

        Kustomize 5 writes `name:tag@digest`; older releases drop the tag. Both pull the
        same bytes because the digest wins.
        """
        return frozenset({str(self), f"{self.name}@{self.digest}"})


def _checked_name(name: str) -> tuple[str, str, str, str]:
    """Host, project, repository and image path of an Artifact Registry image name."""
    parts = name.split("/")
    if len(parts) < 4:
        raise GitOpsError(
            f"image name {name!r} must be <region>-docker.pkg.dev/<project>/<repository>/<image>"
        )
    host, project, repository, *image_parts = parts
    if not _HOST.match(host):
        raise GitOpsError(
            f"registry host {host!r} is not Artifact Registry: expected <region>-docker.pkg.dev"
        )
    if project == PLACEHOLDER_PROJECT:
        raise GitOpsError(
            f"project {project!r} is the placeholder; use the image your release pushed"
        )
    if not _PROJECT.match(project):
        raise GitOpsError(f"project {project!r} is not a valid Google Cloud project id")
    if not _REPOSITORY.match(repository):
        raise GitOpsError(
            f"repository {repository!r} is not a valid Artifact Registry repository id"
        )
    for component in image_parts:
        if not _IMAGE_COMPONENT.match(component):
            raise GitOpsError(f"image name component {component!r} is not valid")
    return host, project, repository, "/".join(image_parts)


def _check_tag(tag: str) -> None:
    if tag in _MUTABLE_TAGS:
        raise GitOpsError(f"tag {tag!r} is mutable; use the sha-<commit> tag of the build")
    if not _TAG.match(tag):
        raise GitOpsError(f"tag {tag!r} must be sha-<7 to 40 lowercase hex characters>")
    if set(tag.removeprefix("sha-")) == {"0"}:
        raise GitOpsError(f"tag {tag!r} is the placeholder; use the tag your release pushed")


def _check_digest(digest: str) -> None:
    if not _DIGEST.match(digest):
        raise GitOpsError(f"digest {digest!r} must be sha256: followed by 64 lowercase hex")
    if set(digest.removeprefix("sha256:")) == {"0"}:
        raise GitOpsError("digest is the all-zero placeholder; use the digest the push printed")
