"""Read and edit the `images:` entry of an overlay's kustomization.yaml without disturbing it.

Edits go through ruamel.yaml's round-trip mode, so comments, key order, quoting and the
indentation style of the file survive; only the values of `newName`, `newTag` and `digest`
change.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString
from ruamel.yaml.util import load_yaml_guess_indent

from gitops.errors import GitOpsError
from gitops.imageref import ImageRef

DEFAULT_IMAGE_NAME = "iris-api"
_FIELDS = ("newName", "newTag", "digest")


@dataclass(frozen=True)
class ImageEntry:
    """The raw values of one `images:` entry, as written (possibly a placeholder)."""

    name: str
    new_name: str | None
    new_tag: str | None
    digest: str | None

    def reference(self) -> ImageRef:
        """The entry as a validated reference; GitOpsError if it is incomplete or a placeholder."""
        values = (self.new_name or "", self.new_tag or "", self.digest or "")
        missing = [field for field, value in zip(_FIELDS, values, strict=True) if not value]
        if missing:
            raise GitOpsError(f"images entry {self.name!r} has no {', '.join(missing)}")
        return ImageRef.from_parts(*values)

    def display(self) -> str:
        """A one-line rendering of the raw values, for status output."""
        name = self.new_name or self.name
        tag = f":{self.new_tag}" if self.new_tag else ""
        digest = f"@{self.digest}" if self.digest else ""
        return f"{name}{tag}{digest}"


def argocd_yaml() -> YAML:
    """Round-trip YAML in the layout the argocd/ manifests are written in; tests hold them to it."""
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def parse_entry(text: str, *, image_name: str, label: str) -> ImageEntry:
    """Parse kustomization text and return its image entry; `label` names the file in errors."""
    return Kustomization.parse(text, label=label).entry(image_name)


class Kustomization:
    """One kustomization.yaml loaded for a round-trip edit."""

    def __init__(self, text: str, data: Any, yaml: YAML, label: str) -> None:
        self.text = text
        self._data = data
        self._yaml = yaml
        self.label = label

    @classmethod
    def load(cls, path: Path, *, label: str) -> Kustomization:
        """Read and parse `path`; GitOpsError if it cannot be read or is not a kustomization."""
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise GitOpsError(f"{label}: cannot read: {exc.strerror}") from exc
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise GitOpsError(f"{label}: malformed kustomization: not UTF-8 text") from exc
        return cls.parse(text, label=label)

    @classmethod
    def parse(cls, text: str, *, label: str) -> Kustomization:
        """Parse kustomization text; GitOpsError if it is not YAML or not a mapping."""
        yaml = YAML(typ="rt")
        yaml.preserve_quotes = True
        # Never fold long lines: a digest must stay on the line of its key.
        yaml.width = 4096
        try:
            # Guess the author's indentation first so that dumping reproduces it.
            _, indent, block_seq_indent = load_yaml_guess_indent(text)
            data = yaml.load(text)
        except YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or type(exc).__name__
            raise GitOpsError(f"{label}: malformed kustomization{where}: {problem}") from exc
        if not isinstance(data, dict):
            raise GitOpsError(f"{label}: malformed kustomization: the top level is not a mapping")
        kind = data.get("kind", "Kustomization")
        # A Component (deploy/release) holds images: the same way a Kustomization does.
        if kind not in ("Kustomization", "Component"):
            raise GitOpsError(f"{label}: malformed kustomization: kind is {kind!r}")
        yaml.indent(mapping=indent or 2, sequence=indent or 2, offset=block_seq_indent or 0)
        yaml.explicit_start = text.lstrip().startswith("---")
        return cls(text, data, yaml, label)

    def _entries(self) -> list[Any]:
        images = self._data.get("images")
        if images is None:
            raise GitOpsError(
                f"{self.label}: no images: entry; add one with name, newName, newTag and digest"
            )
        if not isinstance(images, list):
            raise GitOpsError(f"{self.label}: malformed kustomization: images: is not a list")
        for item in images:
            if not isinstance(item, dict):
                raise GitOpsError(
                    f"{self.label}: malformed kustomization: an images: item is not a mapping"
                )
        return images

    def _find(self, image_name: str) -> Any:
        entries = self._entries()
        matches = [item for item in entries if item.get("name") == image_name]
        if not matches:
            found = ", ".join(repr(str(item.get("name"))) for item in entries) or "none"
            raise GitOpsError(
                f"{self.label}: images: has no entry with name: {image_name} (found: {found})"
            )
        if len(matches) > 1:
            raise GitOpsError(
                f"{self.label}: malformed kustomization: images: names {image_name!r} twice"
            )
        return matches[0]

    def entry(self, image_name: str) -> ImageEntry:
        """The image entry whose `name` is `image_name`."""
        item = self._find(image_name)

        def text_of(key: str) -> str | None:
            value = item.get(key)
            return None if value is None else str(value)

        return ImageEntry(
            name=image_name,
            new_name=text_of("newName"),
            new_tag=text_of("newTag"),
            digest=text_of("digest"),
        )

    def with_image(self, image_name: str, ref: ImageRef) -> str:
        """The file's text with the entry `image_name` pointing at `ref`, all else preserved."""
        item = self._find(image_name)
        for key, value in zip(_FIELDS, (ref.name, ref.tag, ref.digest), strict=True):
            item[key] = keep_style(item.get(key), value)
        return self.dump()

    def dump(self) -> str:
        """Serialise the (possibly edited) document."""
        out = io.StringIO()
        self._yaml.dump(self._data, out)
        return out.getvalue()


def keep_style(old: object, new: str) -> str:
    """`new`, quoted the way the author quoted the value it replaces."""
    styled: str = new
    if isinstance(old, DoubleQuotedScalarString):
        styled = DoubleQuotedScalarString(new)
    elif isinstance(old, SingleQuotedScalarString):
        styled = SingleQuotedScalarString(new)
    return styled
