"""Verification policies: small, composable checks on one signature.

In the style of sigstore-python's ``verify/policy.py``: a policy is an object with
``verify(signature) -> None`` that raises :class:`PolicyError` when the signature
does not satisfy it. Compose them with :class:`AllOf` and :class:`AnyOf`::

    policy = AllOf([SignedBy(author_key), IsSimpleSigning(), NamesDigest(digest),
                    NamesReference("127.0.0.1:5000/alice/bird-detector")])

:func:`bundle_policy` builds that usual one. The same objects serve ``ecr verify``,
``ecr pull --require-signature`` and a node requiring the gateway's countersignature
(``SignedBy(gateway_key)``). :class:`AllOf` checks in order: put :class:`SignedBy`
first, so no claim of an unverified payload is ever trusted or reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric import ec

from ecr_oci.errors import SignatureError
from ecr_oci.trust import simplesigning as ss
from ecr_oci.trust.keys import key_id, verify_bytes


class PolicyError(SignatureError):
    """A signature does not satisfy a policy.

    Attributes:
        rank: how far the signature got; the verifier reports the failure of the
            signature that got furthest (a valid signature naming another digest says
            more than a bad one).
    """

    rank: int = 0

    def __init__(self, message: str, *, rank: int | None = None) -> None:
        if rank is not None:
            self.rank = rank
        super().__init__(message)


class BadSignature(PolicyError):
    """The signature does not verify with the key (tampered payload, another key)."""

    rank = 1


class WrongClaim(PolicyError):
    """A verified payload makes a claim the policy does not accept."""

    rank = 2


class VerificationPolicy(Protocol):
    """Anything with ``verify(signature)`` raising :class:`PolicyError`."""

    def verify(self, signature: ss.SignatureLayer) -> None:
        """Check one signature.

        Raises:
            PolicyError: it does not satisfy the policy.
        """
        ...  # pragma: no cover


class SignedBy:
    """The signature is a valid ECDSA P-256/SHA-256 signature of the payload by ``key``.

    Args:
        key: the public key.
        name: how to call the key in messages (e.g. its file name).
    """

    def __init__(self, key: ec.EllipticCurvePublicKey, name: str | None = None) -> None:
        self.key = key
        self.name = name or key_id(key)

    def verify(self, signature: ss.SignatureLayer) -> None:
        if not signature.signature:
            raise BadSignature(f"bad signature: the one in {signature.source or 'a layer'} is missing or not base64")
        if not verify_bytes(self.key, signature.payload, signature.signature):
            raise BadSignature(
                f"bad signature: the one in {signature.source or 'a layer'} does not verify with {self.name} "
                "(payload altered, or signed by another key)"
            )


class IsSimpleSigning:
    """The payload is a cosign simple-signing document of type ``cosign container image signature``."""

    def verify(self, signature: ss.SignatureLayer) -> None:
        claims = ss.parse_claims(signature.payload)
        if claims is None or ss.claimed_type(claims) != ss.SIGNATURE_TYPE:
            raise WrongClaim(f"payload in {signature.source or 'layer'} is not a cosign image signature")


class NamesDigest:
    """The payload's ``critical.image.docker-manifest-digest`` is exactly ``digest``."""

    def __init__(self, digest: str) -> None:
        self.digest = digest

    def verify(self, signature: ss.SignatureLayer) -> None:
        claims = ss.parse_claims(signature.payload) or {}
        named = ss.claimed_digest(claims)
        if named != self.digest:
            raise WrongClaim(f"signed payload names {named or 'no digest'}, not {self.digest}", rank=3)


class NamesReference:
    """The payload's ``critical.identity.docker-reference`` is one of ``references``.

    Args:
        references: accepted ``registry/repository`` names (a mirror adds its own).
    """

    def __init__(self, *references: str) -> None:
        self.references = frozenset(references)

    def verify(self, signature: ss.SignatureLayer) -> None:
        claims = ss.parse_claims(signature.payload) or {}
        named = ss.claimed_reference(claims)
        if named not in self.references:
            wanted = " or ".join(sorted(self.references))
            raise WrongClaim(f"signed payload names repository {named or '(none)'}, not {wanted}", rank=4)


class HasOptional:
    """The payload's ``optional`` map holds ``key`` = ``value`` (cosign verify ``-a``)."""

    def __init__(self, key: str, value: str) -> None:
        self.key, self.value = key, value

    def verify(self, signature: ss.SignatureLayer) -> None:
        claims = ss.parse_claims(signature.payload) or {}
        if ss.optional_claims(claims).get(self.key) != self.value:
            raise WrongClaim(f"signed payload lacks {self.key}={self.value}", rank=5)


class AllOf:
    """Every child policy holds (checked in order; the first failure is raised)."""

    def __init__(self, children: Sequence[VerificationPolicy]) -> None:
        if not children:
            raise ValueError("AllOf needs at least one policy")
        self.children = list(children)

    def verify(self, signature: ss.SignatureLayer) -> None:
        for child in self.children:
            child.verify(signature)


class AnyOf:
    """At least one child policy holds; otherwise the most informative failure is raised."""

    def __init__(self, children: Sequence[VerificationPolicy]) -> None:
        if not children:
            raise ValueError("AnyOf needs at least one policy")
        self.children = list(children)

    def verify(self, signature: ss.SignatureLayer) -> None:
        failures: list[PolicyError] = []
        for child in self.children:
            try:
                child.verify(signature)
                return
            except PolicyError as exc:
                failures.append(exc)
        raise max(failures, key=lambda e: e.rank)


def bundle_policy(key: ec.EllipticCurvePublicKey, digest: str, repository: str,
                  key_name: str | None = None) -> AllOf:
    """The policy of ``ecr verify``: signed by ``key``, a cosign image signature, over
    exactly ``digest``, naming ``repository`` (``registry/repository``)."""
    return AllOf([SignedBy(key, key_name), IsSimpleSigning(), NamesDigest(digest), NamesReference(repository)])
