"""Spec-exact answers of the gateway (distribution-spec 1.1, RFC 9110), against the real thing.

Each test names the answer expected; the answers before this work are in deploy/README.md
("Conformance"): 400 for ignorable ranges, 500 for foreign layers, 400 for reads of
impossible tags.
"""

from __future__ import annotations

import hashlib
import json
import os

import pytest
import requests

from ecr_oci import mediatypes as mt
from ecr_oci.digest import sha256_bytes
from ecr_oci.oci import canonical_json, descriptor
from tests.gateway.support import GatewayProcess, push_image

REPO = "alice/conf"
SCOPE = f"repository:{REPO}:pull,push,delete"
PAYLOAD = bytes(range(256)) * 4  # 1024 bytes

# (Range header, status, body slice or None for "whole blob", Content-Range)
RANGE_CASES = [
    ("bytes=0-9", 206, slice(0, 10), "bytes 0-9/1024"),
    ("bytes=1000-2000", 206, slice(1000, 1024), "bytes 1000-1023/1024"),
    ("bytes=-24", 206, slice(1000, 1024), "bytes 1000-1023/1024"),
    ("bytes=500-0", 200, None, None),  # last < first: an invalid specifier, ignored
    ("bytes=abc", 200, None, None),
    ("bytes=5-6-7", 200, None, None),
    ("items=0-1", 200, None, None),  # unknown unit: MUST be ignored
    ("bytes=99999999999-", 416, None, "bytes */1024"),
    ("bytes=1024-", 416, None, "bytes */1024"),
    ("bytes=-0", 416, None, "bytes */1024"),
    ("bytes=" + "9" * 5000 + "-", 416, None, "bytes */1024"),
]


def _path(location: str) -> str:
    return location if location.startswith("/") else "/" + location.split("/", 3)[3]


@pytest.fixture(scope="module")
def blob(gw: GatewayProcess) -> str:
    push_image(gw.client("alice"), REPO, "1.0.0", payload=PAYLOAD)
    return sha256_bytes(PAYLOAD)


def check_ranges(gw: GatewayProcess, repo: str, digest: str, payload: bytes) -> list[str]:
    """Every RANGE_CASES answer that is not as expected (GET and HEAD)."""
    wrong = []
    scope = f"repository:{repo}:pull"
    for header, status, part, content_range in RANGE_CASES:
        got = gw.call("alice", "GET", f"/v2/{repo}/blobs/{digest}", scope, headers={"Range": header})
        want_body = payload if status == 200 else payload[part] if part else None
        if (got.status_code != status or got.headers.get("Content-Range") != content_range
                or (want_body is not None and got.content != want_body)):
            wrong.append(f"GET {header[:40]} -> {got.status_code} {got.headers.get('Content-Range')}")
        head = gw.call("alice", "HEAD", f"/v2/{repo}/blobs/{digest}", scope, headers={"Range": header})
        if head.status_code != status:
            wrong.append(f"HEAD {header[:40]} -> {head.status_code}")
    return wrong


def test_blob_ranges_from_local_storage_follow_rfc9110(gw: GatewayProcess, blob: str) -> None:
    assert check_ranges(gw, REPO, blob, PAYLOAD) == []


@pytest.mark.parametrize("form", ["{s}-{e}", "bytes {s}-{e}/*", "bytes {s}-{e}/60", "bytes={s}-{e}"])
def test_out_of_order_chunk_is_416_with_the_range_received(gw: GatewayProcess, form: str) -> None:
    started = gw.call("alice", "POST", f"/v2/{REPO}/blobs/uploads/", SCOPE)
    octets = {"Content-Type": "application/octet-stream"}
    first = gw.call("alice", "PATCH", _path(started.headers["Location"]), SCOPE, data=b"a" * 30,
                    headers={**octets, "Content-Range": form.format(s=0, e=29)})
    assert first.status_code == 202, first.text
    path = _path(first.headers["Location"])
    for bad in (form.format(s=40, e=69), form.format(s=0, e=29), form.format(s=30, e=10), "thirty-sixty"):
        refused = gw.call("alice", "PATCH", path, SCOPE, data=b"b" * 30, headers={**octets, "Content-Range": bad})
        assert refused.status_code == 416, (bad, refused.status_code, refused.text)
        assert refused.headers["Range"] == "0-29", bad
        assert refused.json()["errors"][0]["code"] == "BLOB_UPLOAD_INVALID"
    second = gw.call("alice", "PATCH", path, SCOPE, data=b"b" * 30,
                     headers={**octets, "Content-Range": form.format(s=30, e=59)})
    assert second.status_code == 202 and second.headers["Range"] == "0-59"
    digest = sha256_bytes(b"a" * 30 + b"b" * 30)
    done = gw.call("alice", "PUT", _path(second.headers["Location"]) + f"&digest={digest}", SCOPE,
                   headers={"Content-Length": "0"})
    assert done.status_code == 201, done.text


def test_a_one_byte_first_chunk_can_be_continued(gw: GatewayProcess) -> None:
    """Distribution reports ``0-0`` for an empty and a one-byte upload alike."""
    started = gw.call("alice", "POST", f"/v2/{REPO}/blobs/uploads/", SCOPE)
    octets = {"Content-Type": "application/octet-stream"}
    one = gw.call("alice", "PATCH", _path(started.headers["Location"]), SCOPE, data=b"x",
                  headers={**octets, "Content-Range": "0-0"})
    more = gw.call("alice", "PATCH", _path(one.headers["Location"]), SCOPE, data=b"yz",
                   headers={**octets, "Content-Range": "1-2"})
    assert more.status_code == 202 and more.headers["Range"] == "0-2"


BAD_DIGESTS = ["sha256:abc", "sha256:" + "g" * 64, "sha256:" + "a" * 64 + "x", "sha256:" + "A" * 64,
               "sha512:" + "a" * 128, "md5:0123", "sha256:", ":", "sha256:%00" + "a" * 62, "x" * 300 + ":a"]


def test_malformed_digests_are_400_or_404_on_every_route(gw: GatewayProcess, blob: str) -> None:
    wrong = []
    for bad in BAD_DIGESTS:
        for method, path in (("GET", f"/v2/{REPO}/manifests/{bad}"), ("HEAD", f"/v2/{REPO}/manifests/{bad}"),
                             ("DELETE", f"/v2/{REPO}/manifests/{bad}"), ("PUT", f"/v2/{REPO}/manifests/{bad}"),
                             ("GET", f"/v2/{REPO}/blobs/{bad}"), ("HEAD", f"/v2/{REPO}/blobs/{bad}"),
                             ("DELETE", f"/v2/{REPO}/blobs/{bad}"), ("GET", f"/v2/{REPO}/referrers/{bad}"),
                             ("POST", f"/v2/{REPO}/blobs/uploads/?digest={bad}")):
            resp = gw.call("alice", method, path, SCOPE, data=b"{}" if method in ("PUT", "POST") else None)
            code = resp.json()["errors"][0]["code"] if method != "HEAD" and resp.status_code == 400 else None
            if resp.status_code not in (400, 404) or code not in (None, "DIGEST_INVALID"):
                wrong.append(f"{method} {path[:90]} -> {resp.status_code} {code}")
    # a mount of a malformed digest is a plain upload session, as for any blob the registry lacks
    mount = gw.call("alice", "POST", f"/v2/{REPO}/blobs/uploads/?mount=sha256:abc&from={REPO}", SCOPE)
    assert mount.status_code == 202
    assert wrong == []


def test_reads_of_an_impossible_tag_are_404_and_its_put_is_400(gw: GatewayProcess, blob: str) -> None:
    for method in ("GET", "HEAD", "DELETE"):
        resp = gw.call("alice", method, f"/v2/{REPO}/manifests/.INVALID_MANIFEST_NAME", SCOPE)
        assert resp.status_code == 404, method
        if method != "HEAD":
            assert resp.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    put = gw.call("alice", "PUT", f"/v2/{REPO}/manifests/.INVALID_MANIFEST_NAME", SCOPE, data=b"{}",
                  headers={"Content-Type": mt.OCI_MANIFEST})
    assert put.status_code == 400 and put.json()["errors"][0]["code"] == "TAG_INVALID"


FOREIGN_TYPES = ["application/vnd.oci.image.layer.nondistributable.v1.tar",
                 "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                 "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"]


def _foreign_manifest(gw: GatewayProcess, media_type: str, urls: list[str]) -> bytes:
    config = json.dumps({"architecture": "amd64", "os": "windows", "rootfs": {"type": "layers", "diff_ids": []}})
    gw.client("alice").upload_bytes(REPO, config.encode())
    layer = {**descriptor(media_type, "sha256:" + hashlib.sha256(media_type.encode()).hexdigest(), 123456),
             "urls": urls}
    return canonical_json({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
                           "config": descriptor(mt.OCI_CONFIG, sha256_bytes(config.encode()), len(config)),
                           "layers": [layer]})


@pytest.mark.parametrize("media_type", FOREIGN_TYPES)
def test_foreign_layers_are_accepted_and_served(gw: GatewayProcess, media_type: str) -> None:
    manifest = _foreign_manifest(gw, media_type, ["https://mcr.example/layer.tar.gz"])
    tag = f"foreign-{FOREIGN_TYPES.index(media_type)}"
    put = gw.call("alice", "PUT", f"/v2/{REPO}/manifests/{tag}", SCOPE, data=manifest,
                  headers={"Content-Type": mt.OCI_MANIFEST})
    assert put.status_code == 201, put.text
    for reference in (tag, sha256_bytes(manifest)):
        got = gw.call("alice", "GET", f"/v2/{REPO}/manifests/{reference}", f"repository:{REPO}:pull")
        assert got.status_code == 200 and got.content == manifest
        assert got.headers["Docker-Content-Digest"] == sha256_bytes(manifest)


@pytest.mark.parametrize("urls", [["ftp://mcr.example/layer"], ["https://mcr.example/l#frag"], ["/relative"],
                                  "https://not-a-list", [7]])
def test_foreign_layers_with_bad_urls_are_a_clean_400(gw: GatewayProcess, urls: list[str]) -> None:
    manifest = _foreign_manifest(gw, FOREIGN_TYPES[1], urls)
    put = gw.call("alice", "PUT", f"/v2/{REPO}/manifests/bad-urls", SCOPE, data=manifest,
                  headers={"Content-Type": mt.OCI_MANIFEST})
    assert put.status_code == 400, put.text
    error = put.json()["errors"][0]
    assert error["code"] == "MANIFEST_INVALID" and "layers[0].urls" in error["message"]


def test_deeply_nested_manifests_and_indexes_are_a_clean_400(gw: GatewayProcess) -> None:
    for body, media_type in ((b'{"a":' * 50_000 + b"1" + b"}" * 50_000, mt.OCI_MANIFEST),
                             (b'{"schemaVersion":2,"manifests":' + b"[" * 50_000 + b"]" * 50_000 + b"}", mt.OCI_INDEX)):
        resp = gw.call("alice", "PUT", f"/v2/{REPO}/manifests/deep", SCOPE, data=body,
                       headers={"Content-Type": media_type})
        assert resp.status_code == 400 and resp.json()["errors"][0]["code"] == "MANIFEST_INVALID", resp.text


def test_sha512_uploads_are_refused_at_once(gw: GatewayProcess) -> None:
    data = b"sha512-addressed content"
    sha512 = "sha512:" + hashlib.sha512(data).hexdigest()
    octets = {"Content-Type": "application/octet-stream"}
    monolithic = gw.call("alice", "POST", f"/v2/{REPO}/blobs/uploads/?digest={sha512}", SCOPE, data=data,
                         headers=octets)
    started = gw.call("alice", "POST", f"/v2/{REPO}/blobs/uploads/", SCOPE)
    session = gw.call("alice", "PUT", _path(started.headers["Location"]) + f"&digest={sha512}", SCOPE, data=data,
                      headers=octets)
    by_reference = gw.call("alice", "PUT", f"/v2/{REPO}/manifests/{sha512}", SCOPE, data=b"{}",
                           headers={"Content-Type": mt.OCI_MANIFEST})
    for resp in (monolithic, session, by_reference):
        assert resp.status_code == 400, resp.text
        error = resp.json()["errors"][0]
        assert error["code"] == "DIGEST_INVALID" and "sha512" in error["message"] and "sha256" in error["message"]
    # nothing was stored under the sha256 of the same bytes either
    head = gw.call("alice", "HEAD", f"/v2/{REPO}/blobs/{sha256_bytes(data)}", SCOPE)
    assert head.status_code == 404
    assert requests.get(f"{gw.url}/healthz", timeout=10).status_code == 200


def test_monolithic_post_stores_the_blob_at_once(gw: GatewayProcess) -> None:
    """``POST ?digest=`` with the body is 201 (Distribution 2.8 alone answers 202 without reading
    the body, and drops the connection under a large one: a 500 through the proxy before)."""
    octets = {"Content-Type": "application/octet-stream"}
    for size in (0, 1 << 10, 6 << 20):
        data = os.urandom(size)
        digest = sha256_bytes(data)
        resp = gw.call("alice", "POST", f"/v2/{REPO}/blobs/uploads/?digest={digest}", SCOPE, data=data,
                       headers=octets)
        assert resp.status_code == 201, (size, resp.status_code, resp.text)
        assert resp.headers["Docker-Content-Digest"] == digest
        assert resp.headers["Location"].endswith(f"/v2/{REPO}/blobs/{digest}")
        assert gw.call("alice", "GET", f"/v2/{REPO}/blobs/{digest}", SCOPE).content == data
    wrong = gw.call("alice", "POST", f"/v2/{REPO}/blobs/uploads/?digest=sha256:{'0' * 64}", SCOPE, data=b"x",
                    headers=octets)
    assert wrong.status_code == 400 and wrong.json()["errors"][0]["code"] == "DIGEST_INVALID"


@pytest.mark.parametrize("field,value", [("mediaType", []), ("mediaType", {"a": 1}), ("mediaType", 7),
                                         ("schemaVersion", "2"), ("config", []), ("layers", {}),
                                         ("annotations", ["a"]), ("subject", "sha256:abc"), ("artifactType", [])])
def test_manifest_fields_of_the_wrong_type_are_a_clean_400(gw: GatewayProcess, field: str, value: object) -> None:
    """Found by tests/gateway/test_fuzz.py: ``"mediaType": []`` was a 500 (unhashable in a set lookup)."""
    doc = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
           "config": descriptor(mt.OCI_CONFIG, "sha256:" + "1" * 64, 2), "layers": [], field: value}
    resp = gw.call("alice", "PUT", f"/v2/{REPO}/manifests/typed", SCOPE, data=json.dumps(doc).encode(),
                   headers={"Content-Type": mt.OCI_MANIFEST})
    assert resp.status_code == 400 and resp.json()["errors"][0]["code"] == "MANIFEST_INVALID", resp.text
