"""Fuzzing the real gateway: no 5xx and no dropped connection for any input.

Two campaigns against a gateway of their own (fuzzed admin calls change state):

* schemathesis drives every ``/api/v1`` operation from the served OpenAPI document,
  positive data (the document must describe what the API accepts: schema-valid requests
  are not refused, answers match the documented codes and types) and negative data
  (no 5xx);
* a seeded request fuzzer for ``/v2``: odd names, references and digests, broken
  manifests and indexes (ECR bundles included), odd content types, bad ranges and chunk
  offsets, huge headers and bodies, odd query parameters, NUL and control bytes, odd
  methods and credentials, and clients that hang up mid-request. Sent over raw sockets so
  that nothing is cleaned up by a client library on the way.

Pass: zero 5xx, zero connections closed without an answer, a valid pull afterwards,
bounded gateway RSS, and no traceback in the gateway log. Bounded in count (FUZZ_V2_COUNT,
FUZZ_API_EXAMPLES) and time (well under a minute together here).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import random
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from ecr_oci import mediatypes as mt
from ecr_oci.digest import sha256_bytes
from ecr_oci.oci import descriptor
from tests.gateway.support import ADMIN_PASSWORD, PASSWORDS, GatewayProcess, push_image

schemathesis = pytest.importorskip("schemathesis", reason="pip install -e '.[test]' (schemathesis)")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

V2_COUNT = int(os.environ.get("FUZZ_V2_COUNT", "700"))
API_EXAMPLES = int(os.environ.get("FUZZ_API_EXAMPLES", "25"))
SEED = int(os.environ.get("FUZZ_SEED", "20261201"))
REPO = "alice/fuzz"
MAX_RSS_GROWTH_MIB = 80


@pytest.fixture(scope="module")
def fuzz_gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(tmp_path_factory.mktemp("fuzz") / "data")
    gateway.start()
    for user in ("alice", "bob"):
        gateway.admin().add_user(user, PASSWORDS[user])
    gateway.images[REPO] = push_image(gateway.client("alice"), REPO, "1.0.0", payload=os.urandom(3 << 20))
    yield gateway
    gateway.stop()


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _log(gw: GatewayProcess) -> str:
    return (gw.data_dir.parent / "gateway.log").read_text(errors="replace")


# --- /api/v1 with schemathesis ------------------------------------------------------------
_part = st.from_regex(r"^[a-z0-9]{1,8}(?:[._-][a-z0-9]{1,8}){0,2}$", fullmatch=True)
# The repository pattern's nested repetition is slow to generate from; names are built from parts instead.
schemathesis.openapi.format("ecr-repository", st.sampled_from([REPO, "alice/none", "bob/x"])
                            | st.lists(_part, min_size=1, max_size=3).map("/".join))


def _fuzz_operation(gw: GatewayProcess, operation: Any, mode: Any, headers: dict[str, str],
                    calls: Counter[str], failures: dict[str, str]) -> None:
    """API_EXAMPLES generated calls of one operation; failures by operation label."""
    from schemathesis.checks import not_a_server_error

    negative = mode == schemathesis.GenerationMode.NEGATIVE
    # negative data: only "no 5xx" (an invalid request may be answered in many right ways)
    checks = [not_a_server_error] if negative else None

    @settings(max_examples=API_EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    @given(operation.as_strategy(mode))
    def call(case: Any) -> None:
        calls[mode.value] += 1
        try:
            case.call_and_validate(base_url=gw.url, headers=headers, checks=checks, timeout=30)
        except BaseException as exc:  # schemathesis reports a group of failures
            failures.setdefault(f"{mode.value} {operation.label}", str(exc)[:800])

    try:
        call()
    except Exception as exc:  # hypothesis could not generate a request: the document is wrong here
        failures.setdefault(f"{mode.value} {operation.label}", f"{exc.__class__.__name__}: {str(exc)[:300]}")


def test_api_v1_answers_as_its_openapi_document_says(fuzz_gw: GatewayProcess) -> None:
    gw = fuzz_gw
    schema = schemathesis.openapi.from_url(f"{gw.url}/api/v1/openapi.json")
    token = requests.get(f"{gw.url}/auth/token", params={"service": "ecr"}, auth=("admin", ADMIN_PASSWORD),
                         timeout=30).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}  # Basic would hash a password per call
    failures: dict[str, str] = {}
    calls: Counter[str] = Counter()
    for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
        for result in schema.get_all_operations():
            operation = result.ok()
            if mode == schemathesis.GenerationMode.NEGATIVE and not (
                    operation.path_parameters or operation.query or operation.body):
                continue  # nothing to make invalid
            _fuzz_operation(gw, operation, mode, headers, calls, failures)
    print(f"schemathesis: {dict(calls)} calls, {len(failures)} failing operations")
    assert failures == {}, "\n".join(f"{k}: {v}" for k, v in failures.items())
    assert sum(calls.values()) >= 10 * API_EXAMPLES


# --- /v2 with a raw request fuzzer --------------------------------------------------------
class Dropped(Exception):
    """The connection closed without a complete status line."""


def raw_request(host: str, port: int, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]],
                body: bytes = b"", *, send_limit: int | None = None) -> int:
    """One HTTP/1.1 request as raw bytes; the answer's status (``send_limit``: hang up after that many body bytes)."""
    head = b"%s %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n" % (method, target, host.encode(), port)
    head += b"".join(b"%s: %s\r\n" % (k, v) for k, v in headers) + b"\r\n"
    with socket.create_connection((host, port), timeout=60) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # answered early (413): read it below
            sock.sendall(head + (body if send_limit is None else body[:send_limit]))
        if send_limit is not None:
            return 0
        data = b""
        try:
            while b"\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
    if not data.startswith(b"HTTP/1.1 ") or b"\r\n" not in data:
        raise Dropped(data[:80].decode(errors="replace"))
    return int(data[9:12])


_ODD_TEXT = ["", ".", "..", "%2e%2e", "A", "a" * 300, "a//b", "a/../b", "ä", "%00", "%ff", "a%2fb", "-a", "a-",
             "a__b", "a___b", "_", "a:b", "a@b", "a%20b", "\u202e", "%0d%0aX-Injected:%201", "*", "~", "a" * 5000]
_BAD_DIGESTS = ["sha256:abc", "sha256:" + "g" * 64, "sha256:" + "a" * 64 + "x", "sha512:" + "a" * 128,
                "sha256:" + "A" * 64, "md5:00", "sha256:", ":", "SHA256:" + "a" * 64, "sha256:" + "a" * 63,
                "sha256:%00" + "a" * 61, "sha256+b64:YWJj", "a" * 300 + ":a"]
_CONTENT_TYPES = [mt.OCI_MANIFEST, mt.OCI_INDEX, mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST, "", "text/plain",
                  "application/json", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                  mt.OCI_MANIFEST + "; charset=utf-8; x=" + "y" * 2000, "a/b/c", "\x7f", "*/*",
                  "application/vnd.oci.image.manifest.v1+json;;;", "application/octet-stream"]
_RANGES = ["bytes=0-0", "bytes=500-0", "bytes=abc", "bytes=-", "bytes=--1", "bytes=99999999999-", "bytes=0-1,2-3",
           "bytes=" + ",".join(f"{i}-{i}" for i in range(500)), "items=0-1", "bytes=-0", "bytes=1-" + "9" * 400,
           "bytes= 1 - 2", "bytes=0x10-"]
_CHUNK_RANGES = ["0-0", "0-29", "30-59", "59-30", "-1-2", "bytes 0-29/*", "bytes */30", "bytes=0-", "0-" + "9" * 30,
                 "abc", "", "0-29, 30-59"]
_QUERIES = ["n=-1", "n=abc", "n=0", "n=99999999999999999999", "last=%00", "n=1&last=" + "z" * 3000, "n=1&n=2",
            "last=%ff%fe", "n=%20", "digest=sha256:abc", "mount=sha256:abc&from=..", "_state=AAAA", "n=1e3"]


class V2Fuzzer:
    """Builds seeded random ``/v2`` requests against one repository the caller may push to."""

    def __init__(self, gw: GatewayProcess, rng: random.Random) -> None:
        self.gw, self.rng = gw, rng
        scope = f"repository:{REPO}:pull,push,delete"
        self.token = gw.token("alice", scope)["token"]
        self.digest, self.manifest = gw.images[REPO]
        doc = json.loads(self.manifest)
        self.blob: str = doc["layers"][0]["digest"]
        self.blob_size = doc["layers"][0]["size"]

    def auth(self) -> list[tuple[bytes, bytes]]:
        choice = self.rng.random()
        if choice < 0.75:
            return [(b"Authorization", b"Bearer " + self.token.encode())]
        odd = [b"Bearer ", b"Bearer \x01\x02", b"Bearer " + b"a.b.c", b"Basic !!!!", b"Basic " + base64.b64encode(
            b"\xff\xfe:\x00"), b"Basic " + base64.b64encode(b"alice"), b"Digest x", b"Bearer " + b"e" * 9000,
            b"Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."]
        return [] if choice < 0.85 else [(b"Authorization", self.rng.choice(odd))]

    def name(self) -> str:
        odd = [*_ODD_TEXT, REPO + "/" + self.rng.choice(_ODD_TEXT), "alice/" + self.rng.choice(_ODD_TEXT)]
        return REPO if self.rng.random() < 0.7 else self.rng.choice(odd)

    def digest_like(self) -> str:
        return self.rng.choice([self.blob, self.digest, "sha256:" + "0" * 64, *_BAD_DIGESTS])

    def manifest_body(self) -> bytes:
        doc: Any = json.loads(self.manifest)
        if self.rng.random() < 0.4:
            doc = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "artifactType": mt.BUNDLE_ARTIFACT_TYPE,
                   "annotations": {"org.opencontainers.image.title": "x", "io.waggle.ecr.name": "fuzz"},
                   "manifests": [{**descriptor(mt.OCI_MANIFEST, self.digest, len(self.manifest)),
                                  "platform": {"os": "linux", "architecture": "amd64"}},
                                 {**descriptor(mt.OCI_MANIFEST, self.digest, len(self.manifest)),
                                  "artifactType": mt.MODEL_ARTIFACT_TYPE}]}
        for _ in range(self.rng.randint(1, 4)):
            doc = self._mutate(doc)
        try:
            body = json.dumps(doc).encode()
        except (TypeError, ValueError):
            body = b"{}"
        tail = self.rng.random()
        if tail < 0.05:
            body = body[: self.rng.randint(0, len(body))]
        elif tail < 0.08:
            body = body.replace(b'"', b"\x00", 1)
        elif tail < 0.1:
            body = b"\xff\xfe" + body
        elif tail < 0.12:
            body = b'{"a":' * 20000 + b"1" + b"}" * 20000
        elif tail < 0.14:
            body = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": doc.get("config"),
                               "layers": [{"mediaType": mt.OCI_LAYER_TAR, "digest": self.blob, "size": 1}] * 20000}
                              ).encode()
        return body

    def _mutate(self, doc: Any) -> Any:
        if not isinstance(doc, dict) or not doc:
            return doc
        key = self.rng.choice(list(doc))
        value = doc[key]
        if isinstance(value, list) and value and self.rng.random() < 0.6:
            value[self.rng.randrange(len(value))] = self._mutate(value[self.rng.randrange(len(value))])
            return doc
        if isinstance(value, dict) and self.rng.random() < 0.6:
            doc[key] = self._mutate(value)
            return doc
        doc[key] = self.rng.choice([None, 1, -1, 2**70, 1.5, True, "", "x" * 70000, [], {}, [1], {"a": 1},
                                    "\ud800", "sha256:abc", mt.OCI_INDEX, mt.OCI_MANIFEST, "unknown/unknown"])
        if self.rng.random() < 0.2:
            doc.pop(key, None)
        return doc

    def request(self) -> tuple[str, bytes, bytes, list[tuple[bytes, bytes]], bytes]:
        """(kind, method, target, headers, body)."""
        rng = self.rng
        kind = rng.choice(["manifest_get", "manifest_put", "blob_get", "upload", "chunk", "tags", "odd_path",
                           "odd_method", "huge_header", "huge_body", "catalog", "referrers", "token"])
        headers = self.auth()
        body = b""
        method = b"GET"
        if kind == "manifest_get":
            method = rng.choice([b"GET", b"HEAD", b"DELETE"])
            target = f"/v2/{self.name()}/manifests/{rng.choice(['1.0.0', self.digest, *_ODD_TEXT, *_BAD_DIGESTS])}"
            headers.append((b"Accept", rng.choice(_CONTENT_TYPES).encode(errors="replace")))
        elif kind == "manifest_put":
            method = b"PUT"
            body = self.manifest_body()
            ref = rng.choice(["fuzz", "1.0.0", sha256_bytes(body), *_BAD_DIGESTS[:4], ".bad"])
            target = f"/v2/{self.name()}/manifests/{ref}"
            headers.append((b"Content-Type", rng.choice(_CONTENT_TYPES).encode(errors="replace")))
        elif kind == "blob_get":
            method = rng.choice([b"GET", b"HEAD", b"DELETE" if rng.random() < 0.1 else b"GET"])
            target = f"/v2/{self.name()}/blobs/{self.digest_like()}"
            if rng.random() < 0.7:
                headers.append((b"Range", rng.choice(_RANGES).encode()))
        elif kind == "upload":
            method = rng.choice([b"POST", b"PUT", b"PATCH", b"DELETE", b"GET"])
            body = os.urandom(rng.choice([0, 1, 100, 70000, 3 << 20]))
            query = rng.choice(["", f"digest={sha256_bytes(body)}", f"digest={self.digest_like()}", *_QUERIES])
            session = rng.choice(["", "x", "00000000-0000-0000-0000-000000000000", "a" * 200])
            target = f"/v2/{self.name()}/blobs/uploads/{session}?{query}"
            headers.append((b"Content-Type", rng.choice(_CONTENT_TYPES).encode(errors="replace")))
        elif kind == "chunk":
            return self._chunk()
        elif kind == "tags":
            target = f"/v2/{self.name()}/tags/list?{rng.choice(_QUERIES)}"
        elif kind == "catalog":
            target = f"/v2/_catalog?{rng.choice(_QUERIES)}"
        elif kind == "referrers":
            target = f"/v2/{self.name()}/referrers/{self.digest_like()}?artifactType={rng.choice(_ODD_TEXT)}"
        elif kind == "token":
            target = f"/auth/token?service=ecr&scope={rng.choice(_ODD_TEXT)}&scope=repository:{self.name()}:pull,*"
            method = rng.choice([b"GET", b"POST"])
        elif kind == "odd_method":
            method = rng.choice([b"PROPFIND", b"TRACE", b"OPTIONS", b"CONNECT", b"PATCH", b"BREW", b"get"])
            target = rng.choice([f"/v2/{REPO}/manifests/1.0.0", "/v2/", f"/v2/{REPO}/blobs/{self.blob}"])
        elif kind == "huge_header":
            target = f"/v2/{REPO}/manifests/1.0.0"
            if rng.random() < 0.5:
                headers.append((b"X-Big", b"a" * rng.choice([8000, 70000, 200000])))
            else:
                headers += [(b"X-H%d" % i, b"v") for i in range(rng.choice([100, 1000]))]
        elif kind == "huge_body":
            method = rng.choice([b"PUT", b"POST"])
            body = b"x" * rng.choice([5 << 20, 12 << 20])
            target = f"/v2/{REPO}/manifests/big" if method == b"PUT" else "/api/v1/stages"
            headers.append((b"Content-Type", mt.OCI_MANIFEST.encode()))
        else:  # odd_path: NUL and control bytes, long paths, encodings
            target = rng.choice(["/v2/\x00/manifests/a", "/v2/a\x00b/tags/list", "/v2/" + "a/" * 3000 + "tags/list",
                                 "/v2/%00", "/v2/..%2f..%2fetc/passwd/manifests/x", "/v2/a/manifests/\x7f",
                                 "/v2/a/blobs/uploads/..", "/v2//manifests/x", "/v2/a/manifests/",
                                 "/v2/a/tags/list?" + "&".join(["n=1"] * 2000), "/v2/a/b/c/blobs/sha256:",
                                 "/v2/A/manifests/latest", "/v2/_catalog/../x"])
        if body:
            headers.append((b"Content-Length", str(len(body)).encode()))
        encoded = target.encode("utf-8", errors="surrogatepass")
        return kind, method, encoded, headers, body

    def _chunk(self) -> tuple[str, bytes, bytes, list[tuple[bytes, bytes]], bytes]:
        """A PATCH or PUT on a real upload session, with an odd Content-Range or digest."""
        auth = [(b"Authorization", b"Bearer " + self.token.encode())]
        started = requests.post(f"{self.gw.url}/v2/{REPO}/blobs/uploads/", headers={k.decode(): v.decode()
                                                                                   for k, v in auth}, timeout=30)
        location = started.headers["Location"]
        path = location if location.startswith("/") else "/" + location.split("/", 3)[3]
        body = os.urandom(self.rng.choice([0, 1, 30, 1000]))
        method = self.rng.choice([b"PATCH", b"PATCH", b"PUT"])
        if method == b"PUT":
            path += "&digest=" + self.rng.choice([sha256_bytes(body), self.digest_like()])
        headers = [*auth, (b"Content-Range", self.rng.choice(_CHUNK_RANGES).encode()),
                   (b"Content-Type", b"application/octet-stream"), (b"Content-Length", str(len(body)).encode())]
        return "chunk", method, path.encode(), headers, body


def test_v2_request_fuzzing_finds_no_5xx_and_no_dropped_connection(fuzz_gw: GatewayProcess, tmp_path: Path) -> None:
    gw = fuzz_gw
    assert gw.proc is not None
    rng = random.Random(SEED)
    fuzzer = V2Fuzzer(gw, rng)
    host, port = "127.0.0.1", gw.port
    rss_before = _rss_mib(gw.proc.pid)
    statuses: Counter[int] = Counter()
    kinds: Counter[str] = Counter()
    bad: list[str] = []
    started = time.monotonic()
    for i in range(V2_COUNT):
        kind, method, target, headers, body = fuzzer.request()
        kinds[kind] += 1
        try:
            status = raw_request(host, port, method, target, headers, body)
        except (Dropped, TimeoutError, OSError) as exc:
            bad.append(f"#{i} {kind} {method!r} {target[:100]!r}: dropped ({exc!r})")
            continue
        statuses[status] += 1
        if status >= 500:
            bad.append(f"#{i} {kind} {method!r} {target[:100]!r}: {status}")
    # clients that hang up mid-request: a blob upload and a manifest body cut short, a download read in part
    auth = [(b"Authorization", b"Bearer " + fuzzer.token.encode())]
    session = requests.post(f"{gw.url}/v2/{REPO}/blobs/uploads/", headers={"Authorization": f"Bearer {fuzzer.token}"},
                            timeout=30).headers["Location"]
    session_path = session if session.startswith("/") else "/" + session.split("/", 3)[3]
    cut_short = ((session_path, b"PATCH", 8 << 20), (f"/v2/{REPO}/manifests/cut", b"PUT", 2 << 20))
    for cut_path, cut_method, size in cut_short:
        raw_request(host, port, cut_method, cut_path.encode(),
                    [*auth, (b"Content-Length", str(size).encode()), (b"Content-Type", b"application/octet-stream")],
                    os.urandom(size), send_limit=size // 4)
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(b"GET /v2/%s/blobs/%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n"
                     % (REPO.encode(), fuzzer.blob.encode(), fuzzer.token.encode()))
        sock.recv(1024)
    elapsed = time.monotonic() - started
    time.sleep(0.5)

    # a valid pull afterwards, byte for byte (as the owner: the API fuzz may have made the repository private)
    client = gw.client("alice")
    manifest = client.get_manifest(REPO, "1.0.0")
    assert manifest.digest == fuzzer.digest
    assert sha256_bytes(client.get_blob(REPO, fuzzer.blob)) == fuzzer.blob
    rss_after = _rss_mib(gw.proc.pid)
    log = _log(gw)
    print(f"/v2 fuzz: {V2_COUNT} requests in {elapsed:.1f}s (seed {SEED}); kinds {dict(kinds)}; "
          f"statuses {dict(sorted(statuses.items()))}; RSS {rss_before:.0f} -> {rss_after:.0f} MiB")
    assert bad == [], "\n".join(bad[:40])
    assert rss_after - rss_before < MAX_RSS_GROWTH_MIB
    assert "Traceback" not in log, log[log.find("Traceback") - 200:][:4000]
    assert log.count("client disconnected during") >= 2


def test_fuzz_helpers_detect_a_dropped_connection() -> None:
    """raw_request must see a server that closes without answering (else the fuzz test could not fail)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        accept: Callable[[], Any] = server.accept
        import threading

        def close_at_once() -> None:
            conn, _ = accept()
            conn.recv(65536)
            conn.close()

        thread = threading.Thread(target=close_at_once)
        thread.start()
        with pytest.raises(Dropped):
            raw_request("127.0.0.1", port, b"GET", b"/v2/", [])
        thread.join()
