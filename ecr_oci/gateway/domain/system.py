"""The gateway acting on its own behalf: countersigning approved bundles and collecting
performance profiles.

Both go through the gateway's own front door as the internal admin account
``ecr-system``, so its writes pass the same manifest gate, referrers index and audit
log as anyone's. The account has no password: each gateway process registers an API
secret of its own (only its digest is stored) and removes it when it stops, so several
gateways sharing one state store each keep working.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ecr_oci.gateway import passwords
from ecr_oci.gateway.stores.state import Account, StateStore
from ecr_oci.registry.auth import Credentials
from ecr_oci.registry.client import RegistryClient
from ecr_oci.registry.reference import Reference

SYSTEM_USER = "ecr-system"
APPROVED_FOR = "org.waggle.ecr.approved-for"
log = logging.getLogger("ecr.gateway")


class SystemIdentity:
    """Credentials of the gateway's internal account, valid while this process runs.

    Args:
        store: the state store (the account is created or its password reset).
        self_host: ``HOST:PORT`` the gateway listens on (loopback in practice).
    """

    def __init__(self, store: StateStore, self_host: str) -> None:
        self.self_host = self_host
        self._store = store
        if store.get_account(SYSTEM_USER) is None:
            store.add_account(Account(name=SYSTEM_USER, kind="user", admin=True))
        self._secret = passwords.new_secret()
        self._digest = passwords.secret_digest(self._secret)
        store.add_secret(SYSTEM_USER, self._digest, f"gateway process {os.getpid()} at {self_host}")

    def client(self) -> RegistryClient:
        """A registry client talking to this gateway as ``ecr-system``."""
        return RegistryClient(self.self_host, credentials=Credentials(SYSTEM_USER, self._secret), plain_http=True)

    def close(self) -> None:
        """Forget this process's secret (a crashed process leaves an unusable digest behind)."""
        self._store.remove_secret(self._digest)


class CountersignKey:
    """The gateway's signing key (ECDSA P-256, PEM, 0600), made on first use.

    A node that trusts ``<data-dir>/keys/countersign.pub`` (served at
    ``/api/v1/signing-key``) can require "approved by this ECR" with
    ``ecr pull --require-signature``. A KMS-held key implements the same
    :class:`ecr_oci.trust.keys.Signer` protocol and can replace it.
    """

    def __init__(self, keys_dir: Path) -> None:
        self.path = keys_dir / "countersign.key"
        self.public_path = keys_dir / "countersign.pub"
        if not self.path.exists():
            keys_dir.mkdir(parents=True, exist_ok=True)
            key = ec.generate_private_key(ec.SECP256R1())
            pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
            self.public_path.write_bytes(key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        loaded = serialization.load_pem_private_key(self.path.read_bytes(), password=None)
        assert isinstance(loaded, ec.EllipticCurvePrivateKey)
        self.key = loaded

    def public_pem(self) -> bytes:
        return self.public_path.read_bytes()


def countersign(identity: SystemIdentity, key: CountersignKey, repository: str, digest: str,
                deployment: str) -> str:
    """Sign an approved bundle (cosign format, tag and referrer); returns the signature referrer.

    Raises:
        EcrError: the signature could not be stored.
    """
    from ecr_oci.trust.sign import sign_native

    client = identity.client()
    ref = Reference(identity.self_host, repository, digest=digest)
    result = sign_native(client, ref, key.key, annotations={APPROVED_FOR: deployment} if deployment else None)
    log.info("countersigned %s@%s for %s", repository, digest, deployment or "all deployments")
    return result.referrer
