"""Registry tokens: RS256 JWTs per the Docker Registry v2 token specification.

Two signing keys with self-signed certificates live in ``<data-dir>/keys``:

* ``client``: signs the tokens handed to clients by ``/auth/token``; only the gateway
  accepts them (audience = the public service name).
* ``upstream``: signs the tokens the gateway itself sends to the registry; the
  registry trusts only this certificate (``auth.token.rootcertbundle``) and a
  different audience, so a client token replayed at the registry port is refused.

Tokens carry the certificate in the ``x5c`` header: Distribution 2.8 and 3 both
accept that, whereas their ``kid`` conventions differ (FIELD-NOTES).
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

Access = list[dict[str, Any]]


@dataclass(frozen=True)
class Scope:
    """One requested or granted ``type:name:actions`` scope."""

    type: str
    name: str
    actions: frozenset[str]

    def __str__(self) -> str:
        return f"{self.type}:{self.name}:{','.join(sorted(self.actions))}"

    @classmethod
    def parse(cls, text: str) -> Scope | None:
        """Parse ``repository:alice/x:pull,push``; None when malformed.

        The name may itself contain ``:`` (a registry host with a port) so the type is
        the first field and the actions the last.
        """
        kind, _, rest = text.partition(":")
        name, _, actions = rest.rpartition(":")
        if not kind or not name or not actions:
            return None
        return cls(kind, name, frozenset(a for a in actions.split(",") if a))


def parse_scopes(values: list[str]) -> list[Scope]:
    """Scopes from repeated ``scope`` query parameters (each may hold several, space-separated)."""
    out: list[Scope] = []
    for value in values:
        for part in value.split():
            if (scope := Scope.parse(part)) is not None:
                out.append(scope)
    return out


class SigningKey:
    """An RSA key with its self-signed certificate, created on first use.

    Args:
        directory: where ``<name>-key.pem`` and ``<name>-cert.pem`` are kept.
        name: ``client`` or ``upstream``.
    """

    def __init__(self, directory: Path, name: str) -> None:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.key_path = directory / f"{name}-key.pem"
        self.cert_path = directory / f"{name}-cert.pem"
        if not self.key_path.exists() or not self.cert_path.exists():
            self._create(name)
        key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        self.private_key = key
        self.certificate = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        self.public_key = self.certificate.public_key()
        self.x5c = [base64.b64encode(self.certificate.public_bytes(serialization.Encoding.DER)).decode()]

    def _create(self, name: str) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"ecr-gateway {name} token signer")])
        now = dt.datetime.now(dt.UTC)
        # No extended key usage: Go's x509 verifier (Distribution) would otherwise
        # demand serverAuth; basic constraints CA so it can anchor its own chain.
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


class TokenIssuer:
    """Mints and checks tokens for one audience.

    Args:
        key: the signing key.
        issuer: the ``iss`` claim (and what the registry's ``auth.token.issuer`` says).
        audience: the ``aud`` claim (the ``service`` of the challenge).
        ttl: token lifetime in seconds.
    """

    def __init__(self, key: SigningKey, *, issuer: str, audience: str, ttl: int = 300) -> None:
        self.key = key
        self.issuer = issuer
        self.audience = audience
        self.ttl = ttl

    def mint(self, subject: str, access: Access, *, now: float | None = None) -> tuple[str, int]:
        """A signed token granting ``access``; returns (token, issued-at seconds)."""
        iat = int(now if now is not None else time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.audience,
            "exp": iat + self.ttl,
            "nbf": iat - 10,  # tolerate small clock skew between gateway and registry
            "iat": iat,
            "jti": secrets.token_hex(16),
            "access": access,
        }
        token = jwt.encode(claims, self.key.private_key, algorithm="RS256", headers={"x5c": self.key.x5c})
        return token, iat

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a token this issuer signed.

        Raises:
            jwt.InvalidTokenError: bad signature, algorithm other than RS256 (``none``
                included), expired, wrong audience or issuer.
        """
        claims: dict[str, Any] = jwt.decode(
            token,
            self.key.public_key,  # type: ignore[arg-type]
            algorithms=["RS256"],
            audience=self.audience,
            issuer=self.issuer,
            options={"require": ["exp", "iat", "aud", "iss", "sub"]},
            leeway=10,
        )
        return claims


def granted(claims: dict[str, Any], resource_type: str, name: str, action: str) -> bool:
    """Whether a token's ``access`` claim grants ``action`` on a resource."""
    for entry in claims.get("access") or []:
        if entry.get("type") == resource_type and entry.get("name") == name:
            actions = entry.get("actions") or []
            if action in actions or "*" in actions:
                return True
    return False
