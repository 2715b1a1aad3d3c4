"""Verification policies on hand-made signatures (no registry)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ecr_oci.trust import simplesigning as ss
from ecr_oci.trust.keys import generate_key, sign_bytes
from ecr_oci.trust.policy import (
    AllOf,
    AnyOf,
    BadSignature,
    HasOptional,
    NamesDigest,
    NamesReference,
    PolicyError,
    SignedBy,
    WrongClaim,
    bundle_policy,
)
from ecr_oci.trust.verify import NoSignatures, check_signatures

DIGEST = "sha256:" + "a" * 64
OTHER = "sha256:" + "b" * 64
REPO = "127.0.0.1:5000/alice/bird"
KEY = generate_key()
OTHER_KEY = generate_key()


def signed(payload: bytes, key: object = KEY) -> ss.SignatureLayer:
    return ss.SignatureLayer(payload=payload, signature=sign_bytes(key, payload), source="test")  # type: ignore[arg-type]


def test_payload_is_byte_compatible_with_cosign() -> None:
    assert ss.make_payload(REPO, DIGEST) == (
        b'{"critical":{"identity":{"docker-reference":"127.0.0.1:5000/alice/bird"},'
        b'"image":{"docker-manifest-digest":"sha256:' + b"a" * 64 + b'"},'
        b'"type":"cosign container image signature"},"optional":null}'
    )
    assert ss.signature_tag(DIGEST) == "sha256-" + "a" * 64 + ".sig"


def test_bundle_policy_accepts_a_good_signature() -> None:
    bundle_policy(KEY.public_key(), DIGEST, REPO).verify(signed(ss.make_payload(REPO, DIGEST)))


@pytest.mark.parametrize(
    ("sig", "error", "text"),
    [
        (signed(ss.make_payload(REPO, DIGEST), OTHER_KEY), BadSignature, "bad signature"),
        (signed(ss.make_payload(REPO, OTHER)), WrongClaim, f"names {OTHER}, not {DIGEST}"),
        (signed(ss.make_payload("127.0.0.1:5000/mallory/bird", DIGEST)), WrongClaim, "mallory"),
        (signed(b'{"critical":{}}'), WrongClaim, "not a cosign image signature"),
        (ss.SignatureLayer(payload=ss.make_payload(REPO, DIGEST), signature=b""), BadSignature, "not base64"),
    ],
)
def test_bundle_policy_rejects(sig: ss.SignatureLayer, error: type[PolicyError], text: str) -> None:
    with pytest.raises(error, match=text):
        bundle_policy(KEY.public_key(), DIGEST, REPO).verify(sig)


def test_unverified_claims_are_never_reported() -> None:
    # Another key's payload naming another digest: only "bad signature" is said.
    with pytest.raises(BadSignature):
        bundle_policy(KEY.public_key(), DIGEST, REPO).verify(signed(ss.make_payload(REPO, OTHER), OTHER_KEY))


def test_any_of_lets_a_node_accept_author_or_gateway() -> None:
    policy = AllOf([AnyOf([SignedBy(KEY.public_key()), SignedBy(OTHER_KEY.public_key())]), NamesDigest(DIGEST)])
    policy.verify(signed(ss.make_payload(REPO, DIGEST), OTHER_KEY))
    with pytest.raises(BadSignature):
        policy.verify(signed(ss.make_payload(REPO, DIGEST), generate_key()))


def test_has_optional_and_mirror_references() -> None:
    sig = signed(ss.make_payload("mirror.example/alice/bird", DIGEST, {"stage": "approved"}))
    AllOf([SignedBy(KEY.public_key()), NamesReference(REPO, "mirror.example/alice/bird"),
           HasOptional("stage", "approved")]).verify(sig)
    with pytest.raises(WrongClaim, match="stage=approved"):
        HasOptional("stage", "approved").verify(signed(ss.make_payload(REPO, DIGEST)))


def test_check_signatures_reports_the_most_informative_failure() -> None:
    policy = bundle_policy(KEY.public_key(), DIGEST, REPO)
    sigs = [signed(ss.make_payload(REPO, DIGEST), OTHER_KEY), signed(ss.make_payload(REPO, OTHER))]
    with pytest.raises(WrongClaim, match="names"):
        check_signatures(sigs, policy)
    good = signed(ss.make_payload(REPO, DIGEST))
    assert check_signatures([*sigs, good], policy) is good
    with pytest.raises(NoSignatures):
        check_signatures([], policy)


def test_signature_config_matches_cosign() -> None:
    payload_digest = "sha256:" + "c" * 64
    assert ss.signature_config([payload_digest]) == (
        b'{"architecture":"","created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"}],'
        b'"os":"","rootfs":{"type":"layers","diff_ids":["' + payload_digest.encode() + b'"]},"config":{}}'
    )


def test_a_kms_style_signer_plugs_in() -> None:
    from ecr_oci.trust.dsse import sign_envelope

    class FakeKms:
        """Holds its key elsewhere; only exposes public_key() and sign()."""

        def __init__(self) -> None:
            self._key = generate_key()

        def public_key(self) -> ec.EllipticCurvePublicKey:
            return self._key.public_key()

        def sign(self, data: bytes) -> bytes:
            return sign_bytes(self._key, data)

    kms = FakeKms()
    envelope = sign_envelope(kms, b'{"_type":"x"}')
    assert envelope.verified_by(kms.public_key())
    assert not envelope.verified_by(KEY.public_key())
