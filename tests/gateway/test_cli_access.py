"""Access errors that explain, against a real gateway: not logged in, wrong password,
may not push, "not found or no access" (both said, one wording), admins only."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import requests

from tests.conftest import write_bundle
from tests.gateway.support import GatewayProcess, password_of


def ecr(gw: GatewayProcess, user: str | None, *args: str, password: str | None = None,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ECR_USERNAME", "ECR_PASSWORD", "ECR_SERVER")}
    if user:
        env |= {"ECR_USERNAME": user, "ECR_PASSWORD": password or password_of(user, gw)}
    return subprocess.run(["ecr", *args], capture_output=True, text=True, timeout=300, env=env, input=stdin)


def refused(proc: subprocess.CompletedProcess[str], code: int, *texts: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    for text in texts:
        assert text in proc.stderr, (text, proc.stderr)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, tiny_layout: Path) -> Path:
    return write_bundle(tmp_path_factory.mktemp("access") / "b", tiny_layout)


def test_push_not_logged_in_says_how_to_log_in(gw: GatewayProcess, bundle: Path) -> None:
    refused(ecr(gw, None, "push", "-q", str(bundle), f"{gw.host}/alice/access:0.1.0"), 7,
            f"not logged in to {gw.host}", f"ecr login {gw.host}", "ECR_USERNAME")


@pytest.fixture(scope="module")
def mallory(gw: GatewayProcess) -> str:
    """An account for wrong-password attempts: the gateway throttles an account after 10
    failures a minute, and the shared gateway's alice must stay usable for other tests."""
    gw.admin().add_user("mallory", "mallory-password")
    return "mallory"


def _bad_credential_denials(gw: GatewayProcess) -> float:
    text = requests.get(f"{gw.url}/metrics", timeout=30).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("ecr_gateway_denials_total{") and 'reason="bad_credentials"' in line)


def test_wrong_password_is_named_and_tried_once(gw: GatewayProcess, bundle: Path, mallory: str) -> None:
    before = _bad_credential_denials(gw)
    refused(ecr(gw, mallory, "push", "-q", str(bundle), f"{gw.host}/mallory/access:0.1.0", password="not-it"), 7,
            f"wrong user name or password for {gw.host} (user 'mallory')")
    # a push runs requests in parallel: the refused password is not tried again by each
    assert _bad_credential_denials(gw) - before == 1
    refused(ecr(gw, None, "login", gw.host, "-u", mallory, "--password-stdin", stdin="not-it\n"), 7,
            "wrong user name or password")


def test_push_to_someone_elses_namespace(gw: GatewayProcess, bundle: Path) -> None:
    refused(ecr(gw, "eve", "push", "-q", str(bundle), f"{gw.host}/alice/pub:0.1.0"), 7,
            f"user 'eve' may not push to {gw.host}/alice/pub")


def test_hidden_and_missing_read_the_same_and_say_both(gw: GatewayProcess, tmp_path: Path) -> None:
    hidden = ecr(gw, "eve", "pull", f"{gw.host}/alice/priv:1.0.0", "-o", str(tmp_path / "a"))
    missing = ecr(gw, "eve", "pull", f"{gw.host}/alice/no-such-repo:1.0.0", "-o", str(tmp_path / "b"))
    refused(hidden, 7, "not found, or user 'eve' has no access to it")
    refused(missing, 7, "not found, or user 'eve' has no access to it")
    assert hidden.stderr.replace("priv", "X") == missing.stderr.replace("no-such-repo", "X")
    anonymous = ecr(gw, None, "pull", f"{gw.host}/alice/priv:1.0.0", "-o", str(tmp_path / "c"))
    refused(anonymous, 7, "not found, or not visible without a login", f"ecr login {gw.host}")


def test_admin_commands_say_how_to_authenticate_and_who_may(gw: GatewayProcess, mallory: str) -> None:
    refused(ecr(gw, None, "admin", "reindex", "--server", gw.host), 7,
            f"not logged in to {gw.host}", "ECR_USERNAME and ECR_PASSWORD")
    refused(ecr(gw, "eve", "admin", "reindex", "--server", gw.host), 7,
            f"admins only: user 'eve' is not an administrator of {gw.host}")
    refused(ecr(gw, "mallory", "admin", "reindex", "--server", gw.host, password="wrong-one"), 7,
            "wrong user name or password")


def test_bad_values_given_to_the_gateway_are_usage_errors(gw: GatewayProcess) -> None:
    refused(ecr(gw, "admin", "admin", "user", "add", "shorty", "--password-stdin", "--server", gw.host,
                stdin="short\n"), 2, "password: at least 8 characters")
    refused(ecr(gw, "alice", "repo", "grant", "alice/pub", "bob", "superuser", "--server", gw.host), 2,
            "level: one of read, write, admin")
