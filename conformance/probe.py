"""Spot checks modelled on the requests of the OCI conformance suite v1.1: NOT the official suite.

    python3 conformance/probe.py

A stop-gap for machines where ``run.py`` cannot build the official suite (no Go module
proxy): ~50 requests of the pull, push, content-discovery and content-management
workflows (monolithic, streamed and chunked uploads, cross-mount, manifests with and
without layers, referrers with subject and artifactType filter, tag listing, deletes),
each sent to a fresh bare Distribution (anonymous) and to a fresh ``ecr serve`` (as
``admin``, with a reggie-like Bearer token dance), then printed side by side: ``DIFF``
marks checks whose outcome differs. Verdicts here are this script's reading of the spec,
not the suite's; only ``run.py`` answers the customer's criterion.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlparse

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

NS = "admin/conformance"
XNS = "admin/other"


def dig(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


class Client:
    """reggie-like: on 401 with a Bearer challenge, fetch a token (Basic) for the challenge's scope and retry."""

    def __init__(self, base: str, user: str | None, pw: str | None):
        self.base, self.user, self.pw = base, user, pw
        self.s = requests.Session()

    def do(self, method: str, path: str, **kw) -> requests.Response:
        url = path if path.startswith("http") else self.base + path
        r = self.s.request(method, url, allow_redirects=False, timeout=30, **kw)
        if r.status_code == 401 and self.user:
            ch = r.headers.get("WWW-Authenticate", "")
            params = dict(re.findall(r'(\w+)="([^"]*)"', ch))
            q = {"service": params.get("service", "")}
            if params.get("scope"):
                q["scope"] = params["scope"]
            t = requests.get(params["realm"], params=q, auth=(self.user, self.pw), timeout=30)
            tok = t.json().get("token") or t.json().get("access_token")
            h = dict(kw.pop("headers", {}) or {})
            h["Authorization"] = f"Bearer {tok}"
            r = self.s.request(method, url, allow_redirects=False, timeout=30, headers=h, **kw)
        return r


def rel(resp: requests.Response) -> str:
    loc = resp.headers.get("Location", "")
    u = urlparse(loc)
    return u.path + (("?" + u.query) if u.query else "")


results: list[tuple[str, bool, str]] = []


def check(name: str, resp: requests.Response, ok: bool, expect: str) -> None:
    where = f"{resp.request.method} {urlparse(resp.request.url or '').path}"
    detail = f"{where} -> {resp.status_code} (want {expect}) {resp.text[:200]!r}"
    results.append((name, ok, detail))


def upload(c, ns, data):
    r = c.do(
        "POST",
        f"/v2/{ns}/blobs/uploads/",
        params={"digest": dig(data)},
        data=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    if r.status_code == 202:
        r = c.do(
            "PUT", rel(r), params={"digest": dig(data)}, data=data, headers={"Content-Type": "application/octet-stream"}
        )
    assert r.status_code == 201, (r.status_code, r.text)


def run(c: Client) -> None:
    cfg = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": []},
            "author": os.urandom(8).hex(),
        },
        indent="\t",
    ).encode()
    layer = base64.b64decode(
        "H4sIAAAAAAAAA+3OQQrCMBCF4a49xXgBSUnaHMCTRBptQRNpp6i3t0UEV7oqIv7fYgbmzeJpHHSjVy0"
        "WZCa1c/MufWVe94N3RWlrZ72x3k/30nhbFWKWLPU0Dhp6keJ8im//PuU/6pZH2WVtYx8b0Sz7LjWSR5VLG6YRBumSzOlGtjkd+qD"
        "jMWiX07Befbs7AAAAAAAAAAAAAAAAAPyzO34MnqoAKAAA"
    )
    blob_a = os.urandom(42)
    # monolithic POST?digest
    r = c.do(
        "POST",
        f"/v2/{NS}/blobs/uploads/",
        params={"digest": dig(cfg)},
        data=cfg,
        headers={"Content-Type": "application/octet-stream"},
    )
    check("push: POST monolithic with digest -> 201/202", r, r.status_code in (201, 202), "201|202")
    if r.status_code == 202:
        r = c.do(
            "PUT", rel(r), params={"digest": dig(cfg)}, data=cfg, headers={"Content-Type": "application/octet-stream"}
        )
    # POST + PUT
    r = c.do("POST", f"/v2/{NS}/blobs/uploads/")
    check("push: POST session -> 202 + Location", r, r.status_code == 202 and bool(r.headers.get("Location")), "202")
    r = c.do(
        "PUT", rel(r), params={"digest": dig(layer)}, data=layer, headers={"Content-Type": "application/octet-stream"}
    )
    check("push: PUT upload -> 201 + Location", r, r.status_code == 201 and bool(r.headers.get("Location")), "201")
    # streamed PATCH
    r = c.do("POST", f"/v2/{NS}/blobs/uploads/")
    r = c.do("PATCH", rel(r), data=blob_a, headers={"Content-Type": "application/octet-stream"})
    check("push: streamed PATCH -> 202", r, r.status_code == 202, "202")
    r = c.do("PUT", rel(r), params={"digest": dig(blob_a)}, headers={"Content-Length": "0"})
    check("push: PUT after PATCH -> 201", r, r.status_code == 201, "201")
    # chunked
    blob_b = os.urandom(60)
    c1, c2 = blob_b[:30], blob_b[30:]
    r = c.do("POST", f"/v2/{NS}/blobs/uploads/", headers={"Content-Length": "0"})
    loc = rel(r)
    r = c.do("PATCH", loc, data=c2, headers={"Content-Type": "application/octet-stream", "Content-Range": "30-59"})
    check("push: out-of-order chunk -> 416", r, r.status_code == 416, "416")
    r = c.do("POST", f"/v2/{NS}/blobs/uploads/", headers={"Content-Length": "0"})
    r = c.do("PATCH", rel(r), data=c1, headers={"Content-Type": "application/octet-stream", "Content-Range": "0-29"})
    check("push: first chunk -> 202", r, r.status_code == 202, "202")
    loc = rel(r)
    r = c.do("GET", loc)
    check(
        "push: GET upload status -> 204 + Range 0-29",
        r,
        r.status_code == 204 and r.headers.get("Range") == "0-29",
        "204 Range:0-29 got Range=" + str(r.headers.get("Range")),
    )
    r = c.do("PATCH", loc, data=c2, headers={"Content-Type": "application/octet-stream", "Content-Range": "30-59"})
    check("push: second chunk -> 202", r, r.status_code == 202, "202")
    r = c.do("PUT", rel(r), params={"digest": dig(blob_b)}, headers={"Content-Length": "0"})
    check("push: PUT close chunked -> 201", r, r.status_code == 201, "201")
    # cross-mount
    upload(c, XNS, blob_a)
    r = c.do("POST", f"/v2/{NS}/blobs/uploads/", params={"mount": dig(layer), "from": XNS})
    # layer is not in XNS: should yield 202 session
    check("push: mount of blob absent in source -> 202", r, r.status_code == 202, "202")
    upload(c, XNS, layer)
    r = c.do("POST", f"/v2/{NS}-x/blobs/uploads/", params={"mount": dig(layer), "from": XNS})
    check("push: cross-mount -> 201", r, r.status_code == 201 and bool(r.headers.get("Location")), "201")
    r = c.do("GET", f"/v2/{NS}-x/blobs/{dig(layer)}")
    check("push: GET cross-mounted blob -> 200", r, r.status_code == 200, "200")
    r = c.do("POST", f"/v2/{NS}-y/blobs/uploads/", params={"mount": dig(layer)})
    check("push: automatic crossmount (no from) -> 201 or 202", r, r.status_code in (201, 202), "201|202")
    # manifests
    man = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": dig(cfg),
            "size": len(cfg),
            "data": base64.b64encode(cfg).decode(),
            "newUnspecifiedField": base64.b64encode(b"hello world").decode(),
        },
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "size": len(layer), "digest": dig(layer)}
        ],
    }
    mb = json.dumps(man, indent="\t").encode()
    md = dig(mb)
    for tag in ("test0", "tagtest0"):
        r = c.do(
            "PUT",
            f"/v2/{NS}/manifests/{tag}",
            data=mb,
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        )
        check(f"push: PUT manifest {tag} -> 201", r, r.status_code == 201 and bool(r.headers.get("Location")), "201")
    empty = {"schemaVersion": 2, "config": man["config"], "layers": []}
    eb = json.dumps(empty, indent="\t").encode()
    r = c.do(
        "PUT",
        f"/v2/{NS}/manifests/emptylayer",
        data=eb,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    check("push: PUT manifest with no layers (no mediaType field) -> 201", r, r.status_code == 201, "201")
    r = c.do(
        "PUT",
        f"/v2/{NS}/manifests/{md}",
        data=mb,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    check("push: PUT manifest by digest -> 201", r, r.status_code == 201, "201")
    r = c.do(
        "PUT",
        f"/v2/{NS}/manifests/bad",
        data=b"blablabla",
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    check(
        "push: PUT invalid manifest -> 400 MANIFEST_INVALID",
        r,
        r.status_code == 400 and "MANIFEST_INVALID" in r.text,
        "400",
    )
    r = c.do("GET", f"/v2/{NS}/manifests/{md}", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    check("pull: GET manifest by digest -> 200", r, r.status_code == 200, "200")
    r = c.do("HEAD", f"/v2/{NS}/manifests/test0", headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    check(
        "pull: HEAD manifest by tag -> 200 + Docker-Content-Digest",
        r,
        r.status_code == 200 and r.headers.get("Docker-Content-Digest") == md,
        "200",
    )
    r = c.do("GET", f"/v2/{NS}/manifests/.INVALID_MANIFEST_NAME")
    check("pull: GET nonexistent manifest -> 404", r, r.status_code == 404, "404")
    r = c.do("GET", f"/v2/{NS}/manifests/nonexistent-tag")
    check("pull: GET nonexistent tag -> 404 MANIFEST_UNKNOWN", r, r.status_code == 404, "404")
    r = c.do("HEAD", f"/v2/{NS}/blobs/{dig(cfg)}")
    check(
        "pull: HEAD blob -> 200 + Content-Length",
        r,
        r.status_code == 200 and r.headers.get("Content-Length") == str(len(cfg)),
        "200",
    )
    r = c.do("HEAD", f"/v2/{NS}/blobs/sha256:{'0' * 64}")
    check("pull: HEAD nonexistent blob -> 404", r, r.status_code == 404, "404")
    r = c.do("GET", f"/v2/{NS}/blobs/{dig(cfg)}")
    check("pull: GET blob -> 200 content", r, r.status_code == 200 and r.content == cfg, "200")
    r = c.do("GET", f"/v2/{NS}/blobs/sha256:{'0' * 64}")
    check("pull: GET nonexistent blob -> 404", r, r.status_code == 404, "404")
    r = c.do("GET", f"/v2/{NS}/blobs/sha256:{'0' * 64}", headers={"Range": "bytes=0-1"})
    r = c.do("GET", f"/v2/{NS}/manifests/test0", headers={"Accept": "application/vnd.oci.image.index.v1+json"})
    check("pull: GET manifest with index-only Accept (info)", r, True, "any")
    r = c.do("GET", "/v2/admin/doesnotexist/manifests/latest")
    check("pull: GET manifest of unknown repo -> 404", r, r.status_code == 404, "404")
    r = c.do("GET", "/v2/admin/doesnotexist/tags/list")
    check("pull: tags of unknown repo -> 404 NAME_UNKNOWN", r, r.status_code == 404, "404")
    # tags
    for i in range(4):
        c.do(
            "PUT",
            f"/v2/{NS}/manifests/t{i}",
            data=mb,
            headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
        )
    r = c.do("GET", f"/v2/{NS}/tags/list")
    check("discovery: tags list -> 200", r, r.status_code == 200, "200")
    tags = r.json().get("tags", []) if r.ok else []
    r = c.do("GET", f"/v2/{NS}/tags/list", params={"n": 2})
    check("discovery: tags list n=2 -> 2 tags", r, r.ok and len(r.json().get("tags", [])) == 2, "2 tags")
    r = c.do("GET", f"/v2/{NS}/tags/list", params={"n": 2, "last": tags[1] if len(tags) > 1 else ""})
    check("discovery: tags list n=2 last=... -> next 2", r, r.ok and r.json().get("tags") == tags[2:4], f"{tags[2:4]}")
    r = c.do("GET", f"/v2/{NS}/tags/list", params={"n": 0})
    check("discovery: tags list n=0 -> 200 empty", r, r.ok and not r.json().get("tags"), "empty")
    # referrers
    empty_json = b"{}"
    upload(c, NS, empty_json)
    ref_blob = b"NHL Peanut Butter on my NHL bagel"
    upload(c, NS, ref_blob)
    ed = {"mediaType": "application/vnd.oci.empty.v1+json", "size": 2, "digest": dig(empty_json)}
    subj = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": len(mb), "digest": md}
    ra = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.nhl.peanut.butter.bagel",
            "size": len(ref_blob),
            "digest": dig(ref_blob),
        },
        "subject": subj,
        "layers": [ed],
        "annotations": {"org.opencontainers.conformance.test": "test config a"},
    }
    rab = json.dumps(ra, indent="\t").encode()
    r = c.do(
        "PUT",
        f"/v2/{NS}/manifests/{dig(rab)}",
        data=rab,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    check(
        "discovery: PUT referrer (config artifact) -> 201 + OCI-Subject",
        r,
        r.status_code == 201 and r.headers.get("OCI-Subject") == md,
        "201 + OCI-Subject got " + str(r.headers.get("OCI-Subject")),
    )
    rb = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.nba.strawberry.jam.croissant",
        "config": ed,
        "subject": subj,
        "layers": [
            {
                "mediaType": "application/vnd.nba.strawberry.jam.croissant",
                "size": len(ref_blob),
                "digest": dig(ref_blob),
            }
        ],
        "annotations": {"org.opencontainers.conformance.test": "test layer b"},
    }
    rbb = json.dumps(rb, indent="\t").encode()
    r = c.do(
        "PUT",
        f"/v2/{NS}/manifests/{dig(rbb)}",
        data=rbb,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    check(
        "discovery: PUT referrer (artifactType) -> 201 + OCI-Subject",
        r,
        r.status_code == 201 and r.headers.get("OCI-Subject") == md,
        "201",
    )
    missing = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 10, "digest": dig(b"absent")}
    rc = dict(rb, subject=missing)
    rcb = json.dumps(rc, indent="\t").encode()
    r = c.do(
        "PUT",
        f"/v2/{NS}/manifests/{dig(rcb)}",
        data=rcb,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    check("discovery: PUT referrer to absent subject -> 201", r, r.status_code == 201, "201")
    idx = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "artifactType": "application/vnd.food.stand",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": len(rab), "digest": dig(rab)}
        ],
        "subject": subj,
        "annotations": {"org.opencontainers.conformance.test": "test index"},
    }
    ib = json.dumps(idx, indent="\t").encode()
    r = c.do(
        "PUT",
        f"/v2/{NS}/manifests/{dig(ib)}",
        data=ib,
        headers={"Content-Type": "application/vnd.oci.image.index.v1+json"},
    )
    check("discovery: PUT index referrer -> 201 + OCI-Subject", r, r.status_code == 201, "201")
    r = c.do("GET", f"/v2/{NS}/referrers/{md}")
    n = len(r.json().get("manifests", [])) if r.status_code == 200 else -1
    check(
        "discovery: GET referrers -> 200 index with 3",
        r,
        r.status_code == 200
        and n == 3
        and r.headers.get("Content-Type", "").startswith("application/vnd.oci.image.index.v1+json"),
        f"200, 3 (got {n})",
    )
    r = c.do("GET", f"/v2/{NS}/referrers/{md}", params={"artifactType": "application/vnd.nba.strawberry.jam.croissant"})
    n = len(r.json().get("manifests", [])) if r.status_code == 200 else -1
    check(
        "discovery: GET referrers filtered -> 1 + OCI-Filters-Applied",
        r,
        r.status_code == 200 and n == 1 and r.headers.get("OCI-Filters-Applied") == "artifactType",
        f"1 got {n}",
    )
    r = c.do("GET", f"/v2/{NS}/referrers/{dig(b'nothing')}")
    check(
        "discovery: GET referrers of unknown digest -> 200 empty",
        r,
        r.status_code == 200 and r.json().get("manifests") == [],
        "200 []",
    )
    # management
    r = c.do("DELETE", f"/v2/{NS}/manifests/t3")
    check("management: DELETE tag -> 202 or 400/405", r, r.status_code in (202, 400, 405), "202|400|405")
    r = c.do("GET", f"/v2/{NS}/manifests/t3")
    check("management: GET deleted tag -> 404 (if tag delete supported)", r, r.status_code == 404 or True, "404")
    r = c.do("DELETE", f"/v2/{NS}/manifests/{md}")
    check("management: DELETE manifest by digest -> 202", r, r.status_code == 202, "202")
    r = c.do("GET", f"/v2/{NS}/manifests/{md}")
    check("management: GET deleted manifest by digest -> 404", r, r.status_code == 404, "404")
    r = c.do("GET", f"/v2/{NS}/manifests/test0")
    check("management: GET tag of deleted manifest -> 404", r, r.status_code == 404, "404")
    r = c.do("GET", f"/v2/{NS}/tags/list")
    check(
        "management: tags list after delete (no test0)",
        r,
        r.ok and "test0" not in (r.json().get("tags") or []),
        "no test0",
    )
    r = c.do("DELETE", f"/v2/{NS}/blobs/{dig(cfg)}")
    check("management: DELETE blob -> 202", r, r.status_code == 202, "202")
    r = c.do("GET", f"/v2/{NS}/blobs/{dig(cfg)}")
    check("management: GET deleted blob -> 404", r, r.status_code == 404, "404")


def main() -> None:
    from tests.gateway.support import ADMIN_PASSWORD, GatewayProcess
    from tests.support import start_registry

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        reg = start_registry(Path(tmp) / "reg")
        try:
            run(Client(reg.url, None, None))
            out["registry"] = list(results)
            results.clear()
        finally:
            reg.stop()
        gw = GatewayProcess(data_dir=Path(tmp) / "gw" / "data")
        (Path(tmp) / "gw").mkdir(parents=True, exist_ok=True)
        gw.start()
        try:
            run(Client(gw.url, "admin", ADMIN_PASSWORD))
            out["gateway"] = list(results)
        finally:
            gw.stop()
    regd = {n: (ok, d) for n, ok, d in out["registry"]}
    for n, ok, d in out["gateway"]:
        rok, rd = regd.get(n, (None, ""))
        flag = "SAME" if rok == ok else "DIFF"
        print(f"{flag} reg={'ok' if rok else 'FAIL'} gw={'ok' if ok else 'FAIL'}  {n}")
        if not ok or not rok:
            print(f"      reg: {rd}\n      gw:  {d}")
    for target, rows in out.items():
        print(f"{target}: {sum(ok for _, ok, _ in rows)} passed, {sum(not ok for _, ok, _ in rows)} failed")


if __name__ == "__main__":
    main()
