"""The StateStore contract, run against SQLite and a real PostgreSQL: same queries, same answers."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ecr_oci.gateway.stores.state import (
    Account,
    Referrer,
    SqliteStore,
    SqlStore,
    StageEvent,
    StateStore,
    open_store,
)
from tests.gateway.pgserver import PSYCOPG_HINT, PostgresServer
from tests.support import free_port

_databases = itertools.count()
Opener = Callable[[], SqlStore]


def postgres_store(url: str) -> SqlStore:
    """A PostgresStore (imported here: without psycopg these tests fail with a hint, the rest run)."""
    try:
        from ecr_oci.gateway.stores.state_pg import PostgresStore
    except ImportError:
        pytest.fail(PSYCOPG_HINT)
    return PostgresStore(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens (and reopens) one fresh store of the parametrised kind; all are closed after the test."""
    if request.param == "sqlite":
        def make() -> SqlStore:
            return SqliteStore(tmp_path / "state.db")
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        url = server.create_database(f"contract_{next(_databases)}")

        def make() -> SqlStore:
            return postgres_store(url)

    opened: list[SqlStore] = []

    def tracked() -> SqlStore:
        opened.append(make())
        return opened[-1]

    yield tracked
    for store in opened:
        store.close()


@pytest.fixture
def store(opener: Opener) -> SqlStore:
    return opener()


def test_accounts(store: SqlStore) -> None:
    assert store.get_account("alice") is None
    assert store.list_accounts() == []
    store.add_account(Account("alice", "user", password_hash="h1"))
    store.add_account(Account("Zed", "user", admin=True, password_hash="hz"))
    store.add_account(Account("node-1", "node", deployments=frozenset({"neon", "matrix"})))
    assert store.get_account("alice") == Account("alice", "user", admin=False, password_hash="h1")
    # byte order, whatever the database's collation ("Zed" before "alice")
    assert [a.name for a in store.list_accounts()] == ["Zed", "alice", "node-1"]
    assert store.list_accounts()[2].deployments == frozenset({"neon", "matrix"})
    # re-adding updates admin, keeps the hash when none is given, adds deployments
    store.add_account(Account("alice", "user", admin=True))
    assert store.get_account("alice") == Account("alice", "user", admin=True, password_hash="h1")
    store.add_account(Account("node-1", "node", deployments=frozenset({"neon", "edge"})))
    node = store.get_account("node-1")
    assert node is not None and node.deployments == frozenset({"neon", "matrix", "edge"})
    store.set_password("alice", "h2")
    alice = store.get_account("alice")
    assert alice is not None and alice.password_hash == "h2"


def test_secrets(store: SqlStore) -> None:
    store.add_account(Account("node-1", "node", deployments=frozenset({"neon"})))
    store.add_secret("node-1", "sha256:s1", "node credential")
    store.add_secret("node-1", "sha256:s2", "second")
    found = store.account_for_secret("sha256:s2")
    assert found is not None and found.name == "node-1" and found.deployments == frozenset({"neon"})
    assert store.account_for_secret("sha256:nope") is None
    # a secret for nobody violates the foreign key: refused, and the store stays usable
    with pytest.raises(Exception, match=r"(?i)foreign key"):
        store.add_secret("ghost", "sha256:s3", "")
    assert store.account_for_secret("sha256:s3") is None
    assert store.account_for_secret("sha256:s1") is not None


def test_repositories_and_grants(store: SqlStore) -> None:
    assert store.get_repository("alice/a") is None
    repo = store.ensure_repository("alice/a", "protected")
    assert (repo.name, repo.visibility, repo.grants) == ("alice/a", "protected", {})
    # ensure never changes an existing record
    assert store.ensure_repository("alice/a", "public").visibility == "protected"
    store.set_visibility("alice/a", "private")
    store.set_visibility("bob/new", "public")  # creates the record
    store.set_grant("alice/a", "bob", "read")
    store.set_grant("alice/a", "bob", "write")
    store.set_grant("alice/a", "carol", "admin")
    store.set_grant("bob/new", "alice", "read")
    repo_a = store.get_repository("alice/a")
    assert repo_a is not None and repo_a.visibility == "private"
    assert repo_a.grants == {"bob": "write", "carol": "admin"}
    store.set_grant("alice/a", "carol", None)
    store.set_grant("alice/a", "nobody", None)  # revoking what is not there is fine
    listed = store.list_repositories()
    assert [(r.name, r.visibility, r.grants) for r in listed] == [
        ("alice/a", "private", {"bob": "write"}),
        ("bob/new", "public", {"alice": "read"}),
    ]


def test_stage_events(store: SqlStore) -> None:
    at = 1764086400.123456  # microseconds survive (PostgreSQL REAL would keep ~2 minutes)
    events = [
        StageEvent("alice/a", "sha256:1", "testing", "neon", "alice", at, {"profile": "sha256:p", "n": 1}),
        StageEvent("alice/a", "sha256:2", "testing", "", "alice", at + 1, {}),
        StageEvent("alice/a", "sha256:1", "approved", "neon", "admin", at + 2, {"nested": {"ok": True}}),
        StageEvent("alice/b", "sha256:1", "testing", "neon", "alice", at + 3, {}),
    ]
    for event in events:
        store.add_stage_event(event)
    assert store.stage_events("alice/a") == events[:3]  # in insertion order
    assert store.stage_events("alice/a", "sha256:1") == [events[0], events[2]]
    assert store.stage_events("alice/a", None) == events[:3]
    assert store.stage_events("nobody/x") == []


def test_approved_content(store: SqlStore) -> None:
    store.approve_content("alice/a", "neon", "sha256:idx", ["sha256:m1", "sha256:blob", "sha256:m1"])
    store.approve_content("alice/a", "neon", "sha256:idx", ["sha256:m1"])  # again: no duplicates, no error
    store.approve_content("alice/a", "matrix", "sha256:idx2", [])
    assert store.is_approved("alice/a", {"neon"}, "sha256:idx")  # the bundle itself
    assert store.is_approved("alice/a", ["elsewhere", "neon"], "sha256:blob")
    assert not store.is_approved("alice/a", {"elsewhere"}, "sha256:blob")
    assert not store.is_approved("alice/a", set(), "sha256:blob")
    assert not store.is_approved("alice/b", {"neon"}, "sha256:blob")
    assert store.has_approved("alice/a", {"matrix"})
    assert not store.has_approved("alice/a", set())
    assert not store.has_approved("alice/b", {"neon", "matrix"})
    store.revoke_content("alice/a", "neon", "sha256:idx")
    assert not store.is_approved("alice/a", {"neon"}, "sha256:blob")
    assert not store.has_approved("alice/a", {"neon"})
    assert store.is_approved("alice/a", {"matrix"}, "sha256:idx2")


def test_referrers(store: SqlStore) -> None:
    big = 5 << 30  # past 32 bits: a BIGINT in PostgreSQL
    sig = Referrer("alice/a", "sha256:subj", "sha256:bb", "application/vnd.oci.image.manifest.v1+json", 10,
                   "application/vnd.dev.cosign.simplesigning.v1+json", None)
    profile = Referrer("alice/a", "sha256:subj", "sha256:aa", "application/vnd.oci.image.manifest.v1+json", big,
                       "application/vnd.ecr.profile", {"org.example": "x"})
    other = Referrer("alice/a", "sha256:other", "sha256:cc", "application/vnd.oci.image.manifest.v1+json", 1,
                     None, None)
    for referrer in (sig, profile, other):
        store.add_referrer(referrer)
    assert store.referrers("alice/a", "sha256:subj") == [profile, sig]  # by digest
    # re-adding replaces the entry
    changed = Referrer(sig.repository, sig.subject, sig.digest, sig.media_type, 11, None, {"k": "v"})
    store.add_referrer(changed)
    assert store.referrers("alice/a", "sha256:subj") == [profile, changed]
    assert changed.descriptor() == {"mediaType": sig.media_type, "digest": "sha256:bb", "size": 11,
                                    "annotations": {"k": "v"}}
    store.remove_referrer("alice/a", "sha256:aa")
    assert store.referrers("alice/a", "sha256:subj") == [changed]
    assert store.referrers("alice/b", "sha256:subj") == []
    store.clear_referrers()
    assert store.referrers("alice/a", "sha256:subj") == []
    assert store.referrers("alice/a", "sha256:other") == []


def test_tags(store: SqlStore) -> None:
    store.record_tag("alice/a", "1.0.0", "sha256:1", "alice")
    store.record_tag("alice/a", "latest", "sha256:1", "alice")
    store.record_tag("alice/a", "0.9.0", "sha256:1", "alice")
    store.record_tag("alice/b", "1.0.0", "sha256:1", "alice")
    assert store.tags_for("alice/a", "sha256:1") == ["0.9.0", "1.0.0", "latest"]
    store.record_tag("alice/a", "latest", "sha256:2", "bob")  # a tag moves
    assert store.tags_for("alice/a", "sha256:1") == ["0.9.0", "1.0.0"]
    assert store.tags_for("alice/a", "sha256:2") == ["latest"]
    store.forget_digest("alice/a", "sha256:1")
    assert store.tags_for("alice/a", "sha256:1") == []
    assert store.tags_for("alice/b", "sha256:1") == ["1.0.0"]


def test_reopen_keeps_everything(opener: Opener) -> None:
    first = opener()
    first.add_account(Account("alice", "user", password_hash="h"))
    first.set_visibility("alice/a", "protected")
    first.add_stage_event(StageEvent("alice/a", "sha256:1", "testing", "", "alice", 1.5, {}))
    first.close()
    again = opener()  # the schema step finds its tables and leaves them be
    assert again.get_account("alice") == Account("alice", "user", password_hash="h")
    repo = again.get_repository("alice/a")
    assert repo is not None and repo.visibility == "protected"
    again.add_stage_event(StageEvent("alice/a", "sha256:1", "approved", "", "alice", 2.5, {}))
    assert [e.stage for e in again.stage_events("alice/a")] == ["testing", "approved"]


def test_multi_statement_write_is_one_transaction(store: SqlStore) -> None:
    with pytest.raises(RuntimeError, match="half-way"), store._session(write=True) as s:
        s.execute("INSERT INTO repositories (name, visibility, created) VALUES (?, ?, ?)", ("alice/x", "public", 0))
        raise RuntimeError("half-way")
    assert store.get_repository("alice/x") is None
    # and a node whose deployments cannot be written is not created either
    with pytest.raises(Exception, match=r"(?i)null"):
        store.add_account(Account("node-x", "node", deployments=frozenset({None})))  # type: ignore[arg-type]
    assert store.get_account("node-x") is None


def test_concurrent_callers(store: SqlStore) -> None:
    """Event loop plus worker threads: every call lands, none sees another's half-done work."""
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(15):
                store.record_tag("alice/c", f"t{n}-{i}", f"sha256:{n}", "alice")
                store.add_stage_event(StageEvent("alice/c", f"sha256:{n}", "testing", "", "alice", float(i), {}))
                store.set_grant("alice/c", f"user{n}", "read")
                assert f"t{n}-{i}" in store.tags_for("alice/c", f"sha256:{n}")  # reads its own writes
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]  # more threads than pool connections
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.stage_events("alice/c")) == 16 * 15
    assert all(len(store.tags_for("alice/c", f"sha256:{n}")) == 15 for n in range(16))


def test_gateways_starting_together_create_the_schema_once(postgres: PostgresServer) -> None:
    url = postgres.create_database(f"race_{next(_databases)}")
    stores: list[SqlStore] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def open_one() -> None:
        try:
            s = postgres_store(url)
            with lock:
                stores.append(s)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert errors == []
        stores[0].add_account(Account("alice", "user"))
        assert all(s.get_account("alice") is not None for s in stores)
    finally:
        for s in stores:
            s.close()


def test_open_store(tmp_path: Path, postgres: PostgresServer) -> None:
    default = open_store(tmp_path)
    assert isinstance(default, SqliteStore) and default.path == tmp_path / "state.db"
    default.close()
    other = open_store(tmp_path, f"sqlite://{tmp_path}/other.db")
    assert isinstance(other, SqliteStore) and other.path == tmp_path / "other.db"
    other.close()
    url = postgres.create_database(f"open_{next(_databases)}")
    for scheme_url in (url, url.replace("postgresql://", "postgres://")):
        pg: StateStore = open_store(tmp_path, scheme_url)
        assert type(pg).__name__ == "PostgresStore"
        pg.close()
    with pytest.raises(ValueError, match="unsupported"):
        open_store(tmp_path, "mysql://x/y")
    # a server that is not there: a clear error at start, without the password
    with pytest.raises(RuntimeError, match="cannot connect") as info:
        open_store(tmp_path, f"postgresql://postgres:hunter2@127.0.0.1:{free_port()}/x")
    assert "hunter2" not in str(info.value) and "***" in str(info.value)


def test_postgres_connections_lost_are_replaced(postgres: PostgresServer) -> None:
    """A server restart or failover drops every connection: the next calls still work."""
    import psycopg

    url = postgres.create_database(f"lost_{next(_databases)}")
    store = postgres_store(url)
    try:
        store.add_account(Account("alice", "user"))
        with psycopg.connect(postgres.url, autocommit=True) as admin:
            ended = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (url.rsplit("/", 1)[1],),
            ).fetchall()
        assert ended  # the pool's connection(s) were there and are gone now
        assert store.get_account("alice") is not None
        store.set_visibility("alice/a", "public")
        assert store.get_repository("alice/a") is not None
    finally:
        store.close()


def test_claim_tag_has_one_winner_across_connections(opener: Opener) -> None:
    """Two stores (two gateways' connections) racing to claim a new release tag: one wins."""
    import threading

    stores = [opener(), opener()]
    for round_ in range(5):
        tag = f"1.{round_}.0"
        barrier = threading.Barrier(8)
        outcomes: list[tuple[str, str, bool]] = []

        def claim(i: int, tag: str = tag, barrier: threading.Barrier = barrier,
                  outcomes: list[tuple[str, str, bool]] = outcomes) -> None:
            barrier.wait()
            digest = f"sha256:{i:064x}"
            bound, claimed = stores[i % 2].claim_tag("alice/x", tag, digest, "alice")
            outcomes.append((digest, bound, claimed))

        threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [d for d, _, claimed in outcomes if claimed]
        assert len(winners) == 1, outcomes
        assert {bound for _, bound, _ in outcomes} == set(winners)
        # an undone claim (the registry refused the manifest) frees the tag
        stores[0].unclaim_tag("alice/x", tag, winners[0])
        assert stores[1].claim_tag("alice/x", tag, "sha256:" + "f" * 64, "bob") == ("sha256:" + "f" * 64, True)


def test_catalog_index(store: SqlStore) -> None:
    from ecr_oci.gateway.stores.state import BundleVersion

    def row(repo: str, tag: str, digest: str, pushed: float, text: str, facets: str) -> BundleVersion:
        return BundleVersion(repo, tag, digest, pushed, text, facets, '{"metadata": {}}')

    store.put_bundle_version(row("alice/owls", "1.0.0", "sha256:a", 1.0, "owls at 50%_night", "|platform:linux/arm64|"))
    store.put_bundle_version(row("alice/owls", "1.1.0", "sha256:b", 2.0, "owls", "|platform:linux/amd64|"))
    store.put_bundle_version(row("alicex/bats", "1.0.0", "sha256:c", 3.0, "bats", "|license:mit|"))
    store.put_bundle_version(row("alice/owls", "1.1.0", "sha256:d", 4.0, "owls again", "|platform:linux/amd64|"))
    assert [(v.tag, v.digest) for v in store.bundle_versions("alice/owls")] == [("1.1.0", "sha256:d"),
                                                                                 ("1.0.0", "sha256:a")]
    assert store.find_bundle_versions(["owls"], ["platform:linux/arm64"], None) == [
        ("alice/owls", "1.0.0", "sha256:a", 1.0)]
    # LIKE wildcards in a search term are literal; the namespace is a whole path component
    assert [r[1] for r in store.find_bundle_versions(["50%_n"], [], None)] == ["1.0.0"]
    assert store.find_bundle_versions(["5_%"], [], None) == []
    assert {r[0] for r in store.find_bundle_versions([], [], "alice")} == {"alice/owls"}
    assert store.find_bundle_versions([], ["platform:linux"], None) == []  # facets match whole values
    assert [v.tag for v in store.bundle_versions_at([("alice/owls", "1.0.0"), ("alicex/bats", "1.0.0")])] \
        in (["1.0.0", "1.0.0"],)
    store.remove_bundle_versions("alice/owls", digest="sha256:d")
    assert [v.tag for v in store.bundle_versions("alice/owls")] == ["1.0.0"]
    store.remove_bundle_versions("alice/owls", tag="1.0.0")
    assert store.bundle_versions("alice/owls") == []
    store.clear_bundle_versions()
    assert store.find_bundle_versions([], [], None) == []
