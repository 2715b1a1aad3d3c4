"""Every private-key format annotations-spec/v1/trust.md §1 lists signs a pushed bundle.

The table lists the keys ``ecr sign`` and ``ecr provenance attach`` accept: both are run.

Each key is made by the tool the table names: ``ecr keygen`` for cosign's encrypted
format, the openssl CLI for SEC 1, PKCS #8 and password-based PKCS #8. The bundle is
signed with ``ecr sign`` and given provenance with ``ecr provenance attach``; the cosign
signature and the DSSE envelope are read back over plain HTTP and checked with ``openssl
dgst -sha256 -verify`` (the DSSE one over the PAE bytes) against the public key openssl
(or keygen) wrote: no project code reads them back. cosign itself is not installable here; before v2
it wrote the same scrypt/secretbox envelope under the label ``ENCRYPTED COSIGN PRIVATE
KEY``, so that format is a keygen key under the old label (the envelope itself is checked
against upstream's vectors in test_keys.py).

Formats the table does not list (RSA, Ed25519, EC P-384) are refused with one line and
exit 2 (a key file of an unsupported kind is a usage error), and nothing is pushed.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support import Registry, run
from tests.trust.helpers import ecr, get_blob, get_manifest, openssl_verify, sig_tag
from tests.trust.test_provenance import envelope_of, pae
from tests.trust.test_signatures import SIGNATURE, SIMPLESIGNING, push

PASSWORD = "key-format-pw"


def make_key(kind: str, directory: Path) -> tuple[Path, Path, str | None]:
    """(private key, public key, COSIGN_PASSWORD or None) for one format of the table."""
    key, pub = directory / "key.pem", directory / "key.pub"
    if kind in ("sigstore", "cosign"):
        proc = subprocess.run(["ecr", "keygen", "--output-prefix", str(directory / "k")], capture_output=True,
                              text=True, timeout=120, stdin=subprocess.DEVNULL,
                              env={**os.environ, "COSIGN_PASSWORD": PASSWORD})
        assert proc.returncode == 0, proc.stderr
        key, pub = directory / "k.key", directory / "k.pub"
        if kind == "cosign":
            key.write_text(key.read_text().replace("ENCRYPTED SIGSTORE PRIVATE KEY", "ENCRYPTED COSIGN PRIVATE KEY"))
        return key, pub, PASSWORD
    if kind == "sec1":
        run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key)])
        run(["openssl", "ec", "-in", str(key), "-pubout", "-out", str(pub)])
        return key, pub, None
    if kind == "pkcs8":
        run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key)])
        run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub)])
        return key, pub, None
    if kind == "pkcs8-encrypted":
        plain = directory / "plain.pem"
        run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(plain)])
        run(["openssl", "pkcs8", "-topk8", "-in", str(plain), "-out", str(key), "-passout", f"pass:{PASSWORD}"])
        run(["openssl", "ec", "-in", str(plain), "-pubout", "-out", str(pub)])
        plain.unlink()
        return key, pub, PASSWORD
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "label"),
    [
        ("sigstore", "ENCRYPTED SIGSTORE PRIVATE KEY"),
        ("cosign", "ENCRYPTED COSIGN PRIVATE KEY"),
        ("sec1", "EC PRIVATE KEY"),
        ("pkcs8", "PRIVATE KEY"),
        ("pkcs8-encrypted", "ENCRYPTED PRIVATE KEY"),
    ],
    ids=["sigstore", "cosign", "sec1", "pkcs8", "pkcs8-encrypted"],
)
def test_listed_key_format_signs_and_attests_and_openssl_verifies(
    registry: Registry, tiny_layout: Path, tmp_path: Path, kind: str, label: str
) -> None:
    key, pub, password = make_key(kind, tmp_path)
    assert key.read_text().startswith(f"-----BEGIN {label}-----\n"), key.read_text()[:60]
    repo = f"alice/keyformat-{kind}"
    digest = push(registry, tmp_path / "b", tiny_layout, f"{repo}:1.0.0")
    signed = ecr("sign", "--native", f"{registry.host}/{repo}:1.0.0", "--key", str(key), password=password)
    assert signed.stdout.strip() == f"{registry.host}/{repo}@{digest}"

    _, sig_manifest = get_manifest(registry.url, repo, sig_tag(digest))
    [layer] = sig_manifest["layers"]
    assert layer["mediaType"] == SIMPLESIGNING
    payload = get_blob(registry.url, repo, layer["digest"])
    assert json.loads(payload)["critical"]["image"]["docker-manifest-digest"] == digest
    check = openssl_verify(pub, payload, base64.b64decode(layer["annotations"][SIGNATURE]), tmp_path)
    assert check.returncode == 0 and "Verified OK" in check.stdout, check.stdout + check.stderr

    ecr("provenance", "attach", f"{registry.host}/{repo}:1.0.0", "--key", str(key), password=password)
    _, envelope = envelope_of(registry, repo, digest)
    body = base64.b64decode(envelope["payload"])
    [signature] = envelope["signatures"]
    check = openssl_verify(pub, pae(envelope["payloadType"], body), base64.b64decode(signature["sig"]), tmp_path)
    assert check.returncode == 0 and "Verified OK" in check.stdout, check.stdout + check.stderr


def test_password_based_pkcs8_without_cosign_password_names_the_variable(
    registry: Registry, tiny_layout: Path, tmp_path: Path
) -> None:
    key, _, _ = make_key("pkcs8-encrypted", tmp_path)
    repo = "alice/keyformat-nopass"
    push(registry, tmp_path / "b", tiny_layout, f"{repo}:1.0.0")
    proc = ecr("sign", "--native", f"{registry.host}/{repo}:1.0.0", "--key", str(key), password=None, check=False)
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: ") and "COSIGN_PASSWORD" in line
    assert not any(t.endswith(".sig") for t in registry.tags(repo))


@pytest.mark.parametrize(
    ("kind", "command"),
    [
        ("rsa", ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "{out}"]),
        ("rsa-traditional", ["openssl", "genrsa", "-traditional", "-out", "{out}", "2048"]),
        ("ed25519", ["openssl", "genpkey", "-algorithm", "ED25519", "-out", "{out}"]),
        ("p384", ["openssl", "ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out", "{out}"]),
    ],
    ids=["rsa-pkcs8", "rsa-traditional", "ed25519", "p384"],
)
def test_unlisted_key_format_is_refused_with_one_line(
    registry: Registry, tiny_layout: Path, tmp_path: Path, kind: str, command: list[str]
) -> None:
    key = tmp_path / "key.pem"
    run([arg.format(out=key) for arg in command])
    repo = f"alice/keyformat-refused-{kind}"
    push(registry, tmp_path / "b", tiny_layout, f"{repo}:1.0.0")
    proc = ecr("sign", "--native", f"{registry.host}/{repo}:1.0.0", "--key", str(key), password=None, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    assert "P-256" in lines[0], lines[0]
    attach = ecr("provenance", "attach", f"{registry.host}/{repo}:1.0.0", "--key", str(key), password=None,
                 check=False)
    assert attach.returncode == 2 and len(attach.stderr.strip().splitlines()) == 1, attach.stderr
    assert "P-256" in attach.stderr
    assert [t for t in registry.tags(repo) if t != "1.0.0"] == []  # no signature, no referrer
