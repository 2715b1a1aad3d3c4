"""Key files: cosign's encrypted format (interop vectors from upstream), plain PEM, keygen."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ecr_oci.trust import keys
from ecr_oci.trust.keys import KeyFileError
from tests.support import run

# go-securesystemslib's own test vectors (encrypted/encrypted_test.go, made with its
# ``Marshal``, so the plaintext is the JSON string of base64("reallyimportant")) under
# the password "supersecret", one per scrypt setting it accepts.
UPSTREAM_VECTORS = [
    b'{"kdf":{"name":"scrypt","params":{"N":32768,"r":8,"p":1},"salt":"WO3mVvyTwJ9vwT5/Tk5OW5WPIBUofMjcpEfrLnfY4uA="},'
    b'"cipher":{"name":"nacl/secretbox","nonce":"tCy7HcTFr4uxv4Nrg/DWmncuZ148U1MX"},'
    b'"ciphertext":"08n43p5G5yviPEZpO7tPPF4aZQkWiWjkv4taFdhDBA0tamKH4nw="}',
    b'{"kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1},"salt":"FhzPOt9/bJG4PTq6lQ6ecG6GzaOuOy/ynG5+yRiFlNs="},'
    b'"cipher":{"name":"nacl/secretbox","nonce":"aw1ng1jHaDz/tQ7V2gR9O2+IGQ8xJEuE"},'
    b'"ciphertext":"HycvuLZL4sYH0BrYTh4E/H20VtAW6u5zL5Pr+IBjYLYnCPzDkq8="}',
    b'{"kdf":{"name":"scrypt","params":{"N":131072,"r":8,"p":1},"salt":"m38E3kouJTtiheLQN22NQ8DTito5hrjpUIskqcd375k="},'
    b'"cipher":{"name":"nacl/secretbox","nonce":"Y6PM13yA+o44pE/W1ZBwczeGnTV/m9Zc"},'
    b'"ciphertext":"6H8sqj1K6B6yDjtH5AQ6lbFigg/C2yDDJc4rYJ79w9aVPImFIPI="}',
]

@pytest.mark.parametrize("vector", UPSTREAM_VECTORS, ids=["legacy", "standard", "owasp"])
def test_upstream_vectors_decrypt(vector: bytes) -> None:
    plaintext = keys.decrypt_envelope(vector, b"supersecret")
    assert base64.b64decode(json.loads(plaintext)) == b"reallyimportant"


def test_upstream_vector_wrong_password() -> None:
    with pytest.raises(KeyFileError, match="wrong password"):
        keys.decrypt_envelope(UPSTREAM_VECTORS[0], b"supersecreT")


def test_unsupported_scrypt_parameters_are_refused() -> None:
    # Also upstream's: N=99 r=99 p=99 must be refused before any work is done.
    doc = json.loads(UPSTREAM_VECTORS[0])
    doc["kdf"]["params"] = {"N": 99, "r": 99, "p": 99}
    with pytest.raises(KeyFileError, match="unsupported scrypt parameters"):
        keys.decrypt_envelope(json.dumps(doc).encode(), b"supersecret")


def test_encrypted_key_round_trip_and_shape(tmp_path: Path) -> None:
    private_path, public_path = keys.write_key_pair(tmp_path / "cosign", b"s3cret")
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    text = private_path.read_text()
    assert text.startswith("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    body = base64.b64decode("".join(text.strip().splitlines()[1:-1]))
    assert body.startswith(b'{"kdf":{"name":"scrypt","params":{"N":65536,"r":8,"p":1},"salt":"')
    doc = json.loads(body)
    assert list(doc) == ["kdf", "cipher", "ciphertext"]
    assert doc["cipher"]["name"] == "nacl/secretbox"
    assert len(base64.b64decode(doc["kdf"]["salt"])) == 32
    assert len(base64.b64decode(doc["cipher"]["nonce"])) == 24
    key = keys.load_private_key(private_path, b"s3cret")
    public = keys.load_public_key(public_path)
    assert keys.public_key_pem(key.public_key()) == keys.public_key_pem(public)
    signature = keys.sign_bytes(key, b"hello")
    assert keys.verify_bytes(public, b"hello", signature)
    assert not keys.verify_bytes(public, b"hellO", signature)


def test_wrong_password_is_a_clear_error(tmp_path: Path) -> None:
    private_path, _ = keys.write_key_pair(tmp_path / "cosign", b"right")
    with pytest.raises(KeyFileError, match="wrong password"):
        keys.load_private_key(private_path, b"wrong")


def test_encrypted_key_without_password_says_so(tmp_path: Path) -> None:
    private_path, _ = keys.write_key_pair(tmp_path / "cosign", b"x")
    with pytest.raises(KeyFileError, match="COSIGN_PASSWORD"):
        keys.load_private_key(private_path, None)


def test_password_callback_only_asked_when_needed(tmp_path: Path) -> None:
    pem = tmp_path / "plain.pem"
    run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(pem)])

    def ask() -> bytes:
        raise AssertionError("asked for a password for a plain key")

    keys.load_private_key(pem, ask)


@pytest.mark.parametrize("kind", ["sec1", "pkcs8"])
def test_plain_openssl_p256_keys_are_accepted(tmp_path: Path, kind: str) -> None:
    pem = tmp_path / "key.pem"
    if kind == "sec1":
        run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(pem)])
    else:
        run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(pem)])
    key = keys.load_private_key(pem)
    assert isinstance(key.curve, ec.SECP256R1)


def test_other_curves_are_refused(tmp_path: Path) -> None:
    pem = tmp_path / "key.pem"
    run(["openssl", "ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out", str(pem)])
    with pytest.raises(KeyFileError, match="P-256"):
        keys.load_private_key(pem)


def test_ecr_keygen_cli(tmp_path: Path) -> None:
    env = {**os.environ, "COSIGN_PASSWORD": "pw"}
    proc = subprocess.run(["ecr", "keygen", "--output-prefix", str(tmp_path / "k")], capture_output=True,
                          text=True, env=env, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert keys.load_private_key(tmp_path / "k.key", b"pw")
    # openssl reads the public key as an EC P-256 SubjectPublicKeyInfo.
    text = run(["openssl", "pkey", "-pubin", "-in", str(tmp_path / "k.pub"), "-noout", "-text"]).stdout
    assert "prime256v1" in text or "P-256" in text
    again = subprocess.run(["ecr", "keygen", "--output-prefix", str(tmp_path / "k")], capture_output=True,
                           text=True, env=env, timeout=120, stdin=subprocess.DEVNULL)
    assert again.returncode == 2 and "exists" in again.stderr


def test_ecr_keygen_without_password_or_terminal_fails_clearly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "COSIGN_PASSWORD"}
    proc = subprocess.run(["ecr", "keygen", "--output-prefix", str(tmp_path / "k")], capture_output=True,
                          text=True, env=env, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2  # usage: the key password is missing, no signature is involved
    assert "COSIGN_PASSWORD" in proc.stderr
    assert not (tmp_path / "k.key").exists()
