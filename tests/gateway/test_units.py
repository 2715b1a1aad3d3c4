"""Small parts on their own: passwords, scopes, policy rules, the manifest cache, bootstrap."""

from __future__ import annotations

import asyncio
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ecr_oci.gateway import passwords
from ecr_oci.gateway.core import Gateway, GatewayConfig
from ecr_oci.gateway.domain.policy import ANONYMOUS, DEFAULT_POLICY, Caller, RepoFacts, is_release_tag
from ecr_oci.gateway.stores.cache import CachedManifest, ManifestCache
from ecr_oci.gateway.tokens import Scope, parse_scopes


def test_passwords() -> None:
    encoded = passwords.hash_password("correct horse")
    assert encoded.startswith("scrypt$") and "correct horse" not in encoded
    assert passwords.verify_password("correct horse", encoded)
    assert not passwords.verify_password("wrong", encoded)
    assert not passwords.verify_password("x", "garbage")
    assert passwords.hash_password("same") != passwords.hash_password("same")  # salted


def test_scopes() -> None:
    assert Scope.parse("repository:alice/x:pull,push") == Scope("repository", "alice/x", frozenset({"pull", "push"}))
    assert Scope.parse("repository:host:5000/x:pull") == Scope("repository", "host:5000/x", frozenset({"pull"}))
    assert Scope.parse("garbage") is None
    assert len(parse_scopes(["repository:a/b:pull repository:c/d:push", "registry:catalog:*"])) == 3


ALICE = Caller("alice", "user")
ADMIN = Caller("admin", "user", admin=True)
NODE = Caller("W0A1", "node", deployments=frozenset({"neon"}))


@pytest.mark.parametrize(("caller", "facts", "expected"), [
    (ANONYMOUS, RepoFacts("alice/x", "public"), {"pull"}),
    (ANONYMOUS, RepoFacts("alice/x", None), set()),  # no record: fail closed
    (ALICE, RepoFacts("alice/new", None), {"pull", "push", "delete"}),  # own namespace, before first push
    (ALICE, RepoFacts("bob/x", "protected", {"alice": "write"}), {"pull", "push"}),
    (ALICE, RepoFacts("bob/x", "private", {"alice": "admin"}), set()),  # private ignores grants
    (ALICE, RepoFacts("alicex/y", "private"), set()),  # namespace is the whole first component
    (ADMIN, RepoFacts("bob/x", "private"), {"pull", "push", "delete"}),
    (NODE, RepoFacts("bob/x", "public"), set()),
    (NODE, RepoFacts("bob/x", "private", node_approved=True), {"pull"}),
    (Caller("W0A1", "node", admin=True), RepoFacts("bob/x", "public"), set()),  # admin flag means nothing for nodes
])
def test_policy_table(caller: Caller, facts: RepoFacts, expected: set[str]) -> None:
    assert DEFAULT_POLICY.allowed(caller, facts) == expected


def test_release_tags() -> None:
    assert all(is_release_tag(t) for t in ("1.2.0", "v1.2.0", "1.2.0-rc.1", "1.2.0+build.5"))
    assert not any(is_release_tag(t) for t in ("latest", "1.2", "sha256-abc", "dev-1.2.0"))


def test_manifest_cache() -> None:
    cache = ManifestCache(tag_ttl=60)
    one = CachedManifest("sha256:" + "1" * 64, "application/json", b"one")
    cache.put("a/b", "1.0.0", one)
    assert cache.get("a/b", "1.0.0") == one and cache.get("a/b", one.digest) == one
    assert cache.get("a/c", one.digest) is None  # repository-scoped
    cache.forget("a/b", one.digest)
    assert cache.get("a/b", "1.0.0") is None and cache.get("a/b", one.digest) is None
    expired = ManifestCache(tag_ttl=-1)
    expired.put("a/b", "t", one)
    assert expired.get("a/b", "t") is None and expired.get("a/b", one.digest) == one


def test_admin_bootstrap_generates_a_private_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ECR_ADMIN_PASSWORD", raising=False)
    gateway = Gateway(GatewayConfig(data_dir=tmp_path / "data", registry_url="http://127.0.0.1:9"))
    try:
        where = gateway.bootstrap_admin()
        path = tmp_path / "data" / "admin-password"
        assert where == str(path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        account = gateway.store.get_account("admin")
        assert account and account.admin and account.password_hash
        assert passwords.verify_password(path.read_text().strip(), account.password_hash)
        assert gateway.bootstrap_admin() is None  # only once
        assert stat.S_IMODE((tmp_path / "data" / "keys" / "client-key.pem").stat().st_mode) == 0o600
    finally:
        asyncio.run(gateway.close())


def test_gateway_log_lines_escape_what_clients_sent() -> None:
    """A logged path or name with a newline or a terminal escape stays one inert line
    (ecr serve logs through gateway.logsafe); a traceback keeps its lines."""
    script = (
        "import logging\n"
        "from ecr_oci.gateway import logsafe\n"
        "logsafe.configure()\n"
        "log = logging.getLogger('ecr.gateway')\n"
        "log.warning('client disconnected during %s %s', 'PATCH', '/v2/a\\x1b[31mred\\nFAKE ecr.gateway ERROR x')\n"
        "try:\n"
        "    raise ValueError('boom')\n"
        "except ValueError:\n"
        "    log.exception('collector cycle failed')\n"
    )
    err = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stderr
    lines = err.splitlines()
    assert "\x1b" not in err
    assert lines[0].endswith("client disconnected during PATCH /v2/a\\x1b[31mred\\nFAKE ecr.gateway ERROR x")
    assert "collector cycle failed" in lines[1] and "Traceback (most recent call last):" in lines[2]
    assert lines[-1] == "ValueError: boom"
    serve = Path(__file__).parents[2] / "ecr_oci" / "cli" / "serve.py"
    assert "logsafe.configure(" in serve.read_text()  # the gateway's own logging goes this way
