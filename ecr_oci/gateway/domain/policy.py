"""Who may do what to a repository: small composable rules, deny by default.

A rule looks at a :class:`Caller` and a :class:`RepoFacts` and returns the actions it
allows (``pull``, ``push``, ``delete``); :class:`AnyOf` unions rules. Nothing allows
anything unless some rule says so. The table the rules implement is in
``annotations-spec/v1/access-control.md``.

Decisions about single manifests or blobs (a node may pull only approved content,
released version tags are immutable) need the request's digest and are taken by
the proxy with :class:`NodeContentRule` and :func:`is_release_tag`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from ecr_oci.gateway.stores.state import GrantLevel, StateStore, Visibility

PULL, PUSH, DELETE = "pull", "push", "delete"
ALL_ACTIONS = frozenset({PULL, PUSH, DELETE})
_GRANT_ACTIONS: dict[GrantLevel, frozenset[str]] = {
    "read": frozenset({PULL}),
    "write": frozenset({PULL, PUSH}),
    "admin": ALL_ACTIONS,
}
# Released versions: MAJOR.MINOR.PATCH with optional v, pre-release and build parts.
_RELEASE = re.compile(r"^v?\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")


@dataclass(frozen=True)
class Caller:
    """An authenticated identity, or the anonymous one (``name`` None)."""

    name: str | None
    kind: Literal["anonymous", "user", "node"] = "anonymous"
    admin: bool = False
    deployments: frozenset[str] = frozenset()

    @property
    def label(self) -> str:
        """How the caller appears in tokens and the audit log."""
        return self.name or "anonymous"


ANONYMOUS = Caller(name=None)


@dataclass(frozen=True)
class RepoFacts:
    """What policy knows of a repository. ``visibility`` None: no record (fail closed)."""

    name: str
    visibility: Visibility | None
    grants: dict[str, GrantLevel] = field(default_factory=dict)
    node_approved: bool = False

    @property
    def namespace(self) -> str:
        return self.name.split("/", 1)[0] if "/" in self.name else ""


class Rule(Protocol):
    def allowed(self, caller: Caller, repo: RepoFacts) -> frozenset[str]:
        """The actions this rule allows ``caller`` on ``repo`` (empty: no opinion)."""
        ...


class AdminRule:
    """Administrators may do everything."""

    def allowed(self, caller: Caller, repo: RepoFacts) -> frozenset[str]:
        return ALL_ACTIONS if caller.admin and caller.kind == "user" else frozenset()


class OwnerRule:
    """A user owns the namespace named after them (``alice/...``): pull, push, delete.

    Ownership holds whether or not the repository exists yet, so a first push (and the
    ``pull`` oras asks for before it) works.
    """

    def allowed(self, caller: Caller, repo: RepoFacts) -> frozenset[str]:
        if caller.kind == "user" and caller.name and repo.namespace == caller.name:
            return ALL_ACTIONS
        return frozenset()


class VisibilityRule:
    """``public`` repositories are pulled by every user and anonymous callers.

    Nodes are left out on purpose: they pull approved content only.
    """

    def allowed(self, caller: Caller, repo: RepoFacts) -> frozenset[str]:
        if repo.visibility == "public" and caller.kind in ("anonymous", "user"):
            return frozenset({PULL})
        return frozenset()


class GrantRule:
    """Per-repository grants to named users: read (pull), write (+push), admin (+delete).

    Grants count on ``public`` and ``protected`` repositories; ``private`` means the
    namespace owner (and administrators) only, whatever was granted.
    """

    def allowed(self, caller: Caller, repo: RepoFacts) -> frozenset[str]:
        if caller.kind != "user" or not caller.name or repo.visibility in (None, "private"):
            return frozenset()
        level = repo.grants.get(caller.name)
        return _GRANT_ACTIONS[level] if level else frozenset()


class NodeRule:
    """A node may pull from a repository holding content approved for its deployments.

    Which manifests and blobs it may fetch is then checked per request
    (:class:`NodeContentRule`).
    """

    def allowed(self, caller: Caller, repo: RepoFacts) -> frozenset[str]:
        return frozenset({PULL}) if caller.kind == "node" and repo.node_approved else frozenset()


@dataclass(frozen=True)
class AnyOf:
    """The union of what its rules allow."""

    rules: tuple[Rule, ...]

    def allowed(self, caller: Caller, repo: RepoFacts) -> frozenset[str]:
        out: frozenset[str] = frozenset()
        for rule in self.rules:
            out |= rule.allowed(caller, repo)
        return out


DEFAULT_POLICY = AnyOf((AdminRule(), OwnerRule(), VisibilityRule(), GrantRule(), NodeRule()))


class NodeContentRule:
    """Per-digest check for nodes: only content approved for one of their deployments.

    Args:
        store: where approvals (the closure of each approved bundle) are recorded.
    """

    def __init__(self, store: StateStore) -> None:
        self._store = store

    def permits(self, caller: Caller, repository: str, digest: str) -> bool:
        if caller.kind != "node":
            return True
        return self._store.is_approved(repository, caller.deployments, digest)


def is_release_tag(tag: str) -> bool:
    """True for version tags (semver, optional ``v``): these are immutable once pushed."""
    return bool(_RELEASE.match(tag))


def facts(store: StateStore, name: str, caller: Caller) -> RepoFacts:
    """Gather the facts the rules need about repository ``name`` for ``caller``."""
    record = store.get_repository(name)
    node_approved = caller.kind == "node" and store.has_approved(name, caller.deployments)
    if record is None:
        return RepoFacts(name=name, visibility=None, node_approved=node_approved)
    return RepoFacts(name=name, visibility=record.visibility, grants=record.grants, node_approved=node_approved)


def can_manage(caller: Caller, repo: RepoFacts) -> bool:
    """Who may change visibility and grants: ECR admins, the namespace owner, and ``admin``
    grantees of a ``public`` or ``protected`` repository (on a ``private`` one every grant
    is dormant, exactly as :class:`GrantRule` treats it)."""
    if caller.kind != "user":
        return False
    if caller.admin or repo.namespace == caller.name:
        return True
    return repo.visibility in ("public", "protected") and repo.grants.get(caller.name or "") == "admin"


def visible(actions: Iterable[str]) -> bool:
    return PULL in set(actions)


def can_access_node(caller: Caller, node: str) -> bool:
    """A node's facts (read and update): administrators and the node itself."""
    return (caller.kind == "user" and caller.admin) or (caller.kind == "node" and caller.name == node)


def can_read_feed(caller: Caller, deployment: str) -> bool:
    """A deployment's scheduler feed: administrators and the nodes of that deployment."""
    return (caller.kind == "user" and caller.admin) or (caller.kind == "node" and deployment in caller.deployments)
