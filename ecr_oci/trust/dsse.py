"""DSSE (Dead Simple Signing Envelope) v1 with ECDSA P-256 / SHA-256 signatures.

The signature covers the pre-authentication encoding (PAE), never the raw payload::

    PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

with LEN the decimal byte length. The envelope is
``{"payload": b64(body), "payloadType": type, "signatures": [{"keyid": "", "sig": b64(DER)}]}``
(standard base64), as cosign ``attest`` writes it.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from ecr_oci.errors import SignatureError
from ecr_oci.trust.keys import Signer, as_signer, verify_bytes

IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


def pae(payload_type: str, body: bytes) -> bytes:
    """The DSSE v1 pre-authentication encoding of ``body``."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)


@dataclass(frozen=True)
class Envelope:
    """A parsed DSSE envelope.

    Attributes:
        payload_type: e.g. ``application/vnd.in-toto+json``.
        payload: the decoded body.
        signatures: ``(keyid, DER signature)`` pairs.
    """

    payload_type: str
    payload: bytes
    signatures: tuple[tuple[str, bytes], ...]

    def to_json(self) -> bytes:
        document = {
            "payload": base64.b64encode(self.payload).decode(),
            "payloadType": self.payload_type,
            "signatures": [{"keyid": kid, "sig": base64.b64encode(sig).decode()} for kid, sig in self.signatures],
        }
        return json.dumps(document, separators=(",", ":")).encode()

    def verified_by(self, key: ec.EllipticCurvePublicKey) -> bool:
        """True when one of the signatures is ``key``'s over the PAE bytes."""
        message = pae(self.payload_type, self.payload)
        return any(verify_bytes(key, message, sig) for _, sig in self.signatures)


def sign_envelope(key: ec.EllipticCurvePrivateKey | Signer, payload: bytes,
                  payload_type: str = IN_TOTO_PAYLOAD_TYPE, keyid: str = "") -> Envelope:
    """Sign ``payload`` (over its PAE) into a one-signature envelope."""
    return Envelope(payload_type=payload_type, payload=payload,
                    signatures=((keyid, as_signer(key).sign(pae(payload_type, payload))),))


def parse_envelope(data: bytes) -> Envelope:
    """Parse an envelope's JSON.

    Raises:
        SignatureError: not a DSSE envelope.
    """
    try:
        doc: dict[str, Any] = json.loads(data)
        payload = base64.b64decode(doc["payload"], validate=True)
        payload_type = str(doc["payloadType"])
        signatures = tuple(
            (str(s.get("keyid") or ""), base64.b64decode(s["sig"], validate=True)) for s in doc["signatures"]
        )
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise SignatureError(f"not a DSSE envelope ({exc.__class__.__name__})") from None
    return Envelope(payload_type=payload_type, payload=payload, signatures=signatures)
