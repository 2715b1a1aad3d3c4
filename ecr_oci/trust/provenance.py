"""Build provenance: an in-toto Statement v1 with a SLSA Provenance v1 predicate, in a
DSSE envelope signed with ECDSA P-256, attached to the bundle index.

Where it goes (both read):

* always, an OCI 1.1 referrer of the index: artifactType
  ``application/vnd.dsse.envelope.v1+json``, one layer of that media type holding the
  envelope JSON, layer annotation ``predicateType`` and manifest annotations
  ``in-toto.io/predicate-type`` = ``https://slsa.dev/provenance/v1`` (so a referrers
  listing can be filtered without fetching the envelope) and a title, description and
  ``created`` for registry UIs;
* only on registries without the referrers API (Distribution 2.8): cosign's
  attestation tag ``sha256-<hex>.att``, the same layer appended to an image manifest,
  as ``cosign attest --key`` writes it (``cosign verify-attestation --key`` reads it,
  with ``--insecure-ignore-tlog``).

The statement's shape is ``annotations-spec/v1/schemas/provenance.schema.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from ecr_oci import __version__
from ecr_oci import mediatypes as mt
from ecr_oci.bundle.remote import RemoteBundle, fetch_bundle, platform_text
from ecr_oci.digest import hex_of, sha256_bytes
from ecr_oci.errors import EcrError, NotFoundError, SignatureError
from ecr_oci.oci import descriptor
from ecr_oci.registry.client import RegistryClient
from ecr_oci.registry.reference import Reference
from ecr_oci.registry.referrers import Layer, attach_artifact, display_annotations
from ecr_oci.trust import simplesigning as ss
from ecr_oci.trust.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope, parse_envelope, sign_envelope
from ecr_oci.trust.keys import Signer

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://waggle.org/ecr/buildtypes/bundle/v1"
DEFAULT_BUILDER = "https://waggle.org/ecr/builders/ecr-cli"
PREDICATE_ANNOTATION = "predicateType"  # cosign's layer annotation
REFERRER_PREDICATE_ANNOTATION = "in-toto.io/predicate-type"
MAX_ENVELOPE_BYTES = 4 << 20
_GIT_COMMIT = re.compile(r"^[a-f0-9]{40}([a-f0-9]{24})?$")


def attestation_tag(digest: str) -> str:
    """cosign's attestation tag for ``digest``: ``sha256-<hex>.att``."""
    return f"sha256-{hex_of(digest)}.att"


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _digest_set(digest: str) -> dict[str, str]:
    algorithm, value = digest.split(":", 1)
    return {algorithm: value}


def build_statement(
    bundle: RemoteBundle,
    *,
    builder_id: str = DEFAULT_BUILDER,
    build_command: list[str] | None = None,
    materials: list[dict[str, Any]] | None = None,
    started_on: str | None = None,
    finished_on: str | None = None,
) -> dict[str, Any]:
    """The provenance statement of a pushed bundle, from its index and annotations.

    Args:
        bundle: the bundle index as found in the registry (the subject).
        builder_id: URI of whoever built and pushed it (a CI system, a gateway).
        build_command: the command that built it, recorded as an external parameter.
        materials: more resolved dependencies (e.g. base images: ``{"uri": ...,
            "digest": {"sha256": ...}}``).
        started_on, finished_on: RFC 3339 times; default now.

    Returns:
        The statement as a JSON-ready dict.
    """
    meta = bundle.metadata
    build = {k: meta[k] for k in ("build.recipe", "build.args") if k in meta}
    source = {k: meta[k] for k in ("source", "revision", "source.directory", "source.dockerfile") if k in meta}
    external: dict[str, Any] = {
        "bundle": {"name": meta.get("name"), "version": meta.get("version")},
        "source": {
            "url": source.get("source"),
            "revision": source.get("revision"),
            "directory": source.get("source.directory"),
            "dockerfile": source.get("source.dockerfile"),
        },
    }
    external["source"] = {k: v for k, v in external["source"].items() if v}
    if "build.recipe" in build:
        external["recipe"] = build["build.recipe"]
    if "build.args" in build:
        external["buildArgs"] = build["build.args"]
    if build_command:
        external["buildCommand"] = build_command
    internal: dict[str, Any] = {}
    if "build.toolchain" in meta:
        internal["toolchain"] = meta["build.toolchain"]
    dependencies: list[dict[str, Any]] = []
    url, revision = source.get("source"), source.get("revision")
    if url:
        dep: dict[str, Any] = {"uri": f"git+{url}" + (f"@{revision}" if revision else ""), "name": "source"}
        if revision and _GIT_COMMIT.match(revision):
            dep["digest"] = {"gitCommit": revision}
        dependencies.append(dep)
    dependencies += list(materials or [])
    byproducts = [
        {"name": platform_text(entry["platform"]), "uri": f"oci://{bundle.reference.repo_path}@{entry['digest']}",
         "digest": _digest_set(entry["digest"]), "mediaType": entry.get("mediaType", "")}
        for entry in bundle.images()
    ]
    model = bundle.model_entry()
    if model:
        byproducts.append({"name": "model", "uri": f"oci://{bundle.reference.repo_path}@{model['digest']}",
                           "digest": _digest_set(model["digest"]), "mediaType": model.get("mediaType", "")})
    predicate: dict[str, Any] = {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": external,
            "internalParameters": internal,
            "resolvedDependencies": dependencies,
        },
        "runDetails": {
            "builder": {"id": builder_id, "version": {"ecr-oci": __version__}},
            "metadata": {
                "invocationId": str(uuid.uuid4()),
                "startedOn": started_on or _now(),
                "finishedOn": finished_on or _now(),
            },
            "byproducts": byproducts,
        },
    }
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": bundle.reference.repo_path, "digest": _digest_set(bundle.digest)}],
        "predicateType": SLSA_PROVENANCE_V1,
        "predicate": predicate,
    }


def validate_statement(statement: dict[str, Any]) -> None:
    """Check a statement against ``provenance.schema.json``.

    Raises:
        SignatureError: it does not validate (message names the field).
    """
    from ecr_oci.spec import describe, validator

    errors = sorted(validator("provenance").iter_errors(statement), key=lambda e: list(e.absolute_path))
    if errors:
        field, message = describe(errors[0])
        raise SignatureError(f"provenance statement invalid: {field}: {message}")


@dataclass(frozen=True)
class AttachedProvenance:
    """Where a signed statement went.

    Attributes:
        attestation_manifest: digest of the ``sha256-<hex>.att`` manifest, or None when
            the registry has the referrers API and the referrer is the only copy.
    """

    referrer: str
    attestation_manifest: str | None
    envelope: Envelope


def _display(statement: dict[str, Any], digest: str) -> dict[str, str]:
    """What a registry UI (Harbor) shows of the provenance referrer."""
    run = statement.get("predicate", {}).get("runDetails", {})
    builder = run.get("builder", {}).get("id", "an unnamed builder")
    created = run.get("metadata", {}).get("finishedOn") or _now()
    return display_annotations(
        "SLSA provenance",
        f"Signed SLSA v1 provenance (in-toto statement in a DSSE envelope) of bundle {digest}, "
        f"built by {builder}.",
        created,
    )


def attach_provenance(
    client: RegistryClient, ref: Reference, key: ec.EllipticCurvePrivateKey | Signer, statement: dict[str, Any]
) -> AttachedProvenance:
    """Sign ``statement`` in a DSSE envelope and attach it as a referrer of the bundle.

    The cosign attestation tag ``sha256-<hex>.att`` gets the same layer only when the
    registry lacks the referrers API (Distribution 2.8): where the referrer is found,
    an ``.att`` tag would only add a tagged image (Harbor lists, scans and retains it
    as an artifact of its own, and does not delete it with the bundle).

    Raises:
        SignatureError: the statement does not validate or does not name the bundle.
        RegistryError: a push was refused.
    """
    validate_statement(statement)
    bundle = fetch_bundle(client, ref)
    if all(s.get("digest", {}).get("sha256") != hex_of(bundle.digest) for s in statement["subject"]):
        raise SignatureError(f"statement subject does not name {bundle.digest}")
    payload = json.dumps(statement, separators=(",", ":"), sort_keys=True).encode()
    envelope = sign_envelope(key, payload)
    data = envelope.to_json()
    layer_annotations = {PREDICATE_ANNOTATION: statement["predicateType"]}
    subject = {"mediaType": bundle.raw.media_type, "digest": bundle.digest, "size": len(bundle.raw.data)}
    annotations = {**_display(statement, bundle.digest), REFERRER_PREDICATE_ANNOTATION: statement["predicateType"]}
    attached = attach_artifact(client, ref.repository, subject, mt.DSSE_ENVELOPE,
                               [Layer(mt.DSSE_ENVELOPE, data, layer_annotations)], annotations=annotations)
    if attached.referrers_api:
        return AttachedProvenance(referrer=attached.digest, attestation_manifest=None, envelope=envelope)
    tag = attestation_tag(bundle.digest)
    try:
        layers: list[dict[str, Any]] = list(client.get_manifest(ref.repository, tag).json().get("layers") or [])
    except NotFoundError:
        layers = []
    layers.append(descriptor(mt.DSSE_ENVELOPE, sha256_bytes(data), len(data), annotations=layer_annotations))
    manifest, config = ss.build_signature_manifest(layers)
    client.upload_bytes(ref.repository, config)
    client.upload_bytes(ref.repository, data)
    att_digest = client.put_manifest(ref.repository, tag, manifest, mt.OCI_MANIFEST)
    return AttachedProvenance(referrer=attached.digest, attestation_manifest=att_digest, envelope=envelope)


@dataclass(frozen=True)
class FoundProvenance:
    """One envelope found for a bundle, with where it was found."""

    envelope: Envelope
    source: str

    def statement(self) -> dict[str, Any] | None:
        try:
            document = json.loads(self.envelope.payload)
        except ValueError:
            return None
        return document if isinstance(document, dict) else None


def _envelopes_in(client: RegistryClient, repository: str, manifest: dict[str, Any],
                  source: str) -> list[FoundProvenance]:
    found: list[FoundProvenance] = []
    for layer in manifest.get("layers") or []:
        if layer.get("mediaType") != mt.DSSE_ENVELOPE or not isinstance(layer.get("size"), int):
            continue
        if layer["size"] > MAX_ENVELOPE_BYTES:
            continue
        try:
            found.append(FoundProvenance(parse_envelope(client.get_blob(repository, layer["digest"])), source))
        except EcrError:
            continue
    return found


def find_provenance(client: RegistryClient, repository: str, digest: str) -> list[FoundProvenance]:
    """Every DSSE envelope attached to ``digest`` (referrers and the ``.att`` tag), deduplicated."""
    found: list[FoundProvenance] = []
    for desc in client.referrers(repository, digest, mt.DSSE_ENVELOPE):
        try:
            manifest = client.get_manifest(repository, desc["digest"]).json()
        except (EcrError, KeyError):
            continue
        found += _envelopes_in(client, repository, manifest, f"referrer {desc['digest'][:19]}")
    try:
        att = client.get_manifest(repository, attestation_tag(digest)).json()
        found += _envelopes_in(client, repository, att, f"tag {attestation_tag(digest)}")
    except NotFoundError:
        pass
    unique: dict[bytes, FoundProvenance] = {}
    for item in found:
        unique.setdefault(item.envelope.to_json(), item)
    return list(unique.values())


def verify_provenance(
    client: RegistryClient, ref: Reference, key: ec.EllipticCurvePublicKey, key_name: str = "the key"
) -> tuple[Reference, dict[str, Any], FoundProvenance]:
    """The SLSA provenance statement of ``ref``, signed by ``key``, naming its digest.

    Raises:
        SignatureError: none found, none signed by ``key``, or the signed statement is
            not in-toto/SLSA v1 or names another digest.
    """
    digest = client.get_manifest(ref.repository, ref.reference).digest
    found = find_provenance(client, ref.repository, digest)
    if not found:
        raise SignatureError(f"{ref.repo_path}@{digest} has no provenance attestation")
    problem = f"no provenance envelope verifies with {key_name}"
    for item in found:
        if item.envelope.payload_type != IN_TOTO_PAYLOAD_TYPE or not item.envelope.verified_by(key):
            continue
        statement = item.statement()
        if statement is None or statement.get("predicateType") != SLSA_PROVENANCE_V1:
            problem = f"signed envelope in {item.source} is not a SLSA v1 provenance statement"
            continue
        try:
            validate_statement(statement)
        except SignatureError as exc:
            problem = str(exc)
            continue
        if all((s.get("digest") or {}).get("sha256") != hex_of(digest) for s in statement["subject"]):
            problem = f"signed provenance in {item.source} is for another subject, not {digest}"
            continue
        return ref.with_digest(digest), statement, item
    raise SignatureError(f"{ref.repo_path}@{digest}: {problem}")
