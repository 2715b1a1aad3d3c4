"""Garbage collection on the object store: remove bundle versions, collect, and check what is left.

The procedure is deploy/README.md's: plan and delete the versions' manifests through
the gateway (``ecr_oci.registry.prune``), switch the registry replicas read-only, run
``docker-registry garbage-collect`` on the bucket, switch them back.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from pathlib import Path

import pytest

from ecr_oci.errors import RegistryError
from ecr_oci.registry import prune
from tests.conftest import BASE_METADATA, write_bundle
from tests.gateway.support import ADMIN_PASSWORD, push_image
from tests.scaleout.stack import BUCKET, ScaleOut
from tests.scaleout.support import (
    attach_test_profile,
    blob_key,
    ecr,
    keygen,
    missing_parts,
    profile_digests,
    push_signed,
    run,
)

pytestmark = pytest.mark.slow

REPO = "alice/gc"


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _blobs_below(stack: ScaleOut, digest: str) -> set[str]:
    """Blob digests of a manifest tree, manifests included (read as alice)."""
    client = stack.client("alice")
    found = {digest}
    document = client.get_manifest(REPO, digest).json()
    for child in document.get("manifests", []):
        found |= _blobs_below(stack, child["digest"])
    for blob in [document.get("config"), *document.get("layers", [])]:
        if blob:
            found.add(blob["digest"])
    return found


def test_removed_versions_are_freed_and_everything_still_referenced_is_kept(
        stack: ScaleOut, tiny_layout: Path, tmp_path: Path) -> None:
    key, public = keygen(stack, tmp_path / "signer")
    weights = {v: os.urandom(1 << 20) for v in ("0.1.0", "0.2.0", "0.3.0")}
    digests = {}
    for version, data in weights.items():
        root = write_bundle(tmp_path / version, tiny_layout, dict(BASE_METADATA, name="gc", version=version),
                            weights=data)
        digests[version] = push_signed(stack, root, f"{stack.host}/{REPO}:{version}", key)
    client = stack.client("alice")
    profiles = {v: attach_test_profile(client, REPO, v) for v in weights}
    # another repository holds a bundle with 0.1.0's weights: they must survive 0.1.0
    other = write_bundle(tmp_path / "other", tiny_layout, dict(BASE_METADATA, name="gc-other"),
                         weights=weights["0.1.0"])
    other_digest = push_signed(stack, other, f"{stack.host}/alice/gc-other:1.0.0", key)

    removed_blobs = _blobs_below(stack, digests["0.1.0"]) | _blobs_below(stack, digests["0.2.0"])
    for version in ("0.1.0", "0.2.0"):
        removed_blobs |= _blobs_below(stack, profiles[version])
    kept_blobs = _blobs_below(stack, digests["0.3.0"]) | _blobs_below(stack, profiles["0.3.0"])
    must_go = removed_blobs - kept_blobs - {_sha256(weights["0.1.0"])}
    assert _sha256(weights["0.2.0"]) in must_go and profiles["0.2.0"] in must_go
    assert _sha256(weights["0.1.0"]) in removed_blobs - kept_blobs  # only the other repository keeps it

    admin = stack.client("admin")
    plan = prune.plan(admin, REPO, ["0.1.0", "0.2.0"])
    # the operator's command prints the same plan and changes nothing without --yes
    printed = run([sys.executable, "-m", "ecr_oci.registry.prune", stack.host, REPO, "0.1.0", "0.2.0"],
                  env=stack.client_env() | {"ECR_USERNAME": "admin", "ECR_PASSWORD": ADMIN_PASSWORD})
    assert printed.returncode == 0, printed.stderr
    assert {line.split("@", 1)[1] for line in printed.stdout.splitlines() if line.startswith("delete ")} == set(
        plan.delete)
    assert sorted(t for t in client.tags(REPO) if not t.startswith("sha256-")) == ["0.1.0", "0.2.0", "0.3.0"]
    assert set(plan.versions) == {"0.1.0", "0.2.0"}
    assert {digests["0.1.0"], digests["0.2.0"], profiles["0.1.0"], profiles["0.2.0"]} <= set(plan.delete)
    assert not set(plan.delete) & plan.kept  # the image manifests shared with 0.3.0 stay
    assert prune.remove(admin, plan) == len(plan.delete)
    before = set(stack.ceph.bucket_objects(BUCKET))

    stack.set_read_only(True)
    try:
        # the read-only window: pulls work, pushes are refused (and nothing is half-written)
        pulled = ecr(stack, "eve", "pull", "--quiet", "--platform", "linux/amd64", "-o", str(tmp_path / "during"),
                     f"{stack.host}/{REPO}:0.3.0")
        assert pulled.returncode == 0, pulled.stderr
        with pytest.raises(RegistryError):  # refused; checked below that nothing landed
            push_image(client, "alice/gc-window", "1.0.0", payload=b"during the window")
        collecting = time.monotonic()
        output = stack.garbage_collect()
        collected = time.monotonic() - collecting
    finally:
        stack.set_read_only(False)
    assert "alice/gc-window" not in stack.client("alice").catalog()

    after = set(stack.ceph.bucket_objects(BUCKET))
    freed = {d for d in must_go if blob_key(d) in before and blob_key(d) not in after}
    assert freed == must_go, f"not freed: {must_go - freed}\n{output[-1500:]}"
    for digest in kept_blobs | {_sha256(weights["0.1.0"])}:
        assert blob_key(digest) in after, f"{digest} was collected"

    # the kept version: complete, pulls, verifies, shows its profile; the other repository too
    assert sorted(t for t in client.tags(REPO) if not t.startswith("sha256-")) == ["0.3.0"]
    assert missing_parts(client, REPO, digests["0.3.0"]) == []
    assert profile_digests(client, REPO, digests["0.3.0"]) == [profiles["0.3.0"]]
    verified = ecr(stack, "eve", "verify", "--key", str(public), f"{stack.host}/{REPO}:0.3.0")
    assert verified.returncode == 0, verified.stderr
    shown = ecr(stack, "eve", "profile", "show", f"{stack.host}/{REPO}:0.3.0")
    assert shown.returncode == 0 and "W0S1" in shown.stdout, shown.stderr
    pulled = ecr(stack, "eve", "pull", "--quiet", "--platform", "linux/arm64", "-o", str(tmp_path / "other-out"),
                 f"{stack.host}/alice/gc-other:1.0.0")
    assert pulled.returncode == 0, pulled.stderr
    assert next((tmp_path / "other-out").rglob("weights.bin")).read_bytes() == weights["0.1.0"]
    assert missing_parts(client, "alice/gc-other", other_digest) == []
    print(f"\ngc: {len(plan.delete)} manifests deleted, {len(freed)} blobs freed "
          f"({sum(len(w) for v, w in weights.items() if v == '0.2.0') >> 20} MiB of weights), "
          f"{len(kept_blobs)} kept for 0.3.0; garbage-collect took {collected:.1f} s")
