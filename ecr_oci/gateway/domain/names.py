"""The one place names and references are parsed, for every surface of the gateway.

Token scopes, ``/v2`` routes, ``/api/v1`` paths and bodies, stages and web pages all
take repository names, tags, digests and account names through these functions, and
refuse anything else *before* any policy decision or upstream request. Upstream URLs
are then built from parsed parts only, so no path fragment (``..``, ``/``, ``%2e``)
from a client can reach the registry's URL space.

The grammar is the distribution-spec's (``distribution/reference``), as already used
by the client in :mod:`ecr_oci.registry.reference`.
"""

from __future__ import annotations

import re

from ecr_oci.registry.reference import REPOSITORY_RE, TAG_RE

MAX_NAME_LENGTH = 255  # Distribution's limit for a repository name
# Any digest by the OCI image-spec grammar; which algorithms are served is a second check.
_DIGEST_GRAMMAR = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_SUPPORTED_DIGESTS = {"sha256": re.compile(r"^[a-f0-9]{64}$")}
# Accounts (users, nodes) name namespaces, so they are one repository path component.
_ACCOUNT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
MAX_ACCOUNT_LENGTH = 64
# Nodes (``W0A1``) and deployments are labels chosen by admins: a conservative grammar.
_LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class InvalidName(ValueError):
    """A name, tag or digest outside the grammar. ``code`` is the OCI error code to answer."""

    def __init__(self, message: str, code: str = "NAME_INVALID") -> None:
        self.code = code
        super().__init__(message)


def repository(text: str) -> str:
    """A repository name (``alice/bird-detector``) or :class:`InvalidName`."""
    if not isinstance(text, str) or len(text) > MAX_NAME_LENGTH or not REPOSITORY_RE.match(text):
        raise InvalidName("invalid repository name")
    return text


def is_repository(text: str) -> bool:
    try:
        repository(text)
    except InvalidName:
        return False
    return True


def digest(text: str) -> str:
    """A digest this registry stores (``sha256:<64 hex>``) or :class:`InvalidName` (DIGEST_INVALID)."""
    if not isinstance(text, str) or len(text) > 200 or not _DIGEST_GRAMMAR.match(text):
        raise InvalidName("invalid digest", code="DIGEST_INVALID")
    algorithm, _, encoded = text.partition(":")
    check = _SUPPORTED_DIGESTS.get(algorithm)
    if check is None:
        raise InvalidName(f"unsupported digest algorithm {algorithm} (this registry stores sha256)",
                          code="DIGEST_INVALID")
    if not check.match(encoded):
        raise InvalidName("invalid digest", code="DIGEST_INVALID")
    return text


def looks_like_digest(text: str) -> bool:
    """Whether a reference is meant as a digest (has the ``algorithm:`` form), valid or not."""
    return ":" in text


def tag(text: str) -> str:
    """A tag (``1.2.0``, at most 128 characters) or :class:`InvalidName` (TAG_INVALID)."""
    if not isinstance(text, str) or not TAG_RE.match(text):
        raise InvalidName("invalid tag", code="TAG_INVALID")
    return text


def reference(text: str) -> str:
    """A manifest reference: a digest or a tag, never anything else."""
    return digest(text) if looks_like_digest(text) else tag(text)


def user(text: str) -> str:
    """A new user's name: it names the user's namespace, so one lowercase repository path component."""
    if not isinstance(text, str) or len(text) > MAX_ACCOUNT_LENGTH or not _ACCOUNT_RE.match(text):
        raise InvalidName("invalid user name: lowercase letters and digits, with . _ - between them, "
                          f"at most {MAX_ACCOUNT_LENGTH} characters (it names the user's namespace)")
    return text


def account(text: str) -> str:
    """Any account name (users, nodes such as ``W0A1``, ``ecr-system``): letters, digits, ``. _ -``."""
    if not isinstance(text, str) or not _LABEL_RE.match(text):
        raise InvalidName("invalid account name: letters, digits and . _ -, at most 64 characters")
    return text


def deployment(text: str) -> str:
    """A deployment name (letters, digits, ``. _ -``, at most 64 characters)."""
    if not isinstance(text, str) or not _LABEL_RE.match(text):
        raise InvalidName("invalid deployment name: letters, digits and . _ -, at most 64 characters")
    return text
