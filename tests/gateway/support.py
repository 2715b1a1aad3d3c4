"""A real ``ecr serve`` (with its embedded Distribution) for the gateway tests, and helpers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from ecr_oci import mediatypes as mt
from ecr_oci.digest import sha256_bytes
from ecr_oci.gateway.client import GatewayAdmin
from ecr_oci.oci import canonical_json, descriptor
from ecr_oci.registry.auth import Credentials
from ecr_oci.registry.client import MANIFEST_ACCEPT, RegistryClient
from tests.support import die_with_parent, free_port, wait_http

ADMIN_PASSWORD = "admin-password-1"
PASSWORDS = {"alice": "alice-password", "bob": "bob-password", "eve": "eve-password", "carol": "carol-password"}


@dataclass
class GatewayProcess:
    """``ecr serve`` as a child process; :meth:`restart` keeps port and data directory."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    nodes: dict[str, str] = field(default_factory=dict)
    images: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # repo -> (digest, manifest) of 1.0.0
    extra_args: list[str] = field(default_factory=list)  # e.g. ["--registry-url", URL]
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. {"ECR_STATE_URL": URL}

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> None:
        env = {**os.environ, "ECR_ADMIN_PASSWORD": ADMIN_PASSWORD, **self.extra_env}
        log = (self.data_dir.parent / "gateway.log").open("ab")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from ecr_oci.cli import run; run()", "serve",
             "--data-dir", str(self.data_dir), "--listen", self.host, *self.extra_args],
            env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
        )
        wait_http(f"{self.url}/healthz", timeout=30, proc=self.proc)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    # --- the embedded registry, reached directly ----------------------------------
    def registry_url(self) -> str:
        config = (self.data_dir / "registry" / "config.yml").read_text()
        addr = next(line.split("addr:")[1].strip() for line in config.splitlines() if "addr:" in line)
        return f"http://{addr}"

    # --- clients ------------------------------------------------------------------
    def admin(self, user: str = "admin") -> GatewayAdmin:
        return GatewayAdmin(self.url, Credentials(user, password_of(user, self)))

    def client(self, user: str | None) -> RegistryClient:
        creds = Credentials(user, password_of(user, self)) if user else None
        return RegistryClient(self.host, credentials=creds)

    def token(self, user: str | None, *scopes: str) -> dict[str, Any]:
        auth = (user, password_of(user, self)) if user else None
        resp = requests.get(f"{self.url}/auth/token", params=[("service", "ecr"), *(("scope", s) for s in scopes)],
                            auth=auth, timeout=30)
        resp.raise_for_status()
        body: dict[str, Any] = resp.json()
        return body

    def call(self, user: str | None, method: str, path: str, scope: str, **kwargs: Any) -> requests.Response:
        """One request with a token for ``scope`` obtained as ``user`` (None: anonymous)."""
        token = self.token(user, scope)["token"]
        headers = {"Authorization": f"Bearer {token}", "Accept": MANIFEST_ACCEPT, **kwargs.pop("headers", {})}
        return requests.request(method, self.url + path, headers=headers, timeout=30, **kwargs)


def password_of(user: str, gw: GatewayProcess) -> str:
    if user == "admin":
        return ADMIN_PASSWORD
    return PASSWORDS.get(user) or gw.nodes[user]


def push_image(client: RegistryClient, repository: str, tag: str, payload: bytes = b"layer") -> tuple[str, bytes]:
    """A tiny single-layer OCI image; returns (manifest digest, manifest bytes)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    client.upload_bytes(repository, config)
    client.upload_bytes(repository, payload)
    manifest = canonical_json({
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": descriptor(mt.OCI_CONFIG, sha256_bytes(config), len(config)),
        "layers": [descriptor(mt.OCI_LAYER_TAR, sha256_bytes(payload), len(payload))],
    })
    return client.put_manifest(repository, tag, manifest, mt.OCI_MANIFEST), manifest


def wait_gone(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)


def verified_cosign_payload(gw: GatewayProcess, user: str | None, repository: str, digest: str,
                            public_pem: bytes) -> dict[str, Any]:
    """Check a cosign signature independently of ecr_oci.trust: fetch the ``sha256-<hex>.sig``
    manifest over plain HTTP, verify each layer's ``dev.cosignproject.cosign/signature``
    (ECDSA P-256 / SHA-256 over the payload blob) with ``public_pem``, and return the
    payload of the first layer. Raises AssertionError (or InvalidSignature) when it does not verify.
    """
    import base64

    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    scope = f"repository:{repository}:pull"
    tag = digest.replace(":", "-") + ".sig"
    resp = gw.call(user, "GET", f"/v2/{repository}/manifests/{tag}", scope)
    assert resp.status_code == 200, resp.text
    layers = resp.json()["layers"]
    assert layers, "a signature manifest without layers"
    key = serialization.load_pem_public_key(public_pem)
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    payloads = []
    for layer in layers:
        assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
        blob = gw.call(user, "GET", f"/v2/{repository}/blobs/{layer['digest']}", scope)
        assert blob.status_code == 200
        signature = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
        key.verify(signature, blob.content, ec.ECDSA(hashes.SHA256()))  # raises InvalidSignature
        payloads.append(json.loads(blob.content))
    payload: dict[str, Any] = payloads[0]
    assert payload["critical"]["image"]["docker-manifest-digest"] == digest
    return payload
