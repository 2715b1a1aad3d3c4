"""Signing keys in the formats cosign reads and writes.

Private keys, in the order :func:`load_private_key` tries them:

* ``ENCRYPTED SIGSTORE PRIVATE KEY`` (what ``cosign generate-key-pair`` writes since
  v2, and what ``ecr keygen`` writes) and the older ``ENCRYPTED COSIGN PRIVATE KEY``:
  a PEM block whose body is the JSON document of go-securesystemslib's ``encrypted``
  package, ``{"kdf": {"name": "scrypt", "params": {"N", "r", "p"}, "salt"},
  "cipher": {"name": "nacl/secretbox", "nonce"}, "ciphertext"}`` (byte strings in
  standard base64). The key is ``scrypt(password, salt, N, r, p, 32)``; the plaintext
  is the PKCS #8 DER of the private key. Written with N=65536, r=8, p=1 (current
  cosign); read with the three parameter sets go-securesystemslib accepts.
* plain, unencrypted PEM: ``EC PRIVATE KEY`` (SEC 1) or ``PRIVATE KEY`` (PKCS #8), as
  ``openssl ecparam -genkey -name prime256v1`` or ``openssl genpkey`` write them; and
  ``ENCRYPTED PRIVATE KEY`` (PKCS #8 with a password).

Only ECDSA keys on P-256 are accepted (cosign's default; signatures are ECDSA
P-256 with SHA-256). Public keys are PEM ``PUBLIC KEY`` (SubjectPublicKeyInfo).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ecr_oci.errors import UsageError

SIGSTORE_PEM_TYPE = "ENCRYPTED SIGSTORE PRIVATE KEY"
COSIGN_PEM_TYPE = "ENCRYPTED COSIGN PRIVATE KEY"
ENCRYPTED_PEM_TYPES = (SIGSTORE_PEM_TYPE, COSIGN_PEM_TYPE)

# go-securesystemslib's scrypt parameter sets, which are the only ones it (so cosign)
# accepts on read: Legacy, Standard (what current cosign writes) and OWASP. Refusing
# others also keeps a tampered key file from making us allocate gigabytes.
SCRYPT_LEGACY = (32768, 8, 1)
SCRYPT_STANDARD = (65536, 8, 1)
SCRYPT_OWASP = (131072, 8, 1)
SCRYPT_ACCEPTED = frozenset({SCRYPT_LEGACY, SCRYPT_STANDARD, SCRYPT_OWASP})
SALT_SIZE = 32
NONCE_SIZE = 24
KEY_SIZE = 32

Password = bytes | Callable[[], bytes]


class KeyFileError(UsageError):
    """A key file is unreadable, of an unsupported kind, or its password is missing or
    wrong: a usage problem (exit 2), not an invalid signature."""


def generate_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def public_key_pem(key: ec.EllipticCurvePublicKey) -> bytes:
    """PEM ``PUBLIC KEY`` (SubjectPublicKeyInfo), as cosign writes ``cosign.pub``."""
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _pem(block_type: str, body: bytes) -> bytes:
    b64 = base64.b64encode(body).decode()
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return ("\n".join([f"-----BEGIN {block_type}-----", *lines, f"-----END {block_type}-----"]) + "\n").encode()


def _unpem(data: bytes) -> tuple[str, bytes] | None:
    """Type and body of the first PEM block, or None when there is none."""
    text = data.decode("ascii", errors="replace")
    start = text.find("-----BEGIN ")
    if start < 0:
        return None
    header_end = text.find("-----", start + 11)
    block_type = text[start + 11 : header_end]
    end_marker = f"-----END {block_type}-----"
    end = text.find(end_marker, header_end)
    if header_end < 0 or end < 0:
        return None
    body = "".join(line.strip() for line in text[header_end + 5 : end].splitlines() if ":" not in line)
    try:
        return block_type, base64.b64decode(body, validate=True)
    except ValueError:
        return None


def _nacl() -> tuple[Any, type[Exception]]:
    """PyNaCl's secretbox module and its error type (imported when a key needs them).

    Raises:
        KeyFileError: PyNaCl is not installed.
    """
    try:
        import nacl.exceptions
        import nacl.secret
    except ImportError:
        raise KeyFileError("cosign-format keys need PyNaCl (pip install pynacl)") from None
    return nacl.secret, nacl.exceptions.CryptoError


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, maxmem=256 * r * n + (1 << 20), dklen=KEY_SIZE)


def encrypt_envelope(plaintext: bytes, password: bytes,
                     params: tuple[int, int, int] = SCRYPT_STANDARD) -> bytes:
    """go-securesystemslib ``encrypted.Encrypt``: the JSON document, as Go marshals it.

    Args:
        plaintext: the bytes to protect.
        password: may be empty (cosign allows an empty ``COSIGN_PASSWORD``).
        params: scrypt ``(N, r, p)``, one of :data:`SCRYPT_ACCEPTED`.
    """
    nacl_secret, _ = _nacl()
    n, r, p = params
    salt = secrets.token_bytes(SALT_SIZE)
    nonce = secrets.token_bytes(NONCE_SIZE)
    box = nacl_secret.SecretBox(_scrypt(password, salt, n, r, p))
    ciphertext = box.encrypt(plaintext, nonce).ciphertext
    document = {  # field order as Go's encoding/json writes the struct
        "kdf": {"name": "scrypt", "params": {"N": n, "r": r, "p": p}, "salt": base64.b64encode(salt).decode()},
        "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
        "ciphertext": base64.b64encode(ciphertext).decode(),
    }
    return json.dumps(document, separators=(",", ":")).encode()


def decrypt_envelope(body: bytes, password: bytes) -> bytes:
    """go-securesystemslib ``encrypted.Decrypt``.

    Raises:
        KeyFileError: malformed document, unsupported KDF/cipher/parameters, or wrong
            password (the secretbox does not open).
    """
    nacl_secret, crypto_error = _nacl()
    try:
        doc = json.loads(body)
        kdf, cipher = doc["kdf"], doc["cipher"]
        params = kdf["params"]
        n, r, p = int(params["N"]), int(params["r"]), int(params["p"])
        salt = base64.b64decode(kdf["salt"])
        nonce = base64.b64decode(cipher["nonce"])
        ciphertext = base64.b64decode(doc["ciphertext"])
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyFileError(f"malformed encrypted key ({exc.__class__.__name__}: {exc})") from None
    if kdf.get("name") != "scrypt" or cipher.get("name") != "nacl/secretbox":
        raise KeyFileError(f"unsupported key encryption {kdf.get('name')!r}/{cipher.get('name')!r}")
    if (n, r, p) not in SCRYPT_ACCEPTED:
        raise KeyFileError(f"unsupported scrypt parameters N={n} r={r} p={p}")
    if len(nonce) != NONCE_SIZE:
        raise KeyFileError("malformed encrypted key (nonce size)")
    box = nacl_secret.SecretBox(_scrypt(password, salt, n, r, p))
    try:
        plaintext: bytes = box.decrypt(ciphertext, nonce)
    except crypto_error:
        raise KeyFileError("cannot decrypt the private key: wrong password (COSIGN_PASSWORD)") from None
    return plaintext


def encrypt_private_key(key: ec.EllipticCurvePrivateKey, password: bytes) -> bytes:
    """The key as cosign's ``ENCRYPTED SIGSTORE PRIVATE KEY`` PEM (PKCS #8 inside).

    Args:
        key: the P-256 private key.
        password: may be empty.
    """
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    return _pem(SIGSTORE_PEM_TYPE, encrypt_envelope(der, password))


def decrypt_private_key(body: bytes, password: bytes) -> ec.EllipticCurvePrivateKey:
    """Decrypt the body of an ``ENCRYPTED SIGSTORE/COSIGN PRIVATE KEY`` block.

    Raises:
        KeyFileError: see :func:`decrypt_envelope`; or the content is not a P-256 key.
    """
    der = decrypt_envelope(body, password)
    try:
        key = serialization.load_der_private_key(der, password=None)
    except ValueError as exc:
        raise KeyFileError(f"decrypted key is not PKCS #8: {exc}") from None
    return _require_p256(key)


def _require_p256(key: object) -> ec.EllipticCurvePrivateKey:
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyFileError("only ECDSA P-256 keys are supported")
    return key


def is_encrypted(data: bytes) -> bool:
    """True when the PEM needs a password to be read."""
    parsed = _unpem(data)
    return parsed is not None and (parsed[0] in ENCRYPTED_PEM_TYPES or parsed[0] == "ENCRYPTED PRIVATE KEY")


def load_private_key(path: Path, password: Password | None = None) -> ec.EllipticCurvePrivateKey:
    """Read a private key in one of the formats of the module docstring.

    Args:
        path: the key file.
        password: bytes, or a function asked only when the key is encrypted.

    Raises:
        KeyFileError: unreadable file, unsupported format or curve, wrong password.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read key {path}: {exc.strerror}") from None
    parsed = _unpem(data)
    if parsed is None:
        raise KeyFileError(f"{path} is not a PEM file")
    block_type, body = parsed

    def secret() -> bytes:
        if password is None:
            raise KeyFileError(f"{path} is encrypted: set COSIGN_PASSWORD")
        return password() if callable(password) else password

    if block_type in ENCRYPTED_PEM_TYPES:
        return decrypt_private_key(body, secret())
    if block_type in ("EC PRIVATE KEY", "PRIVATE KEY", "ENCRYPTED PRIVATE KEY"):
        try:
            key = serialization.load_pem_private_key(
                data, password=secret() if block_type == "ENCRYPTED PRIVATE KEY" else None
            )
        except (ValueError, TypeError) as exc:
            raise KeyFileError(f"cannot read private key {path}: {exc}") from None
        return _require_p256(key)
    raise KeyFileError(f"{path}: unsupported PEM block {block_type!r} (need a cosign or EC P-256 private key)")


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    """Read a PEM ``PUBLIC KEY`` (P-256).

    Raises:
        KeyFileError: unreadable, not a public key, or not P-256.
    """
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except OSError as exc:
        raise KeyFileError(f"cannot read public key {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise KeyFileError(f"{path} is not a PEM public key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyFileError(f"{path}: only ECDSA P-256 public keys are supported")
    return key


def sign_bytes(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ECDSA P-256 / SHA-256 signature of ``data``, DER-encoded (what cosign stores, base64'd)."""
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


class Signer(Protocol):
    """What signing needs: a local key, or a KMS / HSM holding the key (the gateway's
    countersignature can plug one in). Signatures are ECDSA P-256 / SHA-256, DER."""

    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The verification key."""
        ...  # pragma: no cover

    def sign(self, data: bytes) -> bytes:
        """DER ECDSA P-256 / SHA-256 signature of ``data``."""
        ...  # pragma: no cover


class LocalSigner:
    """A :class:`Signer` over a private key in memory."""

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        self._key = key

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._key.public_key()

    def sign(self, data: bytes) -> bytes:
        return sign_bytes(self._key, data)


def as_signer(key: ec.EllipticCurvePrivateKey | Signer) -> Signer:
    """A private key wrapped as a :class:`Signer`; a Signer unchanged."""
    return LocalSigner(key) if isinstance(key, ec.EllipticCurvePrivateKey) else key


def verify_bytes(key: ec.EllipticCurvePublicKey, data: bytes, signature: bytes) -> bool:
    """True when ``signature`` (DER) is a valid ECDSA P-256/SHA-256 signature of ``data``."""
    try:
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def key_id(key: ec.EllipticCurvePublicKey) -> str:
    """A short fingerprint for messages: sha256 of the DER SubjectPublicKeyInfo."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()[:16]


def write_key_pair(prefix: Path, password: bytes, *, force: bool = False) -> tuple[Path, Path]:
    """Generate a key pair and write ``PREFIX.key`` (mode 0600, encrypted) and ``PREFIX.pub``.

    Raises:
        KeyFileError: a file exists and ``force`` is false, or cannot be written.
    """
    private_path = prefix.with_name(prefix.name + ".key")
    public_path = prefix.with_name(prefix.name + ".pub")
    for path in (private_path, public_path):
        if path.exists() and not force:
            raise KeyFileError(f"{path} exists (use --force to overwrite)")
    key = generate_key()
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(encrypt_private_key(key, password))
        os.chmod(private_path, 0o600)
        public_path.write_bytes(public_key_pem(key.public_key()))
    except OSError as exc:
        raise KeyFileError(f"cannot write key pair: {exc}") from None
    return private_path, public_path
