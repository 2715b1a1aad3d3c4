"""Image references: ``host[:port]/repo/path[:tag][@sha256:hex]``."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ecr_oci.errors import ValidationError

# Grammar of distribution/reference, restricted to what a registry host needs.
_REPO_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY_RE = re.compile(rf"^{_REPO_COMPONENT}(?:/{_REPO_COMPONENT})*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$|^sha512:[a-f0-9]{128}$")
_HOST_RE = re.compile(r"^(?:\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+)(?::[0-9]+)?$")


@dataclass(frozen=True)
class Reference:
    """A parsed reference to a manifest in a registry.

    Attributes:
        registry: host and optional port, e.g. ``127.0.0.1:5000``.
        repository: the repository path, e.g. ``alice/bird-detector``.
        tag: the tag, if given.
        digest: the digest, if given; it wins over the tag when both are set.
    """

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """The tag or digest to put in a ``/v2/<name>/manifests/<reference>`` URL."""
        if self.digest:
            return self.digest
        return self.tag or "latest"

    def with_digest(self, digest: str) -> Reference:
        """The same repository pinned to ``digest`` (the tag is kept for display)."""
        return replace(self, digest=digest)

    def with_tag(self, tag: str) -> Reference:
        return replace(self, tag=tag, digest=None)

    @property
    def repo_path(self) -> str:
        """``registry/repository`` with neither tag nor digest."""
        return f"{self.registry}/{self.repository}"

    def __str__(self) -> str:
        text = self.repo_path
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    def pinned(self) -> str:
        """``registry/repository@digest``: the bundle's unique identifier."""
        if not self.digest:
            raise ValueError("reference has no digest")
        return f"{self.repo_path}@{self.digest}"


def parse_reference(text: str, *, default_tag: str | None = "latest") -> Reference:
    """Parse an image reference; the registry host is mandatory.

    Args:
        text: e.g. ``localhost:5000/alice/bird-detector:1.2.0`` or ``...@sha256:...``.
        default_tag: tag used when neither tag nor digest is given (None keeps it unset).

    Raises:
        ValidationError: the text is not a valid reference.
    """
    original = text
    for prefix in ("docker://", "oci://"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    digest = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not DIGEST_RE.match(digest):
            raise ValidationError(f"invalid digest {digest!r} in reference {original!r}")
    if "/" not in text:
        raise ValidationError(
            f"reference {original!r} has no registry host (expected HOST[:PORT]/REPOSITORY[:TAG])"
        )
    host, rest = text.split("/", 1)
    if not _HOST_RE.match(host) or not ("." in host or ":" in host or host == "localhost"):
        raise ValidationError(
            f"reference {original!r} has no registry host (expected HOST[:PORT]/REPOSITORY[:TAG])"
        )
    tag = None
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        rest, tag = rest.rsplit(":", 1)
        if not TAG_RE.match(tag):
            raise ValidationError(f"invalid tag {tag!r} in reference {original!r}")
    if not REPOSITORY_RE.match(rest):
        raise ValidationError(
            f"invalid repository name {rest!r} in {original!r} (lowercase letters, digits, . _ - /)"
        )
    if tag is None and digest is None:
        tag = default_tag
    return Reference(registry=host, repository=rest, tag=tag, digest=digest)
