"""The gateway's state behind one small interface.

Gateway processes are stateless apart from this store, so several can run behind a
load balancer once the store is shared. :class:`StateStore` is the interface;
:class:`SqlStore` is its one implementation in portable SQL (``INSERT ... ON CONFLICT``
upserts, which SQLite >= 3.24 and PostgreSQL share), parameterised by a
:class:`Dialect` for what differs: placeholder style, a few DDL types, and how a
connection and a transaction are had. :class:`SqliteStore` (stdlib sqlite3, WAL) is the
embedded default; :class:`ecr_oci.gateway.stores.state_pg.PostgresStore` is the shared store
for several gateways. :func:`open_store` picks one from a URL.

What lives here is access state (accounts, visibility, grants), audit records and an
index. Bundle content is only ever in the registry: the referrers index can be
rebuilt from it (``ecr admin reindex``).
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

AccountKind = Literal["user", "node"]
Visibility = Literal["public", "protected", "private"]
GrantLevel = Literal["read", "write", "admin"]
VISIBILITIES: tuple[Visibility, ...] = ("public", "protected", "private")
GRANT_LEVELS: tuple[GrantLevel, ...] = ("read", "write", "admin")


@dataclass(frozen=True)
class Account:
    """A user or a node (robot) account."""

    name: str
    kind: AccountKind
    admin: bool = False
    password_hash: str | None = None
    deployments: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Repository:
    """Access facts about one repository."""

    name: str
    visibility: Visibility
    grants: dict[str, GrantLevel] = field(default_factory=dict)


@dataclass(frozen=True)
class StageEvent:
    """One recorded stage transition of a manifest (usually a bundle index)."""

    repository: str
    digest: str
    stage: str
    deployment: str
    actor: str
    at: float
    evidence: dict[str, Any]


@dataclass(frozen=True)
class Referrer:
    """One entry of the referrers index: ``digest`` refers to ``subject``."""

    repository: str
    subject: str
    digest: str
    media_type: str
    size: int
    artifact_type: str | None
    annotations: dict[str, str] | None

    def descriptor(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = self.annotations
        return out


@dataclass(frozen=True)
class BundleVersion:
    """One row of the catalog index: a tag naming a bundle index, as the web pages show it.

    ``search_text`` is the lowercased text searched by ``q``; ``facets`` the filter
    values (``platform:linux/arm64``, ``license:mit``, ``hardware:gpu`` ...), each
    between ``|`` so that one ``LIKE`` finds one exact value; ``document`` the summary
    (metadata, platforms with digests and sizes, model files) as JSON.
    """

    repository: str
    tag: str
    digest: str
    pushed: float
    search_text: str
    facets: str
    document: str


class StateStore(Protocol):
    """What the gateway keeps outside the registry."""

    # accounts
    def add_account(self, account: Account) -> None: ...
    def get_account(self, name: str) -> Account | None: ...
    def set_password(self, name: str, password_hash: str) -> None: ...
    def add_secret(self, name: str, secret_digest: str, label: str) -> None: ...
    def account_for_secret(self, secret_digest: str) -> Account | None: ...
    def remove_secret(self, secret_digest: str) -> None: ...
    def list_accounts(self) -> list[Account]: ...
    def list_secrets(self, name: str) -> list[tuple[str, str, float]]: ...
    def remove_secrets(self, name: str, label: str | None = None) -> int: ...
    def remove_account(self, name: str) -> bool: ...
    def set_deployments(self, name: str, deployments: Iterable[str]) -> None: ...
    # repositories
    def get_repository(self, name: str) -> Repository | None: ...
    def ensure_repository(self, name: str, visibility: Visibility) -> Repository: ...
    def set_visibility(self, name: str, visibility: Visibility) -> None: ...
    def set_grant(self, name: str, account: str, level: GrantLevel | None) -> None: ...
    def list_repositories(self) -> list[Repository]: ...
    # stages and the content a deployment may pull
    def add_stage_event(self, event: StageEvent) -> None: ...
    def stage_events(self, repository: str, digest: str | None = None) -> list[StageEvent]: ...
    def approve_content(self, repository: str, deployment: str, bundle: str, digests: Iterable[str]) -> None: ...
    def revoke_content(self, repository: str, deployment: str, bundle: str) -> None: ...
    def is_approved(self, repository: str, deployments: Iterable[str], digest: str) -> bool: ...
    def has_approved(self, repository: str, deployments: Iterable[str]) -> bool: ...
    # referrers index
    def add_referrer(self, referrer: Referrer) -> None: ...
    def remove_referrer(self, repository: str, digest: str) -> None: ...
    def referrers(self, repository: str, subject: str) -> list[Referrer]: ...
    def clear_referrers(self) -> None: ...
    # tags written through the gateway (immutability bookkeeping)
    def record_tag(self, repository: str, tag: str, digest: str, actor: str) -> None: ...
    def claim_tag(self, repository: str, tag: str, digest: str, actor: str) -> tuple[str, bool]: ...
    def unclaim_tag(self, repository: str, tag: str, digest: str) -> None: ...
    def tags_for(self, repository: str, digest: str) -> list[str]: ...
    def forget_digest(self, repository: str, digest: str) -> None: ...
    # catalog index (bundle versions by tag; rebuilt from the registry by reindex)
    def put_bundle_version(self, version: BundleVersion) -> None: ...
    def remove_bundle_versions(self, repository: str, *, tag: str | None = None, digest: str | None = None) -> None: ...
    def bundle_versions(self, repository: str) -> list[BundleVersion]: ...
    def find_bundle_versions(self, terms: Sequence[str], facets: Sequence[str], namespace: str | None,
                             repositories: Sequence[str] | None = None) -> list[tuple[str, str, str, float]]: ...
    def newest_bundle_versions(self, terms: Sequence[str], facets: Sequence[str],
                               namespace: str | None) -> list[tuple[str, float]]: ...
    def bundle_versions_at(self, keys: Sequence[tuple[str, str]]) -> list[BundleVersion]: ...
    def catalog_generation(self) -> int: ...
    def catalog_rows(self) -> list[tuple[str, str, str, float, str, str]]: ...
    def all_stage_events(self, repositories: Sequence[str] | None) -> list[StageEvent]: ...
    def clear_bundle_versions(self) -> None: ...
    # nodes' facts and the scheduler feed (ecr_oci.gateway.domain.nodes, ecr_oci.gateway.domain.feed)
    def set_node_facts(self, node: str, facts: dict[str, Any]) -> None: ...
    def node_facts(self, nodes: Sequence[str]) -> dict[str, dict[str, Any]]: ...
    def deployment_nodes(self, deployment: str) -> list[str]: ...
    def approved_bundles(self, deployment: str) -> list[tuple[str, str]]: ...
    def stage_changes(self, deployment: str, after: int) -> tuple[int, list[tuple[str, str]]]: ...
    def approved_referrer_count(self, deployment: str) -> int: ...
    # lifecycle
    def close(self) -> None: ...


# The tables, in SQL both dialects accept; ``{float}`` and ``{serial_pk}`` are the only
# differences (PostgreSQL's REAL is 4 bytes, far too coarse for a Unix time).
# ``size`` is BIGINT for PostgreSQL (blobs pass 2 GiB); SQLite reads it as INTEGER.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
  name TEXT PRIMARY KEY, kind TEXT NOT NULL, admin INTEGER NOT NULL DEFAULT 0,
  password_hash TEXT, created {float} NOT NULL);
CREATE TABLE IF NOT EXISTS secrets (
  digest TEXT PRIMARY KEY, account TEXT NOT NULL REFERENCES accounts(name), label TEXT, created {float} NOT NULL);
CREATE TABLE IF NOT EXISTS node_deployments (
  node TEXT NOT NULL REFERENCES accounts(name), deployment TEXT NOT NULL, PRIMARY KEY (node, deployment));
CREATE TABLE IF NOT EXISTS repositories (
  name TEXT PRIMARY KEY, visibility TEXT NOT NULL, created {float} NOT NULL);
CREATE TABLE IF NOT EXISTS grants (
  repository TEXT NOT NULL, account TEXT NOT NULL, level TEXT NOT NULL, PRIMARY KEY (repository, account));
CREATE TABLE IF NOT EXISTS stage_events (
  id {serial_pk}, repository TEXT NOT NULL, digest TEXT NOT NULL, stage TEXT NOT NULL,
  deployment TEXT NOT NULL, actor TEXT NOT NULL, at {float} NOT NULL, evidence TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS approved_content (
  repository TEXT NOT NULL, deployment TEXT NOT NULL, bundle TEXT NOT NULL, digest TEXT NOT NULL,
  PRIMARY KEY (repository, deployment, bundle, digest));
CREATE INDEX IF NOT EXISTS approved_lookup ON approved_content (repository, digest);
CREATE TABLE IF NOT EXISTS referrers (
  repository TEXT NOT NULL, subject TEXT NOT NULL, digest TEXT NOT NULL, media_type TEXT NOT NULL,
  size BIGINT NOT NULL, artifact_type TEXT, annotations TEXT, PRIMARY KEY (repository, subject, digest));
CREATE TABLE IF NOT EXISTS tags (
  repository TEXT NOT NULL, tag TEXT NOT NULL, digest TEXT NOT NULL, actor TEXT NOT NULL, at {float} NOT NULL,
  PRIMARY KEY (repository, tag));
CREATE TABLE IF NOT EXISTS bundle_versions (
  repository TEXT NOT NULL, tag TEXT NOT NULL, digest TEXT NOT NULL, pushed {float} NOT NULL,
  search_text TEXT NOT NULL, facets TEXT NOT NULL, PRIMARY KEY (repository, tag));
CREATE INDEX IF NOT EXISTS bundle_versions_digest ON bundle_versions (repository, digest);
CREATE INDEX IF NOT EXISTS bundle_versions_newest ON bundle_versions (repository, pushed);
CREATE TABLE IF NOT EXISTS catalog_generation (id INTEGER PRIMARY KEY, value BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS bundle_documents (
  repository TEXT NOT NULL, tag TEXT NOT NULL, document TEXT NOT NULL, PRIMARY KEY (repository, tag));
CREATE TABLE IF NOT EXISTS node_facts (
  node TEXT PRIMARY KEY REFERENCES accounts(name), facts TEXT NOT NULL, updated {float} NOT NULL);
"""

STATE_URL_SCHEMES = ("sqlite", "postgresql", "postgres")


@functools.lru_cache(maxsize=256)
def _format_placeholders(sql: str) -> str:
    """``?`` placeholders as ``%s`` (psycopg); a literal ``%`` doubled so it stays one."""
    return sql.replace("%", "%%").replace("?", "%s")


@dataclass(frozen=True)
class Dialect:
    """What differs between the SQL databases a :class:`SqlStore` runs on.

    The shared queries are written with ``?`` placeholders and contain neither
    ``?`` nor ``%`` otherwise, so converting them is a plain substitution.

    Attributes:
        name: ``sqlite`` or ``postgresql``.
        paramstyle: ``qmark`` (``?``) or ``format`` (``%s``).
        ddl_types: values of the ``{float}`` and ``{serial_pk}`` slots of the schema.
        schema_lock: a statement run first in the schema transaction so that
            gateways starting together do not race to create the same tables.
    """

    name: str
    paramstyle: Literal["qmark", "format"]
    ddl_types: Mapping[str, str]
    schema_lock: str | None = None

    def sql(self, text: str) -> str:
        """A shared query in this dialect's placeholder style."""
        return text if self.paramstyle == "qmark" else _format_placeholders(text)

    def schema(self) -> list[str]:
        """The ``CREATE ... IF NOT EXISTS`` statements, one per item."""
        return [stmt.strip() for stmt in _SCHEMA.format(**self.ddl_types).split(";") if stmt.strip()]


SQLITE = Dialect("sqlite", "qmark", {"float": "REAL", "serial_pk": "INTEGER PRIMARY KEY AUTOINCREMENT"})


class Cursor(Protocol):
    """The DB-API cursor surface a :class:`Session` needs (sqlite3 and psycopg both have it)."""

    def execute(self, sql: str, params: Sequence[Any], /) -> Any: ...
    def executemany(self, sql: str, params: Iterable[Sequence[Any]], /) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Session:
    """One connection's worth of work (a transaction for writes): runs shared SQL in a dialect."""

    def __init__(self, cursor: Cursor, dialect: Dialect) -> None:
        self._cursor = cursor
        self._dialect = dialect

    def execute(self, sql: str, args: Sequence[Any] = ()) -> None:
        self._cursor.execute(self._dialect.sql(sql), tuple(args))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._cursor.executemany(self._dialect.sql(sql), [tuple(r) for r in rows])

    def all(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self._cursor.execute(self._dialect.sql(sql), tuple(args))
        return [tuple(row) for row in self._cursor.fetchall()]


def _like_escaped(text: str) -> str:
    """``text`` as a literal inside a ``LIKE`` pattern (``!`` is the escape character)."""
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def _in_marks(values: Sequence[Any]) -> str:
    """``?, ?, ...`` for an ``IN (...)`` list (non-empty)."""
    return ", ".join("?" * len(values))


class SqlStore:
    """:class:`StateStore` in portable SQL; subclasses supply the dialect and connections.

    Every write is one transaction (:meth:`_session` with ``write=True``); a read that
    needs several queries runs them on one connection. Ordering of names is done in
    Python, because PostgreSQL's default collation would sort text differently from
    SQLite's byte order.
    """

    dialect: Dialect = SQLITE

    def _session(self, write: bool) -> AbstractContextManager[Session]:
        """A session on one connection; with ``write``, inside a transaction committed on exit."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _create_schema(self) -> None:
        with self._session(write=True) as s:
            if self.dialect.schema_lock:
                s.execute(self.dialect.schema_lock)
            for stmt in self.dialect.schema():
                s.execute(stmt)

    def _all(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._session(write=False) as s:
            return s.all(sql, args)

    # --- accounts -----------------------------------------------------------------
    def add_account(self, account: Account) -> None:
        with self._session(write=True) as s:
            s.execute(
                "INSERT INTO accounts (name, kind, admin, password_hash, created) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET admin=excluded.admin,"
                " password_hash=COALESCE(excluded.password_hash, accounts.password_hash)",
                (account.name, account.kind, int(account.admin), account.password_hash, time.time()),
            )
            if account.deployments:
                s.executemany(
                    "INSERT INTO node_deployments (node, deployment) VALUES (?, ?) ON CONFLICT DO NOTHING",
                    [(account.name, d) for d in sorted(account.deployments)],
                )

    @staticmethod
    def _accounts(s: Session, rows: list[tuple[Any, ...]]) -> list[Account]:
        """Accounts from ``(name, kind, admin, password_hash)`` rows, with their deployments."""
        if not rows:
            return []
        if len(rows) == 1:
            deployment_rows = s.all("SELECT node, deployment FROM node_deployments WHERE node=?", (rows[0][0],))
        else:
            deployment_rows = s.all("SELECT node, deployment FROM node_deployments")
        deployments: dict[str, set[str]] = {}
        for node, deployment in deployment_rows:
            deployments.setdefault(node, set()).add(deployment)
        return [
            Account(name=name, kind=kind, admin=bool(admin), password_hash=password_hash,
                    deployments=frozenset(deployments.get(name, ())))
            for name, kind, admin, password_hash in rows
        ]

    def get_account(self, name: str) -> Account | None:
        with self._session(write=False) as s:
            rows = s.all("SELECT name, kind, admin, password_hash FROM accounts WHERE name=?", (name,))
            accounts = self._accounts(s, rows)
        return accounts[0] if accounts else None

    def set_password(self, name: str, password_hash: str) -> None:
        with self._session(write=True) as s:
            s.execute("UPDATE accounts SET password_hash=? WHERE name=?", (password_hash, name))

    def add_secret(self, name: str, secret_digest: str, label: str) -> None:
        with self._session(write=True) as s:
            s.execute(
                "INSERT INTO secrets (digest, account, label, created) VALUES (?, ?, ?, ?)",
                (secret_digest, name, label, time.time()),
            )

    def remove_secret(self, secret_digest: str) -> None:
        with self._session(write=True) as s:
            s.execute("DELETE FROM secrets WHERE digest=?", (secret_digest,))

    def account_for_secret(self, secret_digest: str) -> Account | None:
        with self._session(write=False) as s:
            rows = s.all(
                "SELECT a.name, a.kind, a.admin, a.password_hash FROM secrets s JOIN accounts a ON a.name = s.account"
                " WHERE s.digest=?",
                (secret_digest,),
            )
            accounts = self._accounts(s, rows)
        return accounts[0] if accounts else None

    def list_accounts(self) -> list[Account]:
        with self._session(write=False) as s:
            accounts = self._accounts(s, s.all("SELECT name, kind, admin, password_hash FROM accounts"))
        return sorted(accounts, key=lambda a: a.name)

    def list_secrets(self, name: str) -> list[tuple[str, str, float]]:
        """An account's API tokens / node credentials: (secret digest, label, created), oldest first."""
        rows = self._all("SELECT digest, label, created FROM secrets WHERE account=? ORDER BY created", (name,))
        return [(str(digest), str(label or ""), float(created)) for digest, label, created in rows]

    def remove_secrets(self, name: str, label: str | None = None) -> int:
        """Revoke an account's secrets (only those with ``label`` when given); returns how many."""
        where, args = ("account=? AND label=?", (name, label)) if label is not None else ("account=?", (name,))
        with self._session(write=True) as s:
            count = len(s.all(f"SELECT digest FROM secrets WHERE {where}", args))
            s.execute(f"DELETE FROM secrets WHERE {where}", args)
        return count

    def remove_account(self, name: str) -> bool:
        """Delete an account with its secrets, deployments and grants; False when there was none."""
        with self._session(write=True) as s:
            if not s.all("SELECT name FROM accounts WHERE name=?", (name,)):
                return False
            s.execute("DELETE FROM secrets WHERE account=?", (name,))
            s.execute("DELETE FROM node_deployments WHERE node=?", (name,))
            s.execute("DELETE FROM grants WHERE account=?", (name,))
            s.execute("DELETE FROM accounts WHERE name=?", (name,))
        return True

    def set_deployments(self, name: str, deployments: Iterable[str]) -> None:
        """Replace a node's deployments."""
        with self._session(write=True) as s:
            s.execute("DELETE FROM node_deployments WHERE node=?", (name,))
            s.executemany("INSERT INTO node_deployments (node, deployment) VALUES (?, ?)",
                          [(name, d) for d in sorted(set(deployments))])

    # --- repositories -------------------------------------------------------------
    def get_repository(self, name: str) -> Repository | None:
        with self._session(write=False) as s:
            rows = s.all("SELECT visibility FROM repositories WHERE name=?", (name,))
            if not rows:
                return None
            grants = dict(s.all("SELECT account, level FROM grants WHERE repository=?", (name,)))
        return Repository(name=name, visibility=rows[0][0], grants=grants)

    def ensure_repository(self, name: str, visibility: Visibility) -> Repository:
        with self._session(write=True) as s:
            s.execute(
                "INSERT INTO repositories (name, visibility, created) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING",
                (name, visibility, time.time()),
            )
        repo = self.get_repository(name)
        assert repo is not None
        return repo

    def set_visibility(self, name: str, visibility: Visibility) -> None:
        with self._session(write=True) as s:
            s.execute(
                "INSERT INTO repositories (name, visibility, created) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET visibility=excluded.visibility",
                (name, visibility, time.time()),
            )

    def set_grant(self, name: str, account: str, level: GrantLevel | None) -> None:
        with self._session(write=True) as s:
            if level is None:
                s.execute("DELETE FROM grants WHERE repository=? AND account=?", (name, account))
            else:
                s.execute(
                    "INSERT INTO grants (repository, account, level) VALUES (?, ?, ?)"
                    " ON CONFLICT (repository, account) DO UPDATE SET level=excluded.level",
                    (name, account, level),
                )

    def list_repositories(self) -> list[Repository]:
        with self._session(write=False) as s:
            repos = s.all("SELECT name, visibility FROM repositories")
            grants: dict[str, dict[str, GrantLevel]] = {}
            for repository, account, level in s.all("SELECT repository, account, level FROM grants"):
                grants.setdefault(repository, {})[account] = level
        return [Repository(name=n, visibility=v, grants=grants.get(n, {})) for n, v in sorted(repos)]

    # --- stages -------------------------------------------------------------------
    def add_stage_event(self, event: StageEvent) -> None:
        with self._session(write=True) as s:
            s.execute(
                "INSERT INTO stage_events (repository, digest, stage, deployment, actor, at, evidence)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (event.repository, event.digest, event.stage, event.deployment, event.actor, event.at,
                 json.dumps(event.evidence, sort_keys=True)),
            )

    def stage_events(self, repository: str, digest: str | None = None) -> list[StageEvent]:
        sql = "SELECT repository, digest, stage, deployment, actor, at, evidence FROM stage_events WHERE repository=?"
        args: tuple[Any, ...] = (repository,)
        if digest:
            sql += " AND digest=?"
            args += (digest,)
        rows = self._all(sql + " ORDER BY id", args)
        return [StageEvent(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows]

    def approve_content(self, repository: str, deployment: str, bundle: str, digests: Iterable[str]) -> None:
        with self._session(write=True) as s:
            s.executemany(
                "INSERT INTO approved_content (repository, deployment, bundle, digest) VALUES (?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                [(repository, deployment, bundle, d) for d in sorted({bundle, *digests})],
            )

    def revoke_content(self, repository: str, deployment: str, bundle: str) -> None:
        with self._session(write=True) as s:
            s.execute(
                "DELETE FROM approved_content WHERE repository=? AND deployment=? AND bundle=?",
                (repository, deployment, bundle),
            )

    def is_approved(self, repository: str, deployments: Iterable[str], digest: str) -> bool:
        deps = sorted(deployments)
        if not deps:
            return False
        rows = self._all(
            "SELECT 1 FROM approved_content WHERE repository=? AND digest=?"
            f" AND deployment IN ({_in_marks(deps)}) LIMIT 1",
            (repository, digest, *deps),
        )
        return bool(rows)

    def has_approved(self, repository: str, deployments: Iterable[str]) -> bool:
        deps = sorted(deployments)
        if not deps:
            return False
        rows = self._all(
            f"SELECT 1 FROM approved_content WHERE repository=? AND deployment IN ({_in_marks(deps)}) LIMIT 1",
            (repository, *deps),
        )
        return bool(rows)

    # --- referrers ----------------------------------------------------------------
    def add_referrer(self, referrer: Referrer) -> None:
        with self._session(write=True) as s:
            s.execute(
                "INSERT INTO referrers (repository, subject, digest, media_type, size, artifact_type, annotations)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (repository, subject, digest) DO UPDATE SET"
                " media_type=excluded.media_type, size=excluded.size, artifact_type=excluded.artifact_type,"
                " annotations=excluded.annotations",
                (referrer.repository, referrer.subject, referrer.digest, referrer.media_type, referrer.size,
                 referrer.artifact_type, json.dumps(referrer.annotations) if referrer.annotations else None),
            )

    def remove_referrer(self, repository: str, digest: str) -> None:
        with self._session(write=True) as s:
            s.execute("DELETE FROM referrers WHERE repository=? AND digest=?", (repository, digest))

    def referrers(self, repository: str, subject: str) -> list[Referrer]:
        rows = self._all(
            "SELECT repository, subject, digest, media_type, size, artifact_type, annotations FROM referrers"
            " WHERE repository=? AND subject=?",
            (repository, subject),
        )
        out = [Referrer(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]) if r[6] else None) for r in rows]
        return sorted(out, key=lambda r: r.digest)

    def clear_referrers(self) -> None:
        with self._session(write=True) as s:
            s.execute("DELETE FROM referrers")

    # --- tags ---------------------------------------------------------------------
    def record_tag(self, repository: str, tag: str, digest: str, actor: str) -> None:
        with self._session(write=True) as s:
            s.execute(
                "INSERT INTO tags (repository, tag, digest, actor, at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (repository, tag) DO UPDATE SET"
                " digest=excluded.digest, actor=excluded.actor, at=excluded.at",
                (repository, tag, digest, actor, time.time()),
            )

    def claim_tag(self, repository: str, tag: str, digest: str, actor: str) -> tuple[str, bool]:
        """Atomically bind a new tag to ``digest`` unless it is bound already.

        Returns the digest the tag is bound to (the first writer's) and whether this call
        bound it. Several gateways sharing PostgreSQL get one winner too.
        """
        query = "SELECT digest FROM tags WHERE repository=? AND tag=?"
        with self._session(write=True) as s:
            before = s.all(query, (repository, tag))
            s.execute(
                "INSERT INTO tags (repository, tag, digest, actor, at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (repository, tag) DO NOTHING",
                (repository, tag, digest, actor, time.time()),
            )
            bound = str(s.all(query, (repository, tag))[0][0])
        return bound, not before and bound == digest

    def unclaim_tag(self, repository: str, tag: str, digest: str) -> None:
        """Undo :meth:`claim_tag` when the registry did not store the manifest after all."""
        with self._session(write=True) as s:
            s.execute("DELETE FROM tags WHERE repository=? AND tag=? AND digest=?", (repository, tag, digest))

    def tags_for(self, repository: str, digest: str) -> list[str]:
        return sorted(t for (t,) in self._all("SELECT tag FROM tags WHERE repository=? AND digest=?",
                                                (repository, digest)))

    def forget_digest(self, repository: str, digest: str) -> None:
        with self._session(write=True) as s:
            s.execute("DELETE FROM tags WHERE repository=? AND digest=?", (repository, digest))

    # --- nodes' facts and the scheduler feed ----------------------------------------
    def set_node_facts(self, node: str, facts: dict[str, Any]) -> None:
        with self._session(write=True) as s:
            s.execute(
                "INSERT INTO node_facts (node, facts, updated) VALUES (?, ?, ?)"
                " ON CONFLICT (node) DO UPDATE SET facts=excluded.facts, updated=excluded.updated",
                (node, json.dumps(facts, sort_keys=True), time.time()),
            )

    def node_facts(self, nodes: Sequence[str]) -> dict[str, dict[str, Any]]:
        if not nodes:
            return {}
        rows = self._all(f"SELECT node, facts FROM node_facts WHERE node IN ({_in_marks(nodes)})", tuple(nodes))
        return {node: json.loads(facts) for node, facts in rows}

    def deployment_nodes(self, deployment: str) -> list[str]:
        rows = self._all("SELECT node FROM node_deployments WHERE deployment=?", (deployment,))
        return sorted(node for (node,) in rows)

    def approved_bundles(self, deployment: str) -> list[tuple[str, str]]:
        rows = self._all("SELECT DISTINCT repository, bundle FROM approved_content WHERE deployment=?",
                         (deployment,))
        return sorted((repository, bundle) for repository, bundle in rows)

    def approved_referrer_count(self, deployment: str) -> int:
        """How many referrers (profiles, signatures ...) the bundles approved for ``deployment`` have."""
        rows = self._all(
            "SELECT COUNT(*) FROM referrers r JOIN (SELECT DISTINCT repository, bundle FROM approved_content"
            " WHERE deployment=?) a ON r.repository = a.repository AND r.subject = a.bundle",
            (deployment,),
        )
        return int(rows[0][0])

    def stage_changes(self, deployment: str, after: int) -> tuple[int, list[tuple[str, str]]]:
        """Stage events for ``deployment`` (or for all deployments) after event id ``after``:
        the newest such id (``after`` when there is none) and the (repository, digest)
        pairs they concern."""
        rows = self._all(
            "SELECT id, repository, digest FROM stage_events WHERE id > ? AND (deployment = ? OR deployment = '')",
            (after, deployment),
        )
        newest = max((int(r[0]) for r in rows), default=after)
        return newest, sorted({(r[1], r[2]) for r in rows})


    # --- catalog index ------------------------------------------------------------
    # Searched columns and documents live in two tables, so a search scans short rows.
    _VERSION_COLUMNS = "v.repository, v.tag, v.digest, v.pushed, v.search_text, v.facets, d.document"
    _VERSION_JOIN = "bundle_versions v JOIN bundle_documents d ON d.repository = v.repository AND d.tag = v.tag"

    _BUMP = ("INSERT INTO catalog_generation (id, value) VALUES (1, 1)"
             " ON CONFLICT (id) DO UPDATE SET value = catalog_generation.value + 1")

    def catalog_generation(self) -> int:
        """A number that changes with every write to the catalog index (readers cache by it)."""
        rows = self._all("SELECT value FROM catalog_generation WHERE id = 1")
        return int(rows[0][0]) if rows else 0

    def catalog_rows(self) -> list[tuple[str, str, str, float, str, str]]:
        """Every version's (repository, tag, digest, pushed, search_text, facets), for an in-memory copy."""
        rows = self._all("SELECT repository, tag, digest, pushed, search_text, facets FROM bundle_versions")
        return [(r[0], r[1], r[2], float(r[3]), r[4], r[5]) for r in rows]

    def put_bundle_version(self, version: BundleVersion) -> None:
        with self._session(write=True) as s:
            s.execute(self._BUMP)
            s.execute(
                "INSERT INTO bundle_versions (repository, tag, digest, pushed, search_text, facets)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (repository, tag) DO UPDATE SET digest=excluded.digest,"
                " pushed=excluded.pushed, search_text=excluded.search_text, facets=excluded.facets",
                (version.repository, version.tag, version.digest, version.pushed, version.search_text,
                 version.facets),
            )
            s.execute(
                "INSERT INTO bundle_documents (repository, tag, document) VALUES (?, ?, ?)"
                " ON CONFLICT (repository, tag) DO UPDATE SET document=excluded.document",
                (version.repository, version.tag, version.document),
            )

    def remove_bundle_versions(self, repository: str, *, tag: str | None = None, digest: str | None = None) -> None:
        with self._session(write=True) as s:
            s.execute(self._BUMP)
            if tag is not None:
                s.execute("DELETE FROM bundle_versions WHERE repository=? AND tag=?", (repository, tag))
                s.execute("DELETE FROM bundle_documents WHERE repository=? AND tag=?", (repository, tag))
            if digest is not None:
                s.execute("DELETE FROM bundle_documents WHERE repository=? AND tag IN"
                          " (SELECT tag FROM bundle_versions WHERE repository=? AND digest=?)",
                          (repository, repository, digest))
                s.execute("DELETE FROM bundle_versions WHERE repository=? AND digest=?", (repository, digest))

    def bundle_versions(self, repository: str) -> list[BundleVersion]:
        rows = self._all(f"SELECT {self._VERSION_COLUMNS} FROM {self._VERSION_JOIN} WHERE v.repository=?",
                         (repository,))
        return sorted((BundleVersion(*r) for r in rows), key=lambda v: (v.pushed, v.tag), reverse=True)

    @staticmethod
    def _version_filter(terms: Sequence[str], facets: Sequence[str], namespace: str | None,
                        repositories: Sequence[str] | None = None) -> tuple[str, list[Any]]:
        sql = " WHERE 1=1"
        args: list[Any] = []
        for term in terms:
            sql += " AND search_text LIKE ? ESCAPE '!'"
            args.append(f"%{_like_escaped(term)}%")
        for facet in facets:
            sql += " AND facets LIKE ? ESCAPE '!'"
            args.append(f"%|{_like_escaped(facet)}|%")
        if namespace:
            sql += " AND (repository = ? OR substr(repository, 1, ?) = ?)"
            args += [namespace, len(namespace) + 1, namespace + "/"]
        if repositories is not None:
            sql += f" AND repository IN ({_in_marks(repositories) or 'NULL'})"
            args += list(repositories)
        return sql, args

    def find_bundle_versions(self, terms: Sequence[str], facets: Sequence[str], namespace: str | None,
                             repositories: Sequence[str] | None = None) -> list[tuple[str, str, str, float]]:
        """(repository, tag, digest, pushed) of versions whose text holds every term and
        that have every facet (optionally only of ``repositories``); the caller filters by policy."""
        where, args = self._version_filter(terms, facets, namespace, repositories)
        rows = self._all("SELECT repository, tag, digest, pushed FROM bundle_versions" + where, args)
        return [(r[0], r[1], r[2], float(r[3])) for r in rows]

    def newest_bundle_versions(self, terms: Sequence[str], facets: Sequence[str],
                               namespace: str | None) -> list[tuple[str, float]]:
        """(repository, newest push time) of repositories with a version matching as in
        :meth:`find_bundle_versions`: one row per repository, however many versions."""
        where, args = self._version_filter(terms, facets, namespace)
        rows = self._all(f"SELECT repository, MAX(pushed) FROM bundle_versions{where} GROUP BY repository", args)
        return [(r[0], float(r[1])) for r in rows]

    def bundle_versions_at(self, keys: Sequence[tuple[str, str]]) -> list[BundleVersion]:
        if not keys:
            return []
        where = " OR ".join("(v.repository=? AND v.tag=?)" for _ in keys)
        rows = self._all(f"SELECT {self._VERSION_COLUMNS} FROM {self._VERSION_JOIN} WHERE {where}",
                         [x for key in keys for x in key])
        return [BundleVersion(*r) for r in rows]

    def all_stage_events(self, repositories: Sequence[str] | None) -> list[StageEvent]:
        """The stage events of ``repositories`` (None: of every repository), in order."""
        sql = "SELECT repository, digest, stage, deployment, actor, at, evidence FROM stage_events"
        if repositories is not None:
            if not repositories:
                return []
            sql += f" WHERE repository IN ({_in_marks(repositories)})"
        rows = self._all(sql + " ORDER BY id", list(repositories or []))
        return [StageEvent(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows]

    def clear_bundle_versions(self) -> None:
        with self._session(write=True) as s:
            s.execute(self._BUMP)
            s.execute("DELETE FROM bundle_versions")
            s.execute("DELETE FROM bundle_documents")


class SqliteStore(SqlStore):
    """:class:`StateStore` on one SQLite file (WAL, so readers never wait for a writer).

    Args:
        path: the database file (created with its tables when missing).
    """

    dialect = SQLITE

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))  # owner-only whatever the umask
        # One connection shared by the event loop and worker threads, serialised by a
        # lock: every call is a few milliseconds, less than a pool would cost.
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE below).
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._lock = threading.Lock()
        self._create_schema()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _session(self, write: bool) -> Iterator[Session]:
        with self._lock:
            cursor = self._db.cursor()
            try:
                if not write:
                    yield Session(cursor, self.dialect)
                    return
                # IMMEDIATE takes the write lock up front: another process writing the
                # same file makes us wait (busy timeout) instead of failing mid-way.
                cursor.execute("BEGIN IMMEDIATE")
                try:
                    yield Session(cursor, self.dialect)
                except BaseException:
                    cursor.execute("ROLLBACK")
                    raise
                cursor.execute("COMMIT")
            finally:
                cursor.close()


def open_store(data_dir: Path, url: str | None = None) -> StateStore:
    """The state store a gateway uses.

    Args:
        data_dir: the gateway's data directory (the SQLite default is ``state.db`` there).
        url: None or empty for that default; ``sqlite:///ABS/PATH`` for another SQLite
            file; ``postgresql://USER@HOST:PORT/DB`` (libpq URL or ``PG*`` variables for
            the rest, e.g. ``PGPASSWORD``) for a store shared by several gateways.

    Raises:
        ValueError: an unknown URL scheme.
        RuntimeError: PostgreSQL support is not installed or the server cannot be reached.
    """
    if not url:
        return SqliteStore(data_dir / "state.db")
    scheme, sep, rest = url.partition(":")
    scheme = scheme.lower()
    if not sep or scheme not in STATE_URL_SCHEMES:
        raise ValueError(f"unsupported state store URL (want postgresql://... or sqlite:///...): {scheme}:...")
    if scheme == "sqlite":
        path = rest[2:] if rest.startswith("//") else rest
        if not path:
            raise ValueError("sqlite: URL without a path")
        return SqliteStore(Path(path))
    try:
        from ecr_oci.gateway.stores.state_pg import PostgresStore
    except ImportError as exc:
        raise RuntimeError(
            f"the PostgreSQL state store needs psycopg: pip install 'psycopg[binary,pool]' ({exc})"
        ) from None
    return PostgresStore(url)


class StateUnavailable(Exception):
    """The state store cannot be reached right now (a database restart, a failover).

    Requests that need it are answered 503 with ``Retry-After``; the store reconnects by
    itself when the server is back, so no gateway restart is needed.
    """
