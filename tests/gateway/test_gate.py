"""The manifest gate: bad manifests are refused with the right OCI code and nothing is stored."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ecr_oci import mediatypes as mt
from ecr_oci.digest import hex_of, sha256_bytes
from ecr_oci.errors import RegistryError
from ecr_oci.oci import canonical_json, descriptor
from ecr_oci.registry.client import RegistryClient
from tests.gateway.support import GatewayProcess, password_of

REPO = "alice/gated"
SPEC_EXAMPLES = Path(__file__).resolve().parents[2] / "annotations-spec" / "v1" / "examples"


@pytest.fixture(scope="module")
def bundle_index(gw: GatewayProcess, tmp_path_factory: pytest.TempPathFactory, tiny_layout: Path) -> dict[str, Any]:
    from tests.conftest import write_bundle

    root = write_bundle(tmp_path_factory.mktemp("gate") / "bundle", tiny_layout)
    proc = subprocess.run(["ecr", "push", "--quiet", str(root), f"{gw.host}/{REPO}:0.1.0"], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "ECR_USERNAME": "alice",
                                                       "ECR_PASSWORD": password_of("alice", gw)})
    assert proc.returncode == 0, proc.stderr
    return gw.client("alice").get_manifest(REPO, "0.1.0").json()


def refused(client: RegistryClient, doc: Any, tag: str, media_type: str = mt.OCI_INDEX,
            raw: bytes | None = None) -> RegistryError:
    data = raw if raw is not None else canonical_json(doc)
    with pytest.raises(RegistryError) as info:
        client.put_manifest(REPO, tag, data, media_type)
    # nothing stored: neither the tag nor the digest
    assert client.head_manifest(REPO, tag) is None
    assert client.head_manifest(REPO, sha256_bytes(data)) is None
    return info.value


def test_bundle_passes_and_is_intact(gw: GatewayProcess, bundle_index: dict[str, Any]) -> None:
    """What `ecr push` sent is what the registry serves: same bytes, same digests, all entries there."""
    scope = f"repository:{REPO}:pull"
    served = gw.call("bob", "GET", f"/v2/{REPO}/manifests/0.1.0", scope)  # another user than the pusher
    assert served.status_code == 200
    assert served.headers["Content-Type"] == mt.OCI_INDEX
    assert served.headers["Docker-Content-Digest"] == "sha256:" + hashlib.sha256(served.content).hexdigest()
    assert json.loads(served.content) == bundle_index
    assert bundle_index["artifactType"] == mt.BUNDLE_ARTIFACT_TYPE
    platforms = sorted(f"{m['platform']['os']}/{m['platform']['architecture']}" for m in bundle_index["manifests"])
    assert platforms == ["linux/amd64", "linux/arm64", "unknown/unknown"]
    for entry in bundle_index["manifests"]:
        child = gw.call("bob", "GET", f"/v2/{REPO}/manifests/{entry['digest']}", scope)
        assert child.status_code == 200 and len(child.content) == entry["size"]
        assert "sha256:" + hashlib.sha256(child.content).hexdigest() == entry["digest"]
        for layer in json.loads(child.content)["layers"]:
            blob = gw.call("bob", "HEAD", f"/v2/{REPO}/blobs/{layer['digest']}", scope)
            assert blob.status_code == 200 and int(blob.headers["Content-Length"]) == layer["size"]


def test_digest_algorithms(gw: GatewayProcess, bundle_index: dict[str, Any]) -> None:
    """sha256 and sha512 are the digests a descriptor may carry; anything else is malformed."""
    doc = copy.deepcopy(bundle_index)
    doc["manifests"][0]["digest"] = "sha384:" + "a" * 96
    error = refused(gw.client("alice"), doc, "sha384")
    assert error.code == "MANIFEST_INVALID"
    assert "manifests[0].digest: missing or not a sha256/sha512 digest" in str(error)
    doc["manifests"][0]["digest"] = "sha512:" + "a" * 64  # the length of a sha256
    assert "missing or not a sha256/sha512 digest" in str(refused(gw.client("alice"), doc, "sha512-short"))
    # a well-formed sha512 passes the structural check and is refused only as absent
    doc["manifests"][0]["digest"] = "sha512:" + hashlib.sha512(b"nothing here").hexdigest()
    error = refused(gw.client("alice"), doc, "sha512")
    assert error.code == "MANIFEST_BLOB_UNKNOWN" and "manifests[0].digest" in str(error)


def test_declared_type_must_match_content_type(gw: GatewayProcess, bundle_index: dict[str, Any]) -> None:
    doc = copy.deepcopy(bundle_index)  # other bytes than the pushed index, which exists
    doc["annotations"][mt.OCI_DESCRIPTION] = "relabelled"
    error = refused(gw.client("alice"), doc, "mislabelled", media_type=mt.OCI_MANIFEST)
    assert error.code == "MANIFEST_INVALID"
    assert f"mediaType: {mt.OCI_INDEX!r} does not match Content-Type {mt.OCI_MANIFEST!r}" in str(error)


def test_a_bundle_needs_a_runnable_image_and_at_most_one_model(gw: GatewayProcess,
                                                               bundle_index: dict[str, Any]) -> None:
    model = next(m for m in bundle_index["manifests"] if m.get("artifactType") == mt.MODEL_ARTIFACT_TYPE)
    only_model = {**copy.deepcopy(bundle_index), "manifests": [copy.deepcopy(model)]}
    error = refused(gw.client("alice"), only_model, "model-only")
    assert error.code == "MANIFEST_INVALID" and "at least one runnable image" in str(error)
    two_models = copy.deepcopy(bundle_index)
    two_models["manifests"].append(copy.deepcopy(model))
    error = refused(gw.client("alice"), two_models, "two-models")
    assert error.code == "MANIFEST_INVALID" and "more than one model entry" in str(error)
    empty = {**copy.deepcopy(bundle_index), "manifests": []}
    assert "at least one image" in str(refused(gw.client("alice"), empty, "empty"))


def test_invalid_annotations(gw: GatewayProcess, bundle_index: dict[str, Any]) -> None:
    doc = copy.deepcopy(bundle_index)
    doc["annotations"][mt.OCI_VERSION] = "not-a-version"
    error = refused(gw.client("alice"), doc, "bad-version")
    assert error.code == "MANIFEST_INVALID"
    assert mt.OCI_VERSION in str(error)
    doc = copy.deepcopy(bundle_index)
    doc["annotations"][mt.ECR_HARDWARE] = "{not json"
    error = refused(gw.client("alice"), doc, "bad-hardware")
    assert error.code == "MANIFEST_INVALID" and mt.ECR_HARDWARE in str(error)


def test_dangling_reference(gw: GatewayProcess, bundle_index: dict[str, Any]) -> None:
    doc = copy.deepcopy(bundle_index)
    doc["manifests"][0]["digest"] = sha256_bytes(b"nothing like this")
    error = refused(gw.client("alice"), doc, "dangling")
    assert error.code == "MANIFEST_BLOB_UNKNOWN"
    assert "manifests[0].digest" in str(error)


def test_duplicate_platform_and_bad_model_entry(gw: GatewayProcess, bundle_index: dict[str, Any]) -> None:
    doc = copy.deepcopy(bundle_index)
    images = [m for m in doc["manifests"] if m.get("platform", {}).get("os") == "linux"]
    doc["manifests"].append(copy.deepcopy(images[0]))
    error = refused(gw.client("alice"), doc, "dup")
    assert error.code == "MANIFEST_INVALID" and "appears twice" in str(error)
    doc = copy.deepcopy(bundle_index)
    model = next(m for m in doc["manifests"] if m.get("artifactType") == mt.MODEL_ARTIFACT_TYPE)
    model["platform"] = {"os": "linux", "architecture": "amd64"}
    error = refused(gw.client("alice"), doc, "model-platform")
    assert "unknown/unknown" in str(error)


def test_oversized_and_malformed(gw: GatewayProcess) -> None:
    client = gw.client("alice")
    big = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [],
           "annotations": {"x": "y" * (4 << 20)}}
    error = refused(client, big, "big")
    assert error.code == "SIZE_INVALID" and error.status == 413
    error = refused(client, None, "notjson", raw=b"{not json")
    assert error.code == "MANIFEST_INVALID"
    error = refused(client, {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": {"digest": "x"},
                             "layers": []}, "baddesc", media_type=mt.OCI_MANIFEST)
    assert error.code == "MANIFEST_INVALID" and "config.mediaType" in str(error)


def test_cosign_signature_and_plain_image_pass(gw: GatewayProcess) -> None:
    client = gw.client("alice")
    from tests.gateway.support import push_image

    digest, _ = push_image(client, REPO, "plain", payload=b"plain image")
    payload = json.dumps({"critical": {"identity": {"docker-reference": f"{gw.host}/{REPO}"},
                                       "image": {"docker-manifest-digest": digest},
                                       "type": "cosign container image signature"}, "optional": None}).encode()
    config = json.dumps({"architecture": "", "os": "", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    client.upload_bytes(REPO, payload)
    client.upload_bytes(REPO, config)
    sig = canonical_json({
        "schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
        "config": descriptor(mt.OCI_CONFIG, sha256_bytes(config), len(config)),
        "layers": [descriptor(mt.COSIGN_SIMPLESIGNING, sha256_bytes(payload), len(payload),
                              annotations={"dev.cosignproject.cosign/signature": "MEUCIQ=="})],
    })
    client.put_manifest(REPO, f"sha256-{hex_of(digest)}.sig", sig, mt.OCI_MANIFEST)
    assert client.head_manifest(REPO, f"sha256-{hex_of(digest)}.sig") == sha256_bytes(sig)


def test_profile_referrer_checked_against_schema(gw: GatewayProcess, bundle_index: dict[str, Any]) -> None:
    from ecr_oci.registry.referrers import Layer, attach

    client = gw.client("alice")
    digest = client.head_manifest(REPO, "0.1.0")
    assert digest
    subject = {"mediaType": mt.OCI_INDEX, "digest": digest, "size": len(canonical_json(bundle_index))}
    bad = json.dumps({"schemaVersion": 1, "bundle": digest}).encode()
    with pytest.raises(RegistryError) as info:
        attach(client, REPO, subject, mt.PROFILE_ARTIFACT_TYPE, [Layer(mt.PROFILE_SUMMARY_LAYER, bad)])
    assert info.value.code == "MANIFEST_INVALID" and "profile" in str(info.value)


def test_profile_must_describe_its_subject(gw: GatewayProcess, bundle_index: dict[str, Any]) -> None:
    """A schema-valid profile (the spec's own example) whose bundle is not the subject is refused."""
    from ecr_oci.registry.referrers import Layer, attach

    client = gw.client("alice")
    digest = client.head_manifest(REPO, "0.1.0")
    assert digest
    subject = {"mediaType": mt.OCI_INDEX, "digest": digest, "size": len(canonical_json(bundle_index))}
    example = json.loads((SPEC_EXAMPLES / "profile-node.json").read_text())
    assert example["bundle"] != digest
    with pytest.raises(RegistryError) as info:
        attach(client, REPO, subject, mt.PROFILE_ARTIFACT_TYPE,
               [Layer(mt.PROFILE_SUMMARY_LAYER, json.dumps(example).encode())])
    assert info.value.code == "MANIFEST_INVALID"
    assert "profile: bundle: does not match the artifact's subject digest" in str(info.value)
    # the same profile about this bundle is accepted
    example["bundle"] = digest
    attach(client, REPO, subject, mt.PROFILE_ARTIFACT_TYPE,
           [Layer(mt.PROFILE_SUMMARY_LAYER, json.dumps(example).encode())])


def test_digest_reference_must_match(gw: GatewayProcess) -> None:
    client = gw.client("alice")
    with pytest.raises(RegistryError) as info:
        client.request("PUT", f"/v2/{REPO}/manifests/{sha256_bytes(b'other')}",
                       scopes=(client.scope(REPO, "pull,push"),), ok=(201,),
                       headers={"Content-Type": mt.OCI_INDEX},
                       data=canonical_json({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}))
    assert info.value.code == "DIGEST_INVALID"


def test_stage_record_needs_a_subject(gw: GatewayProcess) -> None:
    client = gw.client("alice")
    record = b'{"stage": "approved"}'
    client.upload_bytes(REPO, record)
    client.upload_bytes(REPO, mt.OCI_EMPTY_BLOB)
    doc = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "artifactType": mt.STAGE_ARTIFACT_TYPE,
           "config": descriptor(mt.OCI_EMPTY, sha256_bytes(mt.OCI_EMPTY_BLOB), 2),
           "layers": [descriptor("application/json", sha256_bytes(record), len(record))]}
    error = refused(client, doc, "stage-no-subject", media_type=mt.OCI_MANIFEST)
    assert error.code == "MANIFEST_INVALID" and "subject" in str(error)
