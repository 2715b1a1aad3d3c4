"""The operator's account lifecycle through `ecr admin`, against a real gateway: list, show
and remove users and nodes, revoke tokens, rotate node credentials, refuse silent
password resets and names that cannot be namespaces; repo show, search, signing-key."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import requests

from tests.gateway.support import ADMIN_PASSWORD, GatewayProcess


def admin(gw: GatewayProcess, *args: str, stdin: str | None = None, user: str = "admin",
          password: str = ADMIN_PASSWORD) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ECR_USERNAME": user, "ECR_PASSWORD": password, "ECR_SERVER": gw.host}
    return subprocess.run(["ecr", *args], capture_output=True, text=True, timeout=120, env=env, input=stdin)


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def works(gw: GatewayProcess, user: str, secret: str) -> bool:
    return requests.get(f"{gw.url}/api/v1/whoami", auth=(user, secret), timeout=30).status_code == 200


def test_user_add_refuses_an_existing_user_unless_reset_password(gw: GatewayProcess) -> None:
    ok(admin(gw, "admin", "user", "add", "frank", "--password-stdin", stdin="frank-password\n"))
    again = admin(gw, "admin", "user", "add", "frank", "--password-stdin", stdin="other-password\n")
    assert again.returncode == 2 and "user frank exists" in again.stderr and "--reset-password" in again.stderr
    assert works(gw, "frank", "frank-password") and not works(gw, "frank", "other-password")
    ok(admin(gw, "admin", "user", "add", "frank", "--password-stdin", "--reset-password", stdin="other-password\n"))
    assert works(gw, "frank", "other-password") and not works(gw, "frank", "frank-password")


def test_names_that_cannot_be_namespaces_are_refused(gw: GatewayProcess) -> None:
    for name in ("Frank", "frank smith", "frank-", "fr@nk", "a" * 65):
        proc = admin(gw, "admin", "user", "add", name, "--password-stdin", stdin="long-enough-1\n")
        assert proc.returncode == 2 and "invalid user name" in proc.stderr, (name, proc.stderr)
    users = json.loads(ok(admin(gw, "admin", "user", "list", "--json")))
    assert not {u["name"] for u in users} & {"Frank", "frank smith", "frank-", "fr@nk"}


def test_list_show_and_remove_users_and_revoke_tokens(gw: GatewayProcess) -> None:
    ok(admin(gw, "admin", "user", "add", "gina", "--password-stdin", stdin="gina-password\n"))
    ok(admin(gw, "repo", "grant", "alice/pub", "gina", "read", user="alice", password="alice-password"))
    first = ok(admin(gw, "admin", "user", "token", "gina", "--label", "laptop")).strip()
    second = ok(admin(gw, "admin", "user", "token", "gina", "--label", "ci")).strip()
    shown = json.loads(ok(admin(gw, "admin", "user", "show", "gina", "--json")))
    assert [t["label"] for t in shown["tokens"]] == ["laptop", "ci"]
    assert shown["grants"] == [{"repository": "alice/pub", "level": "read"}]
    assert "gina" in ok(admin(gw, "admin", "user", "list"))
    laptop = shown["tokens"][0]["id"]
    ok(admin(gw, "admin", "user", "revoke-token", "gina", laptop))
    assert not works(gw, "gina", first) and works(gw, "gina", second)
    # a user may list and revoke their own tokens, not others'
    own = json.loads(ok(admin(gw, "admin", "user", "show", "gina", "--json", user="gina", password="gina-password")))
    assert [t["label"] for t in own["tokens"]] == ["ci"]
    denied = admin(gw, "admin", "user", "show", "alice", user="gina", password="gina-password")
    assert denied.returncode == 7 and "admins only" in denied.stderr
    ok(admin(gw, "admin", "user", "remove", "gina"))
    assert not works(gw, "gina", "gina-password") and not works(gw, "gina", second)
    gone = admin(gw, "admin", "user", "show", "gina")
    assert gone.returncode == 6 and "no user gina" in gone.stderr
    repo = json.loads(ok(admin(gw, "repo", "show", "alice/pub", "--json", user="alice", password="alice-password")))
    assert "gina" not in repo["grants"]


def test_node_add_twice_rotates_and_node_remove_revokes(gw: GatewayProcess) -> None:
    old = ok(admin(gw, "admin", "node", "add", "W9Z9", "--deployment", "north")).strip()
    assert works(gw, "W9Z9", old)
    new = ok(admin(gw, "admin", "node", "add", "W9Z9", "--deployment", "south")).strip()
    assert new != old and works(gw, "W9Z9", new)
    assert not works(gw, "W9Z9", old)  # the old credential is revoked, not valid forever
    nodes = {n["name"]: n for n in json.loads(ok(admin(gw, "admin", "node", "list", "--json")))}
    assert nodes["W9Z9"]["deployments"] == ["south"] and len(nodes["W9Z9"]["tokens"]) == 1
    ok(admin(gw, "admin", "node", "remove", "W9Z9"))
    assert not works(gw, "W9Z9", new)
    assert "W9Z9" not in ok(admin(gw, "admin", "node", "list"))


def test_repo_show_search_and_signing_key(gw: GatewayProcess, tmp_path: Path) -> None:
    owner = json.loads(ok(admin(gw, "repo", "show", f"{gw.host}/alice/prot", "--json", user="alice",
                                password="alice-password")))
    assert owner["visibility"] == "protected" and owner["grants"] == {"bob": "read"} and "push" in owner["may"]
    reader = json.loads(ok(admin(gw, "repo", "show", "alice/prot", "--json", user="bob", password="bob-password")))
    assert reader["may"] == ["pull"] and "grants" not in reader  # grants are for managers to see
    hidden = admin(gw, "repo", "show", "alice/prot", user="eve", password="eve-password")
    missing = admin(gw, "repo", "show", "alice/none", user="eve", password="eve-password")
    assert hidden.returncode == missing.returncode == 6
    assert hidden.stderr.replace("prot", "X") == missing.stderr.replace("none", "X")
    key = tmp_path / "ecr.pub"
    ok(admin(gw, "signing-key", "-o", str(key)))
    assert key.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    found = json.loads(ok(admin(gw, "search", "--json", user="eve", password="eve-password")))
    assert all(b["repository"] != "alice/priv" for b in found["bundles"])


def test_inspect_through_the_gateway_shows_visibility_stage_and_the_approval(gw: GatewayProcess, tmp_path: Path,
                                                                             tiny_layout: Path) -> None:
    from tests.conftest import write_bundle

    bundle = write_bundle(tmp_path / "b", tiny_layout)
    ref = f"{gw.host}/alice/inspected:0.1.0"
    ok(admin(gw, "push", "--quiet", str(bundle), ref, user="alice", password="alice-password"))
    ok(admin(gw, "repo", "set-visibility", "alice/inspected", "protected", user="alice", password="alice-password"))
    ok(admin(gw, "stage", "set", ref, "approved", "--deployment", "north"))
    doc = json.loads(ok(admin(gw, "inspect", "--json", ref, user="alice", password="alice-password")))
    assert doc["gateway"]["visibility"] == "protected" and doc["gateway"]["stages"] == {"north": "approved"}
    assert "approval countersignature by the gateway (for north)" in [r["label"] for r in doc["referrers"]]
    text = ok(admin(gw, "inspect", ref, user="alice", password="alice-password"))
    assert "approved (north)" in text and "protected (you may" in text
