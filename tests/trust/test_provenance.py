"""Provenance: SLSA v1 statement in a DSSE envelope, checked with openssl over the PAE bytes."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from ecr_oci.errors import SignatureError
from ecr_oci.trust.keys import write_key_pair
from tests.conftest import BASE_METADATA, write_bundle
from tests.support import Registry
from tests.trust.helpers import ecr, get_blob, get_manifest, openssl_verify, put_blob, put_manifest, referrer_tag

SCHEMA = Path(__file__).resolve().parents[2] / "annotations-spec" / "v1" / "schemas" / "provenance.schema.json"
DSSE = "application/vnd.dsse.envelope.v1+json"
BASE_IMAGE = "sha256:" + "d" * 64


@pytest.fixture(scope="module")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_key_pair(tmp_path_factory.mktemp("keys") / "cosign", b"pw")


def schema_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def pae(payload_type: str, body: bytes) -> bytes:
    """DSSE v1 PAE, written from the spec (independent of the project's code)."""
    return b"DSSEv1 " + str(len(payload_type)).encode() + b" " + payload_type.encode() + b" " + \
        str(len(body)).encode() + b" " + body


@pytest.fixture
def attested(registry: Registry, tiny_layout: Path, tmp_path: Path, keypair: tuple[Path, Path]) -> tuple[str, str]:
    repo = f"alice/prov-{tmp_path.name[-12:].lower().strip('_-') or 'x'}".replace("_", "-")
    metadata: dict[str, Any] = dict(BASE_METADATA)
    metadata["source"] = {"url": "https://example.org/tiny.git", "revision": "a" * 40}
    bundle = write_bundle(tmp_path / "b", tiny_layout, metadata)
    ref = f"{registry.host}/{repo}:1.0.0"
    pinned = ecr("push", "--quiet", str(bundle), ref).stdout.strip()
    ecr("provenance", "attach", ref, "--key", str(keypair[0]), "--build-command", "ecr push . " + ref,
        "--material", f"docker://debian:12@{BASE_IMAGE}")
    return repo, pinned.rsplit("@", 1)[1]


def envelope_of(registry: Registry, repo: str, digest: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The DSSE referrer's manifest and envelope, read with plain HTTP."""
    _, index = get_manifest(registry.url, repo, referrer_tag(digest))
    [entry] = [m for m in index["manifests"] if m.get("artifactType") == DSSE]
    assert entry["annotations"]["in-toto.io/predicate-type"] == "https://slsa.dev/provenance/v1"
    _, manifest = get_manifest(registry.url, repo, entry["digest"])
    assert manifest["subject"]["digest"] == digest
    [layer] = manifest["layers"]
    assert layer["mediaType"] == DSSE and layer["annotations"]["predicateType"] == "https://slsa.dev/provenance/v1"
    return manifest, json.loads(get_blob(registry.url, repo, layer["digest"]))


def test_dsse_signature_verifies_with_openssl_over_pae(
    registry: Registry, attested: tuple[str, str], keypair: tuple[Path, Path], tmp_path: Path
) -> None:
    repo, digest = attested
    _, envelope = envelope_of(registry, repo, digest)
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    body = base64.b64decode(envelope["payload"])
    [signature] = envelope["signatures"]
    check = openssl_verify(keypair[1], pae(envelope["payloadType"], body), base64.b64decode(signature["sig"]), tmp_path)
    assert check.returncode == 0 and "Verified OK" in check.stdout, check.stdout + check.stderr
    # The raw payload (without PAE) must not verify: the signature is bound to the type.
    assert openssl_verify(keypair[1], body, base64.b64decode(signature["sig"]), tmp_path).returncode != 0

    statement = json.loads(body)
    schema_validator().validate(statement)
    assert statement["subject"] == [{"name": f"{registry.host}/{repo}", "digest": {"sha256": digest[7:]}}]
    definition = statement["predicate"]["buildDefinition"]
    assert definition["externalParameters"]["source"] == {"url": "https://example.org/tiny.git", "revision": "a" * 40}
    assert definition["externalParameters"]["buildCommand"][:2] == ["ecr", "push"]
    deps = definition["resolvedDependencies"]
    assert {"uri": "git+https://example.org/tiny.git@" + "a" * 40, "name": "source",
            "digest": {"gitCommit": "a" * 40}} in deps
    assert {"uri": "docker://debian:12", "digest": {"sha256": "d" * 64}} in deps
    products = {p["name"] for p in statement["predicate"]["runDetails"]["byproducts"]}
    assert products == {"linux/amd64", "linux/arm64", "model"}


def test_cosign_attestation_tag_holds_the_same_envelope(registry: Registry, attested: tuple[str, str]) -> None:
    repo, digest = attested
    _, att = get_manifest(registry.url, repo, f"sha256-{digest[7:]}.att")
    [layer] = att["layers"]
    assert layer["mediaType"] == DSSE
    assert layer["annotations"] == {"predicateType": "https://slsa.dev/provenance/v1"}
    _, envelope = envelope_of(registry, repo, digest)
    assert json.loads(get_blob(registry.url, repo, layer["digest"])) == envelope


def test_provenance_show(registry: Registry, attested: tuple[str, str], keypair: tuple[Path, Path],
                         tmp_path: Path) -> None:
    repo, digest = attested
    ref = f"{registry.host}/{repo}:1.0.0"
    shown = ecr("provenance", "show", ref, "--key", str(keypair[1]))
    assert "signature verified with cosign.pub" in shown.stdout
    assert "https://example.org/tiny.git" in shown.stdout and "linux/arm64" in shown.stdout
    unverified = ecr("provenance", "show", ref)
    assert "NOT checked" in unverified.stdout
    as_json = json.loads(ecr("provenance", "show", ref, "--key", str(keypair[1]), "--json").stdout)
    assert as_json["subject"][0]["digest"]["sha256"] == digest[7:]
    _, other_pub = write_key_pair(tmp_path / "other", b"pw")
    refused = ecr("provenance", "show", ref, "--key", str(other_pub), check=False)
    assert refused.returncode == 9 and "no provenance envelope verifies with other.pub" in refused.stderr


def test_tampered_statement_is_refused(registry: Registry, attested: tuple[str, str],
                                       keypair: tuple[Path, Path]) -> None:
    repo, digest = attested
    manifest, envelope = envelope_of(registry, repo, digest)
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["buildDefinition"]["externalParameters"]["source"]["revision"] = "b" * 40
    forged = {**envelope, "payload": base64.b64encode(json.dumps(statement).encode()).decode()}
    data = json.dumps(forged).encode()
    new_layer = {**manifest["layers"][0], "digest": put_blob(registry.url, repo, data), "size": len(data)}
    new_manifest = {**manifest, "layers": [new_layer]}
    raw = json.dumps(new_manifest, separators=(",", ":")).encode()
    import hashlib

    new_digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    put_manifest(registry.url, repo, new_digest, new_manifest)
    _, index = get_manifest(registry.url, repo, referrer_tag(digest))
    index["manifests"] = [{**m, "digest": new_digest, "size": len(raw)} if m.get("artifactType") == DSSE else m
                          for m in index["manifests"]]
    put_manifest(registry.url, repo, referrer_tag(digest), index, "application/vnd.oci.image.index.v1+json")
    _, att = get_manifest(registry.url, repo, f"sha256-{digest[7:]}.att")
    put_manifest(registry.url, repo, f"sha256-{digest[7:]}.att", {**att, "layers": [new_layer]})
    refused = ecr("provenance", "show", f"{registry.host}/{repo}:1.0.0", "--key", str(keypair[1]), check=False)
    assert refused.returncode == 9 and "verifies" in refused.stderr


def test_schema_rejects_malformed_statements() -> None:
    from ecr_oci.trust.provenance import validate_statement

    good: dict[str, Any] = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "r/x", "digest": {"sha256": "e" * 64}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {"buildDefinition": {"buildType": "https://example.org/t", "externalParameters": {}},
                      "runDetails": {"builder": {"id": "https://example.org/b"}}},
    }
    schema_validator().validate(good)
    validate_statement(good)
    for path, value, field in [(("subject",), [], "subject"),
                               (("_type",), "https://in-toto.io/Statement/v0.1", "_type"),
                               (("predicate", "runDetails"), {"builder": {}}, "predicate.runDetails.builder.id"),
                               (("subject", 0, "digest"), {"sha256": "E" * 64}, "subject[0].digest.sha256"),
                               (("predicateType",), 7, "predicateType")]:
        bad = copy.deepcopy(good)
        target: Any = bad
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
        with pytest.raises(jsonschema.ValidationError):
            schema_validator().validate(bad)
        # and the library's own check refuses it too, naming the field (exit code 9 in the CLI)
        with pytest.raises(SignatureError, match="provenance statement invalid") as info:
            validate_statement(bad)
        assert str(info.value).startswith(f"provenance statement invalid: {field}: "), str(info.value)
        assert info.value.exit_code == 9


def test_verify_with_provenance(registry: Registry, attested: tuple[str, str], keypair: tuple[Path, Path],
                                tiny_layout: Path, tmp_path: Path) -> None:
    repo, _ = attested
    ref = f"{registry.host}/{repo}:1.0.0"
    ecr("sign", "--native", ref, "--key", str(keypair[0]))
    ok = ecr("verify", "--provenance", ref, "--key", str(keypair[1]))
    assert "with signed provenance" in ok.stderr
    # A signed bundle without provenance fails --provenance.
    bare = f"{registry.host}/{repo}-bare:1.0.0"
    ecr("push", "--quiet", str(write_bundle(tmp_path / "bare", tiny_layout)), bare)
    ecr("sign", "--native", bare, "--key", str(keypair[0]))
    ecr("verify", bare, "--key", str(keypair[1]))
    refused = ecr("verify", "--provenance", bare, "--key", str(keypair[1]), check=False)
    assert refused.returncode == 9 and "no provenance attestation" in refused.stderr
