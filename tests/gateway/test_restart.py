"""Restarting ``ecr serve`` mid-sequence: nothing lost, interrupted uploads resume, no half-pushed bundle."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import requests

from ecr_oci.digest import sha256_bytes
from tests.conftest import write_bundle
from tests.gateway.support import GatewayProcess, password_of


def test_restart_mid_sequence(gw: GatewayProcess, tiny_layout: Path, tmp_path: Path) -> None:
    alice = gw.client("alice")
    blob = os.urandom(3 << 20)
    digest = sha256_bytes(blob)
    _, location = alice._start_upload("alice/restart")
    first = alice.request("PATCH", location, scopes=(alice.scope("alice/restart", "pull,push"),), ok=(202,),
                          headers={"Content-Type": "application/octet-stream",
                                   "Content-Range": f"0-{(1 << 20) - 1}"}, data=blob[: 1 << 20])
    location = first.headers["Location"]
    bob_token = gw.token("bob", "repository:alice/prot:pull")["token"]
    bundle = write_bundle(tmp_path / "bundle", tiny_layout)
    small = alice.upload_bytes("alice/restart", b"{}")

    gw.restart()

    # tokens, users, visibility and grants survived
    resp = requests.get(f"{gw.url}/v2/alice/prot/tags/list", headers={"Authorization": f"Bearer {bob_token}"},
                        timeout=30)
    assert resp.status_code == 200
    assert gw.call("eve", "GET", "/v2/alice/prot/tags/list", "repository:alice/prot:pull").status_code == 401
    # the interrupted upload resumes where it stopped
    alice = gw.client("alice")
    offset = alice._upload_offset(location, (alice.scope("alice/restart", "pull,push"),))
    assert offset == 1 << 20
    second = alice.request("PATCH", location, scopes=(alice.scope("alice/restart", "pull,push"),), ok=(202,),
                           headers={"Content-Type": "application/octet-stream",
                                    "Content-Range": f"{offset}-{len(blob) - 1}"}, data=blob[offset:])
    alice.request("PUT", second.headers["Location"], scopes=(alice.scope("alice/restart", "pull,push"),),
                  params={"digest": digest}, ok=(201,))
    assert alice.blob_size("alice/restart", digest) == len(blob)
    assert alice.blob_size("alice/restart", small) == 2
    assert alice.head_manifest("alice/restart", "0.1.0") is None  # nothing half-pushed is visible
    # and a full bundle push works after the restart
    proc = subprocess.run(["ecr", "push", "--quiet", str(bundle), f"{gw.host}/alice/restart:0.1.0"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "ECR_USERNAME": "alice", "ECR_PASSWORD": password_of("alice", gw)})
    assert proc.returncode == 0, proc.stderr
    assert "0.1.0" in alice.tags("alice/restart")
