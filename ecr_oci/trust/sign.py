"""Sign a bundle: with ``cosign`` when it is installed, otherwise natively, same wire format.

Native signing writes what ``cosign sign --key`` (v2, no transparency log) writes: the
simple-signing payload as a layer of the ``sha256-<hex>.sig`` manifest, appended to
the signatures already there (a payload that already carries a valid signature by the
same key is not added twice). Either way the signature is then also attached as an
OCI 1.1 referrer of the signed index (artifactType
``application/vnd.dev.cosign.artifact.sig.v1+json``, same payload and annotation), so
registries and tools that follow the referrers API find it. The referrer carries a
title, description and ``created`` for registry UIs (Harbor shows nothing else of it),
and an identical signature already attached is reused rather than attached again.

``sign_recursive`` signs an index and then each manifest it lists (what ``cosign sign
--recursive`` does), so a registry that requires a signature on every manifest pulled
(Harbor's cosign content trust) serves the platform images and the model manifest too.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from ecr_oci import mediatypes as mt
from ecr_oci.digest import sha256_bytes
from ecr_oci.errors import EcrError, SignatureError
from ecr_oci.registry.client import RegistryClient
from ecr_oci.registry.reference import Reference
from ecr_oci.registry.referrers import Layer, attach, display_annotations
from ecr_oci.trust import simplesigning as ss
from ecr_oci.trust.keys import (
    ENCRYPTED_PEM_TYPES,
    Signer,
    as_signer,
    encrypt_private_key,
    verify_bytes,
)
from ecr_oci.trust.verify import find_signatures, signature_manifest


@dataclass(frozen=True)
class SignResult:
    """What was signed and where the signature went.

    Attributes:
        reference: the signed manifest, pinned by digest.
        signature: the signature stored (a new one, or the existing one reused).
        signature_manifest: digest of the ``.sig`` manifest.
        referrer: digest of the referrer artifact.
        added: False when an equivalent signature was already there.
        tool: ``"native"`` or ``"cosign vX.Y.Z"``.
    """

    reference: Reference
    signature: ss.SignatureLayer
    signature_manifest: str
    referrer: str
    added: bool
    tool: str


def _optional_claims(ref: Reference, annotations: dict[str, str] | None) -> dict[str, str] | None:
    claims = dict(annotations or {})
    if ref.tag and not ref.digest:
        claims.setdefault(ss.TAG_ANNOTATION, ref.tag)
    return claims or None


def _resolve(client: RegistryClient, ref: Reference) -> tuple[Reference, dict[str, object]]:
    """The reference pinned to its digest, and the subject descriptor of that manifest."""
    raw = client.get_manifest(ref.repository, ref.reference)
    subject: dict[str, object] = {"mediaType": raw.media_type, "digest": raw.digest, "size": len(raw.data)}
    return ref.with_digest(raw.digest), subject


def _existing_referrer(client: RegistryClient, ref: Reference, digest: str,
                       signature: ss.SignatureLayer) -> str | None:
    """The digest of a cosign referrer of ``digest`` that already holds ``signature``."""
    payload_digest = sha256_bytes(signature.payload)
    for desc in client.referrers(ref.repository, digest, mt.COSIGN_ARTIFACT_TYPE):
        try:
            layers = client.get_manifest(ref.repository, desc["digest"]).json().get("layers") or []
        except (EcrError, KeyError, ValueError):
            continue
        for layer in layers:
            held = (layer.get("annotations") or {}).get(ss.SIGNATURE_ANNOTATION)
            if layer.get("digest") == payload_digest and held == signature.signature_b64:
                return str(desc["digest"])
    return None


def _attach_referrer(client: RegistryClient, ref: Reference, subject: dict[str, object],
                     signature: ss.SignatureLayer) -> str:
    digest = str(subject["digest"])
    existing = _existing_referrer(client, ref, digest, signature)
    if existing:
        return existing
    annotations = dict(signature.annotations)
    annotations[ss.SIGNATURE_ANNOTATION] = signature.signature_b64
    now = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    shown = display_annotations(
        "cosign signature",
        f"cosign signature (simple signing, ECDSA P-256) of {ref.repo_path}@{digest}.",
        now,
    )
    return attach(client, ref.repository, subject, mt.COSIGN_ARTIFACT_TYPE,
                  [Layer(mt.COSIGN_SIMPLESIGNING, signature.payload, annotations)], annotations=shown)


def sign_native(
    client: RegistryClient,
    ref: Reference,
    key: ec.EllipticCurvePrivateKey | Signer,
    *,
    annotations: dict[str, str] | None = None,
) -> SignResult:
    """Sign the manifest ``ref`` resolves to, without cosign.

    Args:
        ref: tag or digest; a tag is resolved first and recorded in the payload's
            ``optional`` map (``org.waggle.ecr.tag``), so a re-pointed tag can be told.
        key: the P-256 private key, or any :class:`Signer` (a KMS).
        annotations: more ``optional`` claims (cosign ``-a``).

    Raises:
        NotFoundError: ``ref`` does not exist.
        RegistryError: a push was refused.
    """
    pinned, subject = _resolve(client, ref)
    digest = str(subject["digest"])
    payload = ss.make_payload(ref.repo_path, digest, _optional_claims(ref, annotations))
    signer = as_signer(key)
    public = signer.public_key()
    existing = signature_manifest(client, ref.repository, digest)
    layers: list[dict[str, Any]] = list((existing or {}).get("layers") or [])
    reused: ss.SignatureLayer | None = None
    for sig in find_signatures(client, ref.repository, digest):
        if sig.payload == payload and verify_bytes(public, sig.payload, sig.signature):
            reused = sig
            break
    in_tag = reused is not None and any(
        (layer.get("annotations") or {}).get(ss.SIGNATURE_ANNOTATION) == reused.signature_b64
        for layer in layers
    )
    signature = reused or ss.SignatureLayer(payload=payload, signature=signer.sign(payload), source="new")
    tag = ss.signature_tag(digest)
    if in_tag:
        manifest_digest = client.head_manifest(ref.repository, tag) or ""
    else:
        layers.append(signature.descriptor())
        manifest, config = ss.build_signature_manifest(layers)
        client.upload_bytes(ref.repository, config)
        client.upload_bytes(ref.repository, signature.payload)
        manifest_digest = client.put_manifest(ref.repository, tag, manifest, mt.OCI_MANIFEST)
    referrer = _attach_referrer(client, pinned, subject, signature)
    return SignResult(reference=pinned, signature=signature, signature_manifest=manifest_digest,
                      referrer=referrer, added=reused is None, tool="native")


def index_entries(client: RegistryClient, ref: Reference) -> list[str]:
    """Digests of the manifests an index lists, in order; empty for an image manifest."""
    raw = client.get_manifest(ref.repository, ref.reference)
    if raw.media_type not in mt.INDEX_TYPES:
        return []
    return [str(entry["digest"]) for entry in raw.json().get("manifests") or [] if "digest" in entry]


def sign_recursive(client: RegistryClient, ref: Reference,
                   sign_one: Callable[[Reference], SignResult]) -> list[SignResult]:
    """Sign ``ref`` with ``sign_one``, then each manifest its index lists, by digest.

    The entries are read from the index that was signed (by its digest), so a tag
    moved meanwhile cannot make us sign another bundle's images. The index's result
    comes first; an image manifest (no entries) gives one result.
    """
    first = sign_one(ref)
    results = [first]
    for digest in index_entries(client, first.reference):
        results.append(sign_one(Reference(ref.registry, ref.repository, digest=digest)))
    return results


# --- cosign as a subprocess ------------------------------------------------------------
_VERSION_RE = re.compile(r"GitVersion:\s*v?(\d+)\.(\d+)\.(\d+)")


def cosign_version(cosign: str) -> tuple[int, int, int]:
    """``cosign version`` as a tuple.

    Raises:
        SignatureError: cosign does not run or prints no version.
    """
    try:
        proc = subprocess.run([cosign, "version"], capture_output=True, text=True, timeout=60)
    except OSError as exc:
        raise SignatureError(f"cannot run {cosign}: {exc.strerror}") from None
    match = _VERSION_RE.search(proc.stdout + proc.stderr)
    if proc.returncode != 0 or not match:
        raise SignatureError(f"`{cosign} version` gave no version (exit {proc.returncode})")
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


def cosign_sign_command(
    cosign: str,
    version: tuple[int, int, int],
    key: Path,
    pinned: Reference,
    *,
    plain_http: bool,
    annotations: dict[str, str] | None = None,
) -> list[str]:
    """The offline ``cosign sign`` command line for this cosign version.

    v2: ``--tlog-upload=false``. v3 refuses that unless ``--use-signing-config=false``
    is also given, and writes a Sigstore bundle referrer by default, so
    ``--new-bundle-format=false`` keeps the ``.sig`` tag format both versions verify.
    """
    cmd = [cosign, "sign", "--yes", "--key", str(key), "--tlog-upload=false"]
    if version[0] >= 3:
        cmd += ["--use-signing-config=false", "--new-bundle-format=false"]
    if plain_http:
        cmd += ["--allow-insecure-registry", "--allow-http-registry"]
    for name, value in sorted((annotations or {}).items()):
        cmd += ["-a", f"{name}={value}"]
    return [*cmd, pinned.pinned()]


def _cosign_key_file(key_path: Path, key: ec.EllipticCurvePrivateKey, password: bytes,
                     scratch: Path) -> Path:
    """cosign only reads its encrypted format: re-wrap a plain PEM key in a temporary file."""
    text = key_path.read_bytes()
    if any(f"BEGIN {t}".encode() in text for t in ENCRYPTED_PEM_TYPES):
        return key_path
    wrapped = scratch / "cosign.key"
    fd = os.open(wrapped, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(encrypt_private_key(key, password))
    return wrapped


def sign_with_cosign(
    client: RegistryClient,
    ref: Reference,
    key_path: Path,
    key: ec.EllipticCurvePrivateKey,
    password: bytes,
    *,
    cosign: str,
    annotations: dict[str, str] | None = None,
    extra_env: dict[str, str] | None = None,
) -> SignResult:
    """Sign with the ``cosign`` binary, then attach its signature as a referrer too.

    Args:
        key_path: the key file given by the user (plain PEM is re-wrapped for cosign).
        key: the same key, loaded (to find cosign's new signature among the layers).
        password: passed to cosign as ``COSIGN_PASSWORD``.
        cosign: path of the binary.

    Raises:
        SignatureError: cosign failed or its signature cannot be found afterwards.
    """
    pinned, subject = _resolve(client, ref)
    digest = str(subject["digest"])
    version = cosign_version(cosign)
    base = client.base_url.startswith("http://")
    claims = _optional_claims(ref, annotations)
    with tempfile.TemporaryDirectory(prefix="ecr-cosign-") as scratch:
        key_file = _cosign_key_file(key_path, key, password, Path(scratch))
        cmd = cosign_sign_command(cosign, version, key_file, pinned, plain_http=base, annotations=claims)
        env = {**os.environ, **(extra_env or {}), "COSIGN_PASSWORD": password.decode()}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise SignatureError(f"cosign sign failed: {last}")
    public = key.public_key()
    ours = [
        sig for sig in find_signatures(client, ref.repository, digest)
        if sig.source.startswith("tag ") and verify_bytes(public, sig.payload, sig.signature)
        and ss.claimed_digest(ss.parse_claims(sig.payload) or {}) == digest
    ]
    if not ours:
        raise SignatureError(f"cosign reported success but no signature by this key is in {ss.signature_tag(digest)}")
    signature = ours[-1]
    referrer = _attach_referrer(client, pinned, subject, signature)
    manifest_digest = client.head_manifest(ref.repository, ss.signature_tag(digest)) or ""
    return SignResult(reference=pinned, signature=signature, signature_manifest=manifest_digest,
                      referrer=referrer, added=True, tool="cosign v{}.{}.{}".format(*version))


def find_cosign(search: Sequence[str] | None = None) -> str | None:
    """The ``cosign`` binary on PATH (or ``$ECR_COSIGN``), or None."""
    explicit = os.environ.get("ECR_COSIGN")
    if explicit:
        return explicit
    return shutil.which("cosign", path=os.pathsep.join(search) if search else None)

