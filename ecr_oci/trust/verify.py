"""Find a bundle's cosign signatures in a registry and check them against a policy.

Signatures are looked for in both places ``ecr sign`` writes them: the cosign tag
``sha256-<hex>.sig`` and the referrers of the signed digest with artifactType
``application/vnd.dev.cosign.artifact.sig.v1+json`` (the referrers API, or its tag
fallback). A reference verifies when at least one signature satisfies the policy
(cosign's rule); otherwise the most informative failure is raised.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from ecr_oci import mediatypes as mt
from ecr_oci.errors import EcrError, NotFoundError, SignatureError
from ecr_oci.registry.client import RegistryClient
from ecr_oci.registry.reference import Reference
from ecr_oci.trust import simplesigning as ss
from ecr_oci.trust.keys import key_id, load_public_key
from ecr_oci.trust.policy import (
    AllOf,
    HasOptional,
    IsSimpleSigning,
    NamesReference,
    PolicyError,
    SignedBy,
    VerificationPolicy,
    bundle_policy,
)

MAX_PAYLOAD_BYTES = 1 << 20
MAX_SIGNATURE_TAGS_SCANNED = 100
_SIG_TAG_RE = re.compile(r"^sha256-[a-f0-9]{64}\.sig$")


class NoSignatures(SignatureError):
    """The digest has no signature at all."""


class TagRepointed(SignatureError):
    """The tag now names a digest that is not signed, while the key signed another one for it."""


@dataclass(frozen=True)
class Verified:
    """The outcome of a successful verification.

    Attributes:
        reference: the reference pinned to the verified digest.
        signature: the signature that satisfied the policy.
        checked: how many signatures were looked at.
    """

    reference: Reference
    signature: ss.SignatureLayer
    checked: int

    @property
    def digest(self) -> str:
        assert self.reference.digest
        return self.reference.digest


def _layers_of(
    client: RegistryClient, repository: str, manifest: dict[str, Any], source: str
) -> list[ss.SignatureLayer]:
    found: list[ss.SignatureLayer] = []
    for layer in manifest.get("layers") or []:
        if not isinstance(layer, dict) or layer.get("mediaType") != mt.COSIGN_SIMPLESIGNING:
            continue
        size, digest = layer.get("size"), layer.get("digest")
        if not isinstance(digest, str) or not isinstance(size, int) or size > MAX_PAYLOAD_BYTES:
            continue
        annotations = layer.get("annotations") or {}
        try:
            payload = client.get_blob(repository, digest)
        except EcrError:
            continue  # a missing or corrupt payload is no signature
        found.append(
            ss.SignatureLayer(
                payload=payload,
                signature=ss.decode_signature(annotations.get(ss.SIGNATURE_ANNOTATION)),
                source=source,
                annotations=tuple(sorted((k, v) for k, v in annotations.items() if k != ss.SIGNATURE_ANNOTATION)),
            )
        )
    return found


def signature_manifest(client: RegistryClient, repository: str, digest: str) -> dict[str, Any] | None:
    """The parsed ``sha256-<hex>.sig`` manifest of ``digest``, or None."""
    try:
        return client.get_manifest(repository, ss.signature_tag(digest)).json()
    except NotFoundError:
        return None


def find_signatures(client: RegistryClient, repository: str, digest: str) -> list[ss.SignatureLayer]:
    """Every cosign simple-signing signature stored for ``digest`` (tag and referrers).

    Raises:
        RegistryError: the registry failed (other than "not found").
    """
    found: list[ss.SignatureLayer] = []
    tag = ss.signature_tag(digest)
    manifest = signature_manifest(client, repository, digest)
    if manifest is not None:
        found += _layers_of(client, repository, manifest, f"tag {tag}")
    for desc in client.referrers(repository, digest, mt.COSIGN_ARTIFACT_TYPE):
        try:
            referrer = client.get_manifest(repository, desc["digest"])
        except (EcrError, KeyError):
            continue
        found += _layers_of(client, repository, referrer.json(), f"referrer {desc['digest'][:19]}")
    unique: dict[tuple[bytes, bytes], ss.SignatureLayer] = {}
    for sig in found:
        unique.setdefault((sig.payload, sig.signature), sig)
    return list(unique.values())


def check_signatures(signatures: list[ss.SignatureLayer], policy: VerificationPolicy) -> ss.SignatureLayer:
    """The first signature that satisfies ``policy``.

    Raises:
        PolicyError: none does (the failure of the signature that got furthest).
        NoSignatures: the list is empty.
    """
    if not signatures:
        raise NoSignatures("no signatures")
    failures: list[PolicyError] = []
    for sig in signatures:
        try:
            policy.verify(sig)
            return sig
        except PolicyError as exc:
            failures.append(exc)
    raise max(failures, key=lambda e: e.rank)


def _repointed_from(client: RegistryClient, ref: Reference, key: ec.EllipticCurvePublicKey,
                    digest: str) -> str | None:
    """A digest other than ``digest`` that ``key`` signed for ``ref.tag``, if any."""
    if not ref.tag or ref.digest:
        return None
    policy = AllOf([SignedBy(key), IsSimpleSigning(), NamesReference(ref.repo_path),
                    HasOptional(ss.TAG_ANNOTATION, ref.tag)])
    try:
        tags = [t for t in client.tags(ref.repository) if _SIG_TAG_RE.match(t)]
    except EcrError:
        return None
    current = ss.signature_tag(digest)
    for tag in tags[:MAX_SIGNATURE_TAGS_SCANNED]:
        if tag == current:
            continue
        try:
            manifest = client.get_manifest(ref.repository, tag).json()
        except EcrError:
            continue
        for sig in _layers_of(client, ref.repository, manifest, f"tag {tag}"):
            try:
                policy.verify(sig)
            except PolicyError:
                continue
            claims = ss.parse_claims(sig.payload) or {}
            signed = ss.claimed_digest(claims)
            if signed and signed != digest:
                return signed
    return None


def verify_reference(
    client: RegistryClient,
    ref: Reference,
    key: ec.EllipticCurvePublicKey,
    *,
    key_name: str | None = None,
    policy: VerificationPolicy | None = None,
) -> Verified:
    """Resolve ``ref`` and require a signature by ``key`` over exactly its digest.

    Args:
        ref: a tag or digest reference.
        key: the signer's public key.
        key_name: how to call the key in messages.
        policy: replaces the default :func:`bundle_policy` (signed by ``key``, names
            the digest and ``registry/repository``).

    Raises:
        NotFoundError: ``ref`` does not exist.
        NoSignatures, TagRepointed, PolicyError (all SignatureError, exit 9): no
            signature satisfies the policy; the message says why, on one line.
    """
    name = key_name or key_id(key)
    digest = client.get_manifest(ref.repository, ref.reference).digest
    pinned = ref.with_digest(digest)
    if ref.digest and ref.digest != digest:  # get_manifest verified it; belt and braces
        raise SignatureError(f"{ref} resolved to {digest}")
    policy = policy or bundle_policy(key, digest, ref.repo_path, name)
    signatures = find_signatures(client, ref.repository, digest)
    try:
        return Verified(reference=pinned, signature=check_signatures(signatures, policy), checked=len(signatures))
    except SignatureError as failure:
        old = _repointed_from(client, ref, key, digest)
        if old:
            raise TagRepointed(
                f"tag {ref.tag} was re-pointed: it now resolves to {digest}, which has no valid signature "
                f"by {name}; {name} signed {old} for that tag"
            ) from None
        if isinstance(failure, NoSignatures):
            raise NoSignatures(
                f"{pinned.pinned()} is not signed (no signature in tag {ss.signature_tag(digest)} "
                "or among its referrers)"
            ) from None
        raise type(failure)(
            f"no valid signature for {pinned.pinned()}: {failure} ({len(signatures)} signature(s) checked)"
        ) from None


def require_signature(client: RegistryClient, ref: Reference, public_key: Path) -> Reference:
    """Verify ``ref`` with the key in ``public_key``; returns it pinned to the verified digest.

    Use the returned reference for everything that follows, so a tag moved after the
    check cannot substitute unsigned content.

    Raises:
        KeyFileError: the key cannot be read.
        SignatureError: see :func:`verify_reference`.
    """
    key = load_public_key(public_key)
    return verify_reference(client, ref, key, key_name=public_key.name).reference
