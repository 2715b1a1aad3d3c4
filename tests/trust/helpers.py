"""Plain-HTTP helpers for trust tests: read and rewrite registry content without project code."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import requests

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ACCEPT = ", ".join([INDEX, MANIFEST])


def ecr(*args: str, password: str | None = "pw", check: bool = True,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the ``ecr`` CLI (COSIGN_PASSWORD set unless ``password`` is None)."""
    full_env = {k: v for k, v in os.environ.items() if k != "COSIGN_PASSWORD"}
    if password is not None:
        full_env["COSIGN_PASSWORD"] = password
    full_env.update(env or {})
    proc = subprocess.run(["ecr", *args], capture_output=True, text=True, timeout=600, env=full_env,
                          stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"ecr {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def get_manifest(base: str, repo: str, reference: str) -> tuple[bytes, dict[str, Any]]:
    resp = requests.get(f"{base}/v2/{repo}/manifests/{reference}", headers={"Accept": ACCEPT}, timeout=10)
    resp.raise_for_status()
    return resp.content, resp.json()


def get_blob(base: str, repo: str, digest: str) -> bytes:
    resp = requests.get(f"{base}/v2/{repo}/blobs/{digest}", timeout=10)
    resp.raise_for_status()
    assert digest_of(resp.content) == digest
    return resp.content


def put_blob(base: str, repo: str, data: bytes) -> str:
    digest = digest_of(data)
    start = requests.post(f"{base}/v2/{repo}/blobs/uploads/", timeout=10)
    assert start.status_code == 202, start.text
    location = start.headers["Location"]
    if location.startswith("/"):
        location = base + location
    sep = "&" if "?" in location else "?"
    done = requests.put(f"{location}{sep}digest={digest}", data=data,
                        headers={"Content-Type": "application/octet-stream"}, timeout=10)
    assert done.status_code == 201, done.text
    return digest


def put_manifest(base: str, repo: str, reference: str, document: dict[str, Any], media_type: str = MANIFEST) -> str:
    data = json.dumps(document, separators=(",", ":")).encode()
    resp = requests.put(f"{base}/v2/{repo}/manifests/{reference}", data=data,
                        headers={"Content-Type": media_type}, timeout=10)
    assert resp.status_code == 201, resp.text
    return digest_of(data)


def sig_tag(digest: str) -> str:
    return f"sha256-{digest.split(':', 1)[1]}.sig"


def referrer_tag(digest: str) -> str:
    return f"sha256-{digest.split(':', 1)[1]}"


def cosign_referrers(base: str, repo: str, digest: str) -> list[dict[str, Any]]:
    """Referrer descriptors with the cosign signature artifactType, from the fallback tag."""
    resp = requests.get(f"{base}/v2/{repo}/manifests/{referrer_tag(digest)}", headers={"Accept": INDEX}, timeout=10)
    if resp.status_code == 404:
        return []
    resp.raise_for_status()
    return [m for m in resp.json().get("manifests", [])
            if m.get("artifactType") == "application/vnd.dev.cosign.artifact.sig.v1+json"]


def tamper_payloads(base: str, repo: str, digest: str, edit: Any) -> None:
    """Replace every stored signature payload of ``digest`` by ``edit(payload)``, keeping
    the signature annotations: in the ``.sig`` manifest and in every cosign referrer."""

    def rewrite(manifest: dict[str, Any]) -> dict[str, Any]:
        layers = []
        for layer in manifest["layers"]:
            changed = edit(get_blob(base, repo, layer["digest"]))
            new_digest = put_blob(base, repo, changed)
            layers.append({**layer, "digest": new_digest, "size": len(changed)})
        return {**manifest, "layers": layers}

    _, sig_manifest = get_manifest(base, repo, sig_tag(digest))
    put_manifest(base, repo, sig_tag(digest), rewrite(sig_manifest))
    entries = []
    _, index = get_manifest(base, repo, referrer_tag(digest))
    for entry in index["manifests"]:
        if entry.get("artifactType") == "application/vnd.dev.cosign.artifact.sig.v1+json":
            _, referrer = get_manifest(base, repo, entry["digest"])
            new = rewrite(referrer)
            data = json.dumps(new, separators=(",", ":")).encode()
            new_digest = put_manifest(base, repo, digest_of(data), new)
            entry = {**entry, "digest": new_digest, "size": len(data)}
        entries.append(entry)
    put_manifest(base, repo, referrer_tag(digest), {**index, "manifests": entries}, INDEX)


def openssl_verify(
    public_key: Path, payload: bytes, signature_der: bytes, workdir: Path
) -> subprocess.CompletedProcess[str]:
    """``openssl dgst -sha256 -verify`` over the payload bytes."""
    (workdir / "payload.json").write_bytes(payload)
    (workdir / "sig.der").write_bytes(signature_der)
    return subprocess.run(
        ["openssl", "dgst", "-sha256", "-verify", str(public_key), "-signature", str(workdir / "sig.der"),
         str(workdir / "payload.json")],
        capture_output=True, text=True, timeout=60,
    )
