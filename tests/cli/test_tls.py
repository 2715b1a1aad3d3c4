"""A registry behind TLS with a certificate no CA vouches for: refused by default,
reached with ``--insecure``, whatever CA bundle the environment names.

requests lets REQUESTS_CA_BUNDLE (set on these machines, and on many CI runners)
override a session's own ``verify``, so ``--insecure`` was silently ignored there.
"""

from __future__ import annotations

import os
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from urllib3.exceptions import InsecureRequestWarning

from tests.conftest import write_bundle
from tests.support import Registry, start_registry


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    work = tmp_path_factory.mktemp("tls-registry")
    cert, key = work / "cert.pem", work / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    registry = start_registry(work, f"  tls:\n    certificate: {cert}\n    key: {key}\n")
    yield registry
    registry.stop()


def _tags(registry: Registry, repo: str) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureRequestWarning)
        resp = requests.get(f"https://{registry.host}/v2/{repo}/tags/list", timeout=10, verify=False)
    return list(resp.json().get("tags") or []) if resp.ok else []


def ecr(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REQUESTS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt"}
    return subprocess.run(["ecr", *args], capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
                          env=env)


def test_insecure_reaches_a_self_signed_registry_and_the_default_refuses_it(
        tls_registry: Registry, tmp_path: Path, tiny_layout: Path) -> None:
    root = write_bundle(tmp_path / "b", tiny_layout)
    ref = f"{tls_registry.host}/tls/bundle:0.1.0"
    refused = ecr("push", "--quiet", "--tls", str(root), ref)
    assert refused.returncode != 0
    assert "Traceback" not in refused.stderr and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "TLS certificate is not trusted" in refused.stderr and "--insecure" in refused.stderr, refused.stderr
    assert _tags(tls_registry, "tls/bundle") == []

    pushed = ecr("push", "--quiet", "--tls", "--insecure", str(root), ref)
    assert pushed.returncode == 0, pushed.stderr
    assert _tags(tls_registry, "tls/bundle") == ["0.1.0"]
    pulled = ecr("pull", "--tls", "--insecure", "-o", str(tmp_path / "out"), ref)
    assert pulled.returncode == 0, pulled.stderr
    assert (tmp_path / "out" / "model" / "weights.bin").exists()
