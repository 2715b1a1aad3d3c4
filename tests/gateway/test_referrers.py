"""OCI 1.1 referrers over Distribution 2.8: API, filter, OCI-Subject, and rebuild from the registry."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from typing import Any

import requests

from ecr_oci import mediatypes as mt
from ecr_oci.digest import hex_of
from ecr_oci.oci import canonical_json
from ecr_oci.registry.referrers import Layer, artifact_manifest
from tests.gateway.support import GatewayProcess, password_of, push_image

REPO = "alice/refs"
SBOM = "application/spdx+json"
NOTE = "application/vnd.example.note.v1"


def listing(gw: GatewayProcess, subject: str, artifact_type: str | None = None) -> requests.Response:
    params = {"artifactType": artifact_type} if artifact_type else None
    return gw.call("eve", "GET", f"/v2/{REPO}/referrers/{subject}", f"repository:{REPO}:pull", params=params)


def attach_raw(gw: GatewayProcess, subject: dict[str, Any], artifact_type: str, data: bytes) -> requests.Response:
    client = gw.client("alice")
    client.upload_bytes(REPO, mt.OCI_EMPTY_BLOB)
    client.upload_bytes(REPO, data)
    body = artifact_manifest(subject, artifact_type, [Layer("application/octet-stream", data)],
                             {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"})
    from ecr_oci.digest import sha256_bytes

    return gw.call("alice", "PUT", f"/v2/{REPO}/manifests/{sha256_bytes(body)}", f"repository:{REPO}:pull,push",
                   data=body, headers={"Content-Type": mt.OCI_MANIFEST})


def test_referrers_api_filter_and_reindex(gw: GatewayProcess) -> None:
    digest, manifest = push_image(gw.client("alice"), REPO, "1.0.0", payload=b"subject image")
    subject = {"mediaType": mt.OCI_MANIFEST, "digest": digest, "size": len(manifest)}
    empty = listing(gw, digest)
    assert empty.status_code == 200
    assert empty.headers["Content-Type"].startswith(mt.OCI_INDEX)
    assert empty.json() == {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}

    first = attach_raw(gw, subject, SBOM, b'{"spdxVersion": "SPDX-2.3"}')
    second = attach_raw(gw, subject, NOTE, b"a note")
    for resp in (first, second):
        assert resp.status_code == 201, resp.text
        assert resp.headers["OCI-Subject"] == digest

    everything = listing(gw, digest).json()["manifests"]
    assert {m["artifactType"] for m in everything} == {SBOM, NOTE}
    assert all(m["annotations"]["org.opencontainers.image.created"] for m in everything)
    filtered = listing(gw, digest, SBOM)
    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"
    assert [m["artifactType"] for m in filtered.json()["manifests"]] == [SBOM]
    # our own client reads the same through the API
    assert {m["digest"] for m in gw.client("bob").referrers(REPO, digest)} == {m["digest"] for m in everything}

    # The registry holds the durable copy (the referrers tag schema) ...
    fallback = gw.client("alice").get_manifest(REPO, f"sha256-{hex_of(digest)}").json()
    assert {m["digest"] for m in fallback["manifests"]} == {m["digest"] for m in everything}
    # ... so the gateway's index can be thrown away and rebuilt.
    with sqlite3.connect(gw.data_dir / "state.db") as db:
        db.execute("DELETE FROM referrers")
    assert listing(gw, digest).json()["manifests"] == []
    proc = subprocess.run(["ecr", "admin", "reindex", "--server", gw.host], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "ECR_USERNAME": "admin",
                                            "ECR_PASSWORD": password_of("admin", gw)})
    assert proc.returncode == 0, proc.stderr
    assert sorted(listing(gw, digest).json()["manifests"], key=lambda m: m["digest"]) == sorted(
        everything, key=lambda m: m["digest"])
    assert [m["artifactType"] for m in listing(gw, digest, SBOM).json()["manifests"]] == [SBOM]


def test_referrers_hidden_like_missing(gw: GatewayProcess) -> None:
    digest, _ = gw.images["alice/prot"]
    denied = gw.call("eve", "GET", f"/v2/alice/prot/referrers/{digest}", "repository:alice/prot:pull")
    assert denied.status_code == 401
    assert canonical_json(denied.json()) == canonical_json(
        gw.call("eve", "GET", f"/v2/alice/qqqq/referrers/{digest}", "repository:alice/qqqq:pull").json())
