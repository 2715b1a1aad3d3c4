"""The gateway's state behind one small interface.

Gateway processes are stateless apart from this store, so several can run behind a
load balancer once the store is shared. :class:`StateStore` is the interface;
:class:`SqliteStore` (stdlib sqlite3, WAL) is the embedded default. Every method is a
short transaction in plain SQL a PostgreSQL implementation can mirror (the only
dialect-specific bits are ``INSERT ... ON CONFLICT`` upserts, which PostgreSQL shares).

What lives here is access state (accounts, visibility, grants), audit records and an
index. Bundle content is only ever in the registry: the referrers index can be
rebuilt from it (``ecr admin reindex``).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
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


class StateStore(Protocol):
    """What the gateway keeps outside the registry."""

    # accounts
    def add_account(self, account: Account) -> None: ...
    def get_account(self, name: str) -> Account | None: ...
    def set_password(self, name: str, password_hash: str) -> None: ...
    def add_secret(self, name: str, secret_digest: str, label: str) -> None: ...
    def account_for_secret(self, secret_digest: str) -> Account | None: ...
    def list_accounts(self) -> list[Account]: ...
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
    def tags_for(self, repository: str, digest: str) -> list[str]: ...
    def forget_digest(self, repository: str, digest: str) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
  name TEXT PRIMARY KEY, kind TEXT NOT NULL, admin INTEGER NOT NULL DEFAULT 0,
  password_hash TEXT, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS secrets (
  digest TEXT PRIMARY KEY, account TEXT NOT NULL REFERENCES accounts(name), label TEXT, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS node_deployments (
  node TEXT NOT NULL REFERENCES accounts(name), deployment TEXT NOT NULL, PRIMARY KEY (node, deployment));
CREATE TABLE IF NOT EXISTS repositories (
  name TEXT PRIMARY KEY, visibility TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS grants (
  repository TEXT NOT NULL, account TEXT NOT NULL, level TEXT NOT NULL, PRIMARY KEY (repository, account));
CREATE TABLE IF NOT EXISTS stage_events (
  id INTEGER PRIMARY KEY AUTOINCREMENT, repository TEXT NOT NULL, digest TEXT NOT NULL, stage TEXT NOT NULL,
  deployment TEXT NOT NULL, actor TEXT NOT NULL, at REAL NOT NULL, evidence TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS approved_content (
  repository TEXT NOT NULL, deployment TEXT NOT NULL, bundle TEXT NOT NULL, digest TEXT NOT NULL,
  PRIMARY KEY (repository, deployment, bundle, digest));
CREATE INDEX IF NOT EXISTS approved_lookup ON approved_content (repository, digest);
CREATE TABLE IF NOT EXISTS referrers (
  repository TEXT NOT NULL, subject TEXT NOT NULL, digest TEXT NOT NULL, media_type TEXT NOT NULL,
  size INTEGER NOT NULL, artifact_type TEXT, annotations TEXT, PRIMARY KEY (repository, subject, digest));
CREATE TABLE IF NOT EXISTS tags (
  repository TEXT NOT NULL, tag TEXT NOT NULL, digest TEXT NOT NULL, actor TEXT NOT NULL, at REAL NOT NULL,
  PRIMARY KEY (repository, tag));
"""


class SqliteStore:
    """:class:`StateStore` on one SQLite file (WAL, so readers never wait for a writer).

    Args:
        path: the database file (created with its tables when missing).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        # One connection shared by the event loop and worker threads, serialised by a
        # lock: every call is a few milliseconds, less than a pool would cost.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._lock = threading.Lock()
        # executescript manages its own transaction (it commits first).
        with self._lock:
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._db.execute(sql, args).fetchall())

    # --- accounts -----------------------------------------------------------------
    def add_account(self, account: Account) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO accounts (name, kind, admin, password_hash, created) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(name) DO UPDATE SET admin=excluded.admin,"
                " password_hash=COALESCE(excluded.password_hash, accounts.password_hash)",
                (account.name, account.kind, int(account.admin), account.password_hash, time.time()),
            )
            for deployment in account.deployments:
                db.execute("INSERT OR IGNORE INTO node_deployments VALUES (?, ?)", (account.name, deployment))

    def _account(self, row: tuple[Any, ...]) -> Account:
        name, kind, admin, password_hash = row
        rows = self._all("SELECT deployment FROM node_deployments WHERE node=?", (name,))
        deployments = frozenset(d for (d,) in rows)
        return Account(name=name, kind=kind, admin=bool(admin), password_hash=password_hash, deployments=deployments)

    def get_account(self, name: str) -> Account | None:
        rows = self._all("SELECT name, kind, admin, password_hash FROM accounts WHERE name=?", (name,))
        return self._account(rows[0]) if rows else None

    def set_password(self, name: str, password_hash: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE accounts SET password_hash=? WHERE name=?", (password_hash, name))

    def add_secret(self, name: str, secret_digest: str, label: str) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO secrets VALUES (?, ?, ?, ?)", (secret_digest, name, label, time.time()))

    def account_for_secret(self, secret_digest: str) -> Account | None:
        rows = self._all(
            "SELECT a.name, a.kind, a.admin, a.password_hash FROM secrets s JOIN accounts a ON a.name = s.account"
            " WHERE s.digest=?",
            (secret_digest,),
        )
        return self._account(rows[0]) if rows else None

    def list_accounts(self) -> list[Account]:
        rows = self._all("SELECT name, kind, admin, password_hash FROM accounts ORDER BY name")
        return [self._account(r) for r in rows]

    # --- repositories -------------------------------------------------------------
    def get_repository(self, name: str) -> Repository | None:
        rows = self._all("SELECT visibility FROM repositories WHERE name=?", (name,))
        if not rows:
            return None
        grants = {a: lvl for a, lvl in self._all("SELECT account, level FROM grants WHERE repository=?", (name,))}
        return Repository(name=name, visibility=rows[0][0], grants=grants)

    def ensure_repository(self, name: str, visibility: Visibility) -> Repository:
        with self._tx() as db:
            db.execute("INSERT OR IGNORE INTO repositories VALUES (?, ?, ?)", (name, visibility, time.time()))
        repo = self.get_repository(name)
        assert repo is not None
        return repo

    def set_visibility(self, name: str, visibility: Visibility) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO repositories VALUES (?, ?, ?)"
                " ON CONFLICT(name) DO UPDATE SET visibility=excluded.visibility",
                (name, visibility, time.time()),
            )

    def set_grant(self, name: str, account: str, level: GrantLevel | None) -> None:
        with self._tx() as db:
            if level is None:
                db.execute("DELETE FROM grants WHERE repository=? AND account=?", (name, account))
            else:
                db.execute(
                    "INSERT INTO grants VALUES (?, ?, ?)"
                    " ON CONFLICT(repository, account) DO UPDATE SET level=excluded.level",
                    (name, account, level),
                )

    def list_repositories(self) -> list[Repository]:
        names = [n for (n,) in self._all("SELECT name FROM repositories ORDER BY name")]
        return [r for n in names if (r := self.get_repository(n))]

    # --- stages -------------------------------------------------------------------
    def add_stage_event(self, event: StageEvent) -> None:
        with self._tx() as db:
            db.execute(
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
        with self._tx() as db:
            db.executemany(
                "INSERT OR IGNORE INTO approved_content VALUES (?, ?, ?, ?)",
                [(repository, deployment, bundle, d) for d in {bundle, *digests}],
            )

    def revoke_content(self, repository: str, deployment: str, bundle: str) -> None:
        with self._tx() as db:
            db.execute(
                "DELETE FROM approved_content WHERE repository=? AND deployment=? AND bundle=?",
                (repository, deployment, bundle),
            )

    def is_approved(self, repository: str, deployments: Iterable[str], digest: str) -> bool:
        deps = sorted(deployments)
        if not deps:
            return False
        marks = ",".join("?" * len(deps))
        rows = self._all(
            f"SELECT 1 FROM approved_content WHERE repository=? AND digest=? AND deployment IN ({marks}) LIMIT 1",
            (repository, digest, *deps),
        )
        return bool(rows)

    def has_approved(self, repository: str, deployments: Iterable[str]) -> bool:
        deps = sorted(deployments)
        if not deps:
            return False
        marks = ",".join("?" * len(deps))
        rows = self._all(
            f"SELECT 1 FROM approved_content WHERE repository=? AND deployment IN ({marks}) LIMIT 1",
            (repository, *deps),
        )
        return bool(rows)

    # --- referrers ----------------------------------------------------------------
    def add_referrer(self, referrer: Referrer) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO referrers VALUES (?, ?, ?, ?, ?, ?, ?)",
                (referrer.repository, referrer.subject, referrer.digest, referrer.media_type, referrer.size,
                 referrer.artifact_type, json.dumps(referrer.annotations) if referrer.annotations else None),
            )

    def remove_referrer(self, repository: str, digest: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM referrers WHERE repository=? AND digest=?", (repository, digest))

    def referrers(self, repository: str, subject: str) -> list[Referrer]:
        rows = self._all(
            "SELECT repository, subject, digest, media_type, size, artifact_type, annotations FROM referrers"
            " WHERE repository=? AND subject=? ORDER BY digest",
            (repository, subject),
        )
        return [Referrer(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]) if r[6] else None) for r in rows]

    def clear_referrers(self) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM referrers")

    # --- tags ---------------------------------------------------------------------
    def record_tag(self, repository: str, tag: str, digest: str, actor: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO tags VALUES (?, ?, ?, ?, ?) ON CONFLICT(repository, tag) DO UPDATE SET"
                " digest=excluded.digest, actor=excluded.actor, at=excluded.at",
                (repository, tag, digest, actor, time.time()),
            )

    def tags_for(self, repository: str, digest: str) -> list[str]:
        return [t for (t,) in self._all("SELECT tag FROM tags WHERE repository=? AND digest=?", (repository, digest))]

    def forget_digest(self, repository: str, digest: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM tags WHERE repository=? AND digest=?", (repository, digest))
