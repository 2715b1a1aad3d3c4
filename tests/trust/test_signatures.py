"""Signing and verifying bundles against a real Distribution registry.

The first test checks a native signature with openssl and plain HTTP only: no project
code reads it back. The others tamper with what the registry holds.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from ecr_oci.trust.keys import write_key_pair
from tests.conftest import BASE_METADATA, write_bundle
from tests.support import Registry
from tests.trust.helpers import (
    cosign_referrers,
    ecr,
    get_blob,
    get_manifest,
    openssl_verify,
    put_manifest,
    sig_tag,
    tamper_payloads,
)

SIGNATURE = "dev.cosignproject.cosign/signature"
SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"


@pytest.fixture(scope="module")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_key_pair(tmp_path_factory.mktemp("keys") / "cosign", b"pw")


@pytest.fixture(scope="module")
def other_keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_key_pair(tmp_path_factory.mktemp("other") / "other", b"pw")


def push(registry: Registry, root: Path, layout: Path, ref_path: str, *, weights: bytes = b"\x01" * 4096) -> str:
    """Push a bundle; returns the digest of its index."""
    bundle = write_bundle(root, layout, dict(BASE_METADATA), weights=weights)
    pinned = ecr("push", "--quiet", str(bundle), f"{registry.host}/{ref_path}").stdout.strip()
    return pinned.rsplit("@", 1)[1]


def test_native_signature_verifies_with_openssl_alone(
    registry: Registry, tiny_layout: Path, tmp_path: Path, keypair: tuple[Path, Path]
) -> None:
    key, pub = keypair
    repo = "alice/signed"
    digest = push(registry, tmp_path / "b", tiny_layout, f"{repo}:1.0.0")
    signed = ecr("sign", "--native", f"{registry.host}/{repo}:1.0.0", "--key", str(key))
    assert signed.stdout.strip() == f"{registry.host}/{repo}@{digest}"
    assert digest in signed.stderr

    # Everything below reads the registry with plain HTTP and checks with openssl.
    _, sig_manifest = get_manifest(registry.url, repo, sig_tag(digest))
    assert sig_manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    [layer] = sig_manifest["layers"]
    assert layer["mediaType"] == SIMPLESIGNING
    payload = get_blob(registry.url, repo, layer["digest"])
    signature = base64.b64decode(layer["annotations"][SIGNATURE])
    check = openssl_verify(pub, payload, signature, tmp_path)
    assert check.returncode == 0 and "Verified OK" in check.stdout, check.stdout + check.stderr
    claims = json.loads(payload)
    assert claims["critical"] == {
        "identity": {"docker-reference": f"{registry.host}/{repo}"},
        "image": {"docker-manifest-digest": digest},
        "type": "cosign container image signature",
    }
    assert claims["optional"] == {"org.waggle.ecr.tag": "1.0.0"}
    # The config go-containerregistry writes for a signature image.
    config = json.loads(get_blob(registry.url, repo, sig_manifest["config"]["digest"]))
    assert config["rootfs"] == {"type": "layers", "diff_ids": [layer["digest"]]}
    assert sig_manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"

    # The same signature is discoverable as a referrer of the bundle index.
    [entry] = cosign_referrers(registry.url, repo, digest)
    _, referrer = get_manifest(registry.url, repo, entry["digest"])
    assert referrer["subject"]["digest"] == digest
    assert referrer["artifactType"] == "application/vnd.dev.cosign.artifact.sig.v1+json"
    [ref_layer] = referrer["layers"]
    assert ref_layer["digest"] == layer["digest"]
    assert ref_layer["annotations"][SIGNATURE] == layer["annotations"][SIGNATURE]

    ok = ecr("verify", f"{registry.host}/{repo}:1.0.0", "--key", str(pub))
    assert ok.stdout.strip() == f"{registry.host}/{repo}@{digest}"
    assert "verified" in ok.stderr


def test_resigning_adds_no_duplicate_and_second_key_appends(
    registry: Registry, tiny_layout: Path, tmp_path: Path,
    keypair: tuple[Path, Path], other_keypair: tuple[Path, Path],
) -> None:
    repo = "alice/twice"
    ref = f"{registry.host}/{repo}:1.0.0"
    digest = push(registry, tmp_path / "b", tiny_layout, f"{repo}:1.0.0")
    ecr("sign", "--native", ref, "--key", str(keypair[0]))
    again = ecr("sign", "--native", ref, "--key", str(keypair[0]))
    assert "already signed" in again.stderr
    assert len(get_manifest(registry.url, repo, sig_tag(digest))[1]["layers"]) == 1
    assert len(cosign_referrers(registry.url, repo, digest)) == 1
    ecr("sign", "--native", ref, "--key", str(other_keypair[0]))
    layers = get_manifest(registry.url, repo, sig_tag(digest))[1]["layers"]
    assert len(layers) == 2
    config_digest = get_manifest(registry.url, repo, sig_tag(digest))[1]["config"]["digest"]
    config = json.loads(get_blob(registry.url, repo, config_digest))
    assert config["rootfs"]["diff_ids"] == [layer["digest"] for layer in layers]
    assert len(config["history"]) == 2
    ecr("verify", ref, "--key", str(keypair[1]))
    ecr("verify", ref, "--key", str(other_keypair[1]))


def test_unsigned_bundle(registry: Registry, tiny_layout: Path, tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    repo = "alice/unsigned"
    digest = push(registry, tmp_path / "b", tiny_layout, f"{repo}:1.0.0")
    proc = ecr("verify", f"{registry.host}/{repo}:1.0.0", "--key", str(keypair[1]), check=False)
    assert proc.returncode == 9
    assert "is not signed" in proc.stderr and digest in proc.stderr
    out = tmp_path / "out"
    pulled = ecr("pull", "--quiet", "--require-signature", str(keypair[1]), "-o", str(out),
                 f"{registry.host}/{repo}:1.0.0", check=False)
    assert pulled.returncode == 9 and "is not signed" in pulled.stderr
    assert not out.exists()


def test_pull_require_signature_accepts_a_signed_bundle(
    registry: Registry, tiny_layout: Path, tmp_path: Path, keypair: tuple[Path, Path]
) -> None:
    repo = "alice/pullme"
    ref = f"{registry.host}/{repo}:1.0.0"
    digest = push(registry, tmp_path / "b", tiny_layout, f"{repo}:1.0.0")
    ecr("sign", "--native", ref, "--key", str(keypair[0]))
    out = tmp_path / "out"
    pulled = ecr("pull", "--quiet", "--platform", "linux/arm64", "--require-signature", str(keypair[1]),
                 "-o", str(out), ref)
    assert pulled.stdout.strip() == f"{registry.host}/{repo}@{digest}"
    assert (out / "model" / "weights.bin").exists()
    assert json.loads((out / "ecr-bundle.json").read_text())["digest"] == digest


def test_tampered_payload_is_rejected(
    registry: Registry, tiny_layout: Path, tmp_path: Path, keypair: tuple[Path, Path]
) -> None:
    repo = "alice/tampered"
    ref = f"{registry.host}/{repo}:1.0.0"
    digest = push(registry, tmp_path / "b", tiny_layout, f"{repo}:1.0.0")
    ecr("sign", "--native", ref, "--key", str(keypair[0]))

    def flip_one_byte(payload: bytes) -> bytes:
        at = payload.index(b"cosign container image signature") + 3
        return payload[:at] + bytes([payload[at] ^ 0x20]) + payload[at + 1 :]

    tamper_payloads(registry.url, repo, digest, flip_one_byte)
    proc = ecr("verify", ref, "--key", str(keypair[1]), check=False)
    assert proc.returncode == 9
    assert "does not verify with cosign.pub" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    out = tmp_path / "out"
    pulled = ecr("pull", "--quiet", "--require-signature", str(keypair[1]), "-o", str(out), ref, check=False)
    assert pulled.returncode == 9 and "does not verify" in pulled.stderr
    assert not out.exists()


def test_repointed_tag_is_rejected(
    registry: Registry, tiny_layout: Path, tmp_path: Path, keypair: tuple[Path, Path]
) -> None:
    repo = "alice/moved"
    ref = f"{registry.host}/{repo}:1.0.0"
    signed = push(registry, tmp_path / "a", tiny_layout, f"{repo}:1.0.0")
    ecr("sign", "--native", ref, "--key", str(keypair[0]))
    moved = push(registry, tmp_path / "b", tiny_layout, f"{repo}:1.0.0", weights=b"\x02" * 4096)
    assert moved != signed
    proc = ecr("verify", ref, "--key", str(keypair[1]), check=False)
    assert proc.returncode == 9
    assert "re-pointed" in proc.stderr and moved in proc.stderr and signed in proc.stderr
    out = tmp_path / "out"
    pulled = ecr("pull", "--quiet", "--require-signature", str(keypair[1]), "-o", str(out), ref, check=False)
    assert pulled.returncode == 9 and "re-pointed" in pulled.stderr
    assert not out.exists()
    # The signed digest itself still verifies.
    ecr("verify", f"{registry.host}/{repo}@{signed}", "--key", str(keypair[1]))


def test_signature_by_another_key_is_rejected(
    registry: Registry, tiny_layout: Path, tmp_path: Path,
    keypair: tuple[Path, Path], other_keypair: tuple[Path, Path],
) -> None:
    repo = "alice/otherkey"
    ref = f"{registry.host}/{repo}:1.0.0"
    push(registry, tmp_path / "b", tiny_layout, f"{repo}:1.0.0")
    ecr("sign", "--native", ref, "--key", str(other_keypair[0]))
    proc = ecr("verify", ref, "--key", str(keypair[1]), check=False)
    assert proc.returncode == 9 and "does not verify with cosign.pub" in proc.stderr
    out = tmp_path / "out"
    pulled = ecr("pull", "--quiet", "--require-signature", str(keypair[1]), "-o", str(out), ref, check=False)
    assert pulled.returncode == 9
    assert not out.exists()


def test_signature_copied_from_another_digest_is_rejected(
    registry: Registry, tiny_layout: Path, tmp_path: Path, keypair: tuple[Path, Path]
) -> None:
    repo = "alice/copied"
    signed = push(registry, tmp_path / "a", tiny_layout, f"{repo}:1.0.0")
    ecr("sign", "--native", f"{registry.host}/{repo}:1.0.0", "--key", str(keypair[0]))
    other = push(registry, tmp_path / "b", tiny_layout, f"{repo}:2.0.0", weights=b"\x03" * 4096)
    _, manifest = get_manifest(registry.url, repo, sig_tag(signed))
    put_manifest(registry.url, repo, sig_tag(other), manifest)
    proc = ecr("verify", f"{registry.host}/{repo}:2.0.0", "--key", str(keypair[1]), check=False)
    assert proc.returncode == 9
    assert f"names {signed}, not {other}" in proc.stderr


def test_wrong_password_when_signing(
    registry: Registry, tiny_layout: Path, tmp_path: Path, keypair: tuple[Path, Path]
) -> None:
    repo = "alice/nopass"
    push(registry, tmp_path / "b", tiny_layout, f"{repo}:1.0.0")
    proc = ecr("sign", "--native", f"{registry.host}/{repo}:1.0.0", "--key", str(keypair[0]),
               password="nope", check=False)
    assert proc.returncode == 2 and "wrong password" in proc.stderr  # usage: the key password
    assert not any(t.endswith(".sig") for t in registry.tags(repo))


def test_plain_pem_key_signs(registry: Registry, tiny_layout: Path, tmp_path: Path) -> None:
    import subprocess

    repo = "alice/plainpem"
    ref = f"{registry.host}/{repo}:1.0.0"
    push(registry, tmp_path / "b", tiny_layout, f"{repo}:1.0.0")
    key, pub = tmp_path / "ec.pem", tmp_path / "ec.pub"
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key)], check=True)
    subprocess.run(["openssl", "ec", "-in", str(key), "-pubout", "-out", str(pub)], check=True, capture_output=True)
    ecr("sign", "--native", ref, "--key", str(key), password=None)
    ecr("verify", ref, "--key", str(pub))


FAKE_COSIGN = """#!{python}
# A stand-in for cosign (not installable here): records its arguments, answers
# `version`, and signs through `ecr sign --native` (same wire format as cosign v2).
import os, subprocess, sys
args = sys.argv[1:]
if args == ["version"]:
    print("GitVersion:    v" + os.environ["FAKE_COSIGN_VERSION"])
    sys.exit(0)
with open(os.environ["FAKE_COSIGN_LOG"], "a") as log:
    log.write(" ".join(args) + "\\n")
assert args[0] == "sign" and "COSIGN_PASSWORD" in os.environ
key = args[args.index("--key") + 1]
notes = [args[i + 1] for i, a in enumerate(args) if a == "-a"]
cmd = ["ecr", "sign", "--native", "--key", key, args[-1]]
for note in notes:
    cmd += ["-a", note]
sys.exit(subprocess.run(cmd).returncode)
"""


@pytest.mark.parametrize("version", ["2.4.1", "3.0.2"])
def test_cosign_on_path_is_used_with_offline_flags(
    registry: Registry, tiny_layout: Path, tmp_path: Path, keypair: tuple[Path, Path], version: str
) -> None:
    import os
    import sys

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "cosign"
    fake.write_text(FAKE_COSIGN.format(python=sys.executable))
    fake.chmod(0o755)
    log = tmp_path / "cosign.log"
    repo = f"alice/viacosign{version[0]}"
    ref = f"{registry.host}/{repo}:1.0.0"
    digest = push(registry, tmp_path / "b", tiny_layout, f"{repo}:1.0.0")
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_COSIGN_VERSION": version,
           "FAKE_COSIGN_LOG": str(log)}
    signed = ecr("sign", ref, "--key", str(keypair[0]), env=env)
    assert f"cosign v{version}" in signed.stderr
    [line] = log.read_text().splitlines()
    args = line.split()
    assert "--tlog-upload=false" in args and "--yes" in args
    assert ("--use-signing-config=false" in args) == version.startswith("3")
    assert ("--new-bundle-format=false" in args) == version.startswith("3")
    assert "--allow-insecure-registry" in args  # plain-http loopback registry
    assert args[-1] == f"{registry.host}/{repo}@{digest}"  # cosign signs the resolved digest
    assert "org.waggle.ecr.tag=1.0.0" in args
    assert len(cosign_referrers(registry.url, repo, digest)) == 1  # attached by ecr after cosign
    ecr("verify", ref, "--key", str(keypair[1]))


def test_cosign_gets_a_plain_pem_key_rewrapped(registry: Registry, tiny_layout: Path, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "cosign").write_text(FAKE_COSIGN.format(python=sys.executable))
    (bin_dir / "cosign").chmod(0o755)
    repo = "alice/viacosignpem"
    ref = f"{registry.host}/{repo}:1.0.0"
    push(registry, tmp_path / "b", tiny_layout, f"{repo}:1.0.0")
    key, pub = tmp_path / "ec.pem", tmp_path / "ec.pub"
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key)], check=True)
    subprocess.run(["openssl", "ec", "-in", str(key), "-pubout", "-out", str(pub)], check=True, capture_output=True)
    log = tmp_path / "cosign.log"
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FAKE_COSIGN_VERSION": "2.4.1",
           "FAKE_COSIGN_LOG": str(log)}
    ecr("sign", ref, "--key", str(key), password=None, env=env)
    args = log.read_text().split()
    assert args[args.index("--key") + 1] != str(key)  # a temporary cosign-format key
    ecr("verify", ref, "--key", str(pub))


def test_signing_a_digest_reference(
    registry: Registry, tiny_layout: Path, tmp_path: Path, keypair: tuple[Path, Path]
) -> None:
    repo = "alice/bydigest"
    digest = push(registry, tmp_path / "b", tiny_layout, f"{repo}:1.0.0")
    pinned = f"{registry.host}/{repo}@{digest}"
    assert ecr("sign", "--native", pinned, "--key", str(keypair[0]), "-a", "stage=approved").stdout.strip() == pinned
    [layer] = get_manifest(registry.url, repo, sig_tag(digest))[1]["layers"]
    claims = json.loads(get_blob(registry.url, repo, layer["digest"]))
    assert claims["optional"] == {"stage": "approved"}  # no tag claim for a digest reference
    ecr("verify", f"{registry.host}/{repo}:1.0.0", "--key", str(keypair[1]))
    missing = ecr("verify", f"{registry.host}/{repo}:9.9.9", "--key", str(keypair[1]), check=False)
    assert missing.returncode == 6


class _RepointingProxy:
    """An HTTP proxy in front of the registry that re-points a tag the moment a client has
    fetched a signature (a ``sha256-<hex>...`` manifest): the race a moving tag can win
    between verification and download. Everything else is forwarded unchanged."""

    def __init__(self, upstream: str, repo: str, tag: str, new_manifest: bytes, media_type: str) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        import requests

        proxy = self
        self.seen: list[str] = []
        self.moved_at: int | None = None
        self.armed = False  # re-point only once armed (signing reads signature tags too)
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                resp = requests.request(self.command, upstream + self.path, headers=headers, data=body,
                                        allow_redirects=False, timeout=60)
                with lock:
                    proxy.seen.append(f"{self.command} {self.path}")
                    signature_read = f"/v2/{repo}/manifests/sha256-" in self.path and self.command == "GET"
                    if signature_read and proxy.armed and proxy.moved_at is None:
                        moved = requests.put(f"{upstream}/v2/{repo}/manifests/{tag}", data=new_manifest,
                                             headers={"Content-Type": media_type}, timeout=10)
                        assert moved.status_code == 201, moved.text
                        proxy.moved_at = len(proxy.seen)
                self.send_response(resp.status_code)
                for key, value in resp.headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(resp.content)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def test_require_signature_pulls_the_verified_digest_when_the_tag_moves_meanwhile(
    registry: Registry, tiny_layout: Path, tmp_path: Path, keypair: tuple[Path, Path]
) -> None:
    repo = "alice/racing"
    signed_weights, moved_weights = b"\x11" * 4096, b"\x22" * 4096
    signed = push(registry, tmp_path / "a", tiny_layout, f"{repo}:1.0.0", weights=signed_weights)
    moved = push(registry, tmp_path / "b", tiny_layout, f"{repo}:moved", weights=moved_weights)
    moved_manifest, moved_doc = get_manifest(registry.url, repo, moved)
    proxy = _RepointingProxy(registry.url, repo, "1.0.0", moved_manifest, moved_doc["mediaType"])
    out = tmp_path / "out"
    try:
        # signed under the name the client uses (the payload names the repository with its host)
        ecr("sign", "--native", f"{proxy.host}/{repo}:1.0.0", "--key", str(keypair[0]))
        proxy.armed = True
        proxy.seen.clear()
        pulled = ecr("pull", "--quiet", "--model-only", "--require-signature", str(keypair[1]), "-o", str(out),
                     f"{proxy.host}/{repo}:1.0.0", check=False)
    finally:
        proxy.stop()
    assert proxy.moved_at is not None, f"the signature was never read:\n{proxy.seen}"
    assert get_manifest(registry.url, repo, "1.0.0")[0] == moved_manifest  # the tag did move mid-pull
    assert pulled.returncode == 0, pulled.stderr
    assert pulled.stdout.strip() == f"{proxy.host}/{repo}@{signed}"
    assert (out / "model" / "weights.bin").read_bytes() == signed_weights
    # after verification nothing was asked for by tag any more: only by the verified digest
    after = proxy.seen[proxy.moved_at:]
    assert not [line for line in after if line.endswith("/manifests/1.0.0")], after
    assert any(f"/manifests/{signed}" in line for line in after), after
