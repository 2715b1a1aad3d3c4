"""``/v2/...``: the distribution API, authorised, gated, and streamed to the registry.

Bodies are never buffered except manifests (bounded by the gate's size limit):
request bodies stream upstream from the ASGI receive channel, responses stream back
from httpx. Every request is authorised against the caller's token *and* current
policy; a read the caller may not do is answered exactly like a read of a
repository that does not exist.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ecr_oci import mediatypes as mt
from ecr_oci.digest import sha256_bytes
from ecr_oci.gateway import gate
from ecr_oci.gateway.core import Gateway, oci_error
from ecr_oci.gateway.policy import DELETE, PULL, PUSH, Caller, is_release_tag
from ecr_oci.gateway.referrers import add_to_fallback, index_document, referrer_of
from ecr_oci.gateway.stages import StagePolicy, profile_transition
from ecr_oci.registry.client import MANIFEST_ACCEPT

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME = rf"{_COMPONENT}(?:/{_COMPONENT})*"
_ROUTES = (
    ("tags", re.compile(rf"^(?P<name>{_NAME})/tags/list$")),
    ("manifest", re.compile(rf"^(?P<name>{_NAME})/manifests/(?P<ref>[A-Za-z0-9_.:=+-]+)$")),
    ("upload", re.compile(rf"^(?P<name>{_NAME})/blobs/uploads/(?P<uuid>[A-Za-z0-9_.=-]*)$")),
    ("blob", re.compile(rf"^(?P<name>{_NAME})/blobs/(?P<digest>[a-z0-9]+:[a-f0-9]+)$")),
    ("referrers", re.compile(rf"^(?P<name>{_NAME})/referrers/(?P<digest>[a-z0-9]+:[a-f0-9]+)$")),
)
_REQUEST_HEADERS = ("accept", "content-type", "content-length", "content-range", "range", "if-none-match",
                    "if-match", "if-modified-since")
_RESPONSE_HEADERS = ("content-type", "content-length", "docker-content-digest", "docker-upload-uuid", "location",
                     "range", "content-range", "accept-ranges", "etag", "link", "oci-subject", "last-modified",
                     "cache-control", "docker-distribution-api-version", "oci-filters-applied")


def _action(route: str, method: str) -> str:
    if route == "upload" or (route == "manifest" and method == "PUT"):
        return PUSH
    if method == "DELETE":
        return DELETE
    return PULL


def _response_headers(gateway: Gateway, request: Request, upstream: httpx.Response) -> dict[str, str]:
    headers = {k: v for k in _RESPONSE_HEADERS if (v := upstream.headers.get(k)) is not None}
    if location := headers.get("location"):
        # Registry URLs (relative, or absolute for an external registry) become ours.
        if location.startswith(gateway.upstream.url):
            location = location[len(gateway.upstream.url):]
        if location.startswith("/"):
            location = gateway.public_base(request) + location
        headers["location"] = location
    return headers


async def _counted(gateway: Gateway, stream: AsyncIterator[bytes], direction: str) -> AsyncIterator[bytes]:
    counter = gateway.metrics.bytes.labels(direction)
    async for chunk in stream:
        counter.inc(len(chunk))
        yield chunk


async def forward(
    gateway: Gateway,
    request: Request,
    repository: str,
    *,
    content: bytes | None = None,
    params: Any = None,
    extra_headers: dict[str, str] | None = None,
) -> Response:
    """Send the request on to the registry and stream its answer back."""
    # Clients (skopeo) send Accept as several header lines: keep them all.
    headers = {k: ", ".join(v) for k in _REQUEST_HEADERS if (v := request.headers.getlist(k))}
    headers.update(gateway.upstream.auth_header("repository", repository))
    headers.update(extra_headers or {})
    body: Any = content
    if content is None and request.method in ("POST", "PUT", "PATCH") and (
        "content-length" in request.headers or "transfer-encoding" in request.headers
    ):
        body = _counted(gateway, request.stream(), "in")
    upstream_request = gateway.upstream.http.build_request(
        request.method,
        request.url.path,
        params=params if params is not None else list(request.query_params.multi_items()),
        headers=headers,
        content=body,
    )
    resp = await gateway.upstream.http.send(upstream_request, stream=True)
    out = _response_headers(gateway, request, resp)
    if request.method == "HEAD" or resp.status_code in (204, 304):
        # Read the (empty) body so the connection goes back to the pool: closing an
        # unread response makes httpcore drop the connection, a TCP handshake per HEAD.
        await resp.aread()
        await resp.aclose()
        return Response(b"", status_code=resp.status_code, headers=out)
    return StreamingResponse(
        _counted(gateway, resp.aiter_raw(), "out"),
        status_code=resp.status_code,
        headers=out,
        background=BackgroundTask(resp.aclose),
    )


async def v2(request: Request) -> Response:
    """Entry point for everything under ``/v2/``."""
    gateway: Gateway = request.app.state.gateway
    started = time.perf_counter()
    path = request.path_params.get("rest", "")
    route, match = "base", None
    if path in ("", "/"):
        route = "base"
    elif path == "_catalog":
        route = "catalog"
    else:
        for name, pattern in _ROUTES:
            if m := pattern.match(path):
                route, match = name, m
                break
        else:
            route = "unknown"
    caller, claims, bad = await gateway.identify(request)
    decision = "allow"
    try:
        response = await _dispatch(gateway, request, route, match, caller, claims, bad)
        if response.status_code in (401, 403):
            decision = "deny"
    except gate.GateError as exc:
        decision = "deny"
        gateway.metrics.denials.labels("gate").inc()
        response = oci_error(exc.status, exc.code, str(exc))
    gateway.metrics.requests.labels(route, request.method, str(response.status_code), decision).inc()
    gateway.metrics.latency.labels(route, request.method).observe(time.perf_counter() - started)
    return response


async def _dispatch(
    gateway: Gateway,
    request: Request,
    route: str,
    match: re.Match[str] | None,
    caller: Caller,
    claims: dict[str, Any] | None,
    bad: bool,
) -> Response:
    authenticated = claims is not None or caller.name is not None
    if route == "base":
        if bad or not authenticated:
            return oci_error(401, "UNAUTHORIZED", "authentication required", gateway.challenge(request))
        return JSONResponse({}, headers={"Docker-Distribution-API-Version": "registry/2.0"})
    if route == "catalog":
        if bad or not authenticated:
            return oci_error(401, "UNAUTHORIZED", "authentication required",
                             gateway.challenge(request, "registry:catalog:*"))
        return await _catalog(gateway, request, caller)
    if route == "unknown" or match is None:
        if re.search(r"/(manifests|blobs|tags|referrers)/", request.url.path):
            return oci_error(400, "NAME_INVALID", "invalid repository name or reference")
        return oci_error(404, "UNSUPPORTED", "not a distribution API path")
    name = match["name"]
    action = _action(route, request.method)
    scope = f"repository:{name}:{'pull,push' if action == PUSH else action}"
    if bad or not gateway.permits(caller, claims, name, action):
        gateway.metrics.denials.labels("scope").inc()
        gateway.audit.record(f"{route}.{request.method.lower()}", actor=caller.label, decision="deny",
                             repository=name, reason="not permitted")
        return gateway.unauthorized(request, scope, claims is not None)

    if route == "tags":
        return await _paged_tags(gateway, request, name)
    if route == "referrers":
        return _referrers(gateway, request, name, match["digest"])
    if route == "blob":
        if request.method in ("GET", "HEAD") and not gateway.node_content.permits(caller, name, match["digest"]):
            return _node_denied(gateway, caller, name, match["digest"])
        if request.method in ("GET", "HEAD") and gateway.local_blobs is not None:
            local = gateway.local_blobs.response(name, match["digest"])
            if local is not None:
                size = int(local.headers.get("content-length", "0") or 0)
                if request.method == "GET":
                    gateway.metrics.bytes.labels("out").inc(size)
                return local
        response = await forward(gateway, request, name)
        if request.method == "DELETE":
            gateway.audit.record("blob.delete", actor=caller.label, decision="allow", repository=name,
                                 digest=match["digest"], status=response.status_code)
        return response
    if route == "upload":
        return await _upload(gateway, request, caller, claims, name)
    return await _manifest(gateway, request, caller, name, match["ref"])


def _node_denied(gateway: Gateway, caller: Caller, name: str, digest: str) -> Response:
    gateway.metrics.denials.labels("not_approved").inc()
    gateway.audit.record("pull", actor=caller.label, decision="deny", repository=name, digest=digest,
                         reason="not approved for the node's deployments")
    return oci_error(403, "DENIED", "not approved for this node's deployments")


async def _catalog(gateway: Gateway, request: Request, caller: Caller) -> Response:
    """The catalog, filtered to what the caller may pull, paginated here (``n``, ``last``)."""
    visible = [r for r in await gateway.upstream.catalog() if PULL in gateway.allowed(caller, r)]
    last = request.query_params.get("last")
    if last:
        visible = [r for r in visible if r > last]
    headers: dict[str, str] = {}
    n = request.query_params.get("n")
    if n and n.isdigit() and int(n) < len(visible):
        visible = visible[: int(n)]
        headers["Link"] = f'</v2/_catalog?last={visible[-1]}&n={n}>; rel="next"' if visible else ""
    return JSONResponse({"repositories": visible}, headers=headers)


def _referrers(gateway: Gateway, request: Request, name: str, digest: str) -> Response:
    artifact_type = request.query_params.get("artifactType")
    doc = index_document(gateway.store.referrers(name, digest), artifact_type)
    headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type else {}
    return JSONResponse(doc, media_type=mt.OCI_INDEX, headers=headers)


async def _upload(
    gateway: Gateway, request: Request, caller: Caller, claims: dict[str, Any] | None, name: str
) -> Response:
    params = dict(request.query_params)
    source = params.get("from")
    # A mount reads the source repository: without pull there, fall back to a plain
    # upload session (what a registry does for an unknown blob), so the answer says
    # nothing about the source.
    if (
        request.method == "POST"
        and source
        and "mount" in params
        and not (gateway.permits(caller, None, source, PULL)
                 and gateway.node_content.permits(caller, source, params["mount"]))
    ):
        params.pop("from")
        params.pop("mount")
        gateway.audit.record("blob.mount", actor=caller.label, decision="deny", repository=name, source=source)
    if request.method == "PATCH" and (content_range := request.headers.get("content-range")):
        refused = await _out_of_order(gateway, request, name, content_range)
        if refused is not None:
            return refused
    extra = None
    if request.method == "POST" and "from" in params:
        # The registry checks pull on the source of a mount too.
        extra = {"Authorization": gateway.upstream.bearer_for([name, params["from"]])}
    response = await forward(gateway, request, name, params=params, extra_headers=extra)
    if request.method == "PUT" and response.status_code == 201:
        gateway.audit.record("blob.push", actor=caller.label, decision="allow", repository=name,
                             digest=response.headers.get("docker-content-digest"))
    return response


async def _out_of_order(gateway: Gateway, request: Request, name: str, content_range: str) -> Response | None:
    """416 for a chunk that does not start where the upload stands (distribution-spec 1.1;
    Distribution 2.8 accepts it and corrupts the session). Asks the registry for the
    upload status first, so only chunked uploads pay one extra round trip per chunk."""
    match = re.match(r"^(?:bytes[ =])?(\d+)-(\d+)$", content_range.strip())
    if not match:
        return oci_error(416, "BLOB_UPLOAD_INVALID", "Content-Range must be <start>-<end>")
    status = await gateway.upstream.http.get(request.url.path, params=list(request.query_params.multi_items()),
                                             headers=gateway.upstream.repo_headers(name))
    if status.status_code != 204:
        return None  # unknown session: the registry answers the PATCH itself
    stands = status.headers.get("range", "0-0")
    end = int(stands.split("-")[-1])
    expected = end + 1 if end > 0 else 0
    if int(match[1]) == expected:
        return None
    return oci_error(416, "BLOB_UPLOAD_INVALID", f"chunk starts at {match[1]}, the upload stands at {expected}",
                     headers={"Range": f"0-{max(expected - 1, 0)}"})


def _accepts(request: Request, media_type: str) -> bool:
    """Whether the client's Accept header(s) take ``media_type`` (no header: let the registry decide)."""
    accepted = {part.split(";")[0].strip() for value in request.headers.getlist("accept") for part in value.split(",")}
    return media_type in accepted or "*/*" in accepted


async def _manifest(gateway: Gateway, request: Request, caller: Caller, name: str, ref: str) -> Response:
    if request.method == "DELETE":
        return await _delete_manifest(gateway, request, caller, name, ref)
    if request.method == "PUT":
        return await _put_manifest(gateway, request, caller, name, ref)
    cached = await gateway.manifest(name, ref)
    if caller.kind == "node" and not gateway.node_content.permits(caller, name, cached.digest if cached else ref):
        return _node_denied(gateway, caller, name, cached.digest if cached else ref)
    if cached is None or not _accepts(request, cached.media_type):
        # Missing, or a type the client did not ask for: the registry answers (404,
        # conversion or refusal) exactly as it would without us.
        return await forward(gateway, request, name)
    headers = {
        "Content-Type": cached.media_type,
        "Content-Length": str(len(cached.data)),
        "Docker-Content-Digest": cached.digest,
        "Etag": f'"{cached.digest}"',
        "Docker-Distribution-API-Version": "registry/2.0",
    }
    gateway.metrics.bytes.labels("out").inc(len(cached.data) if request.method == "GET" else 0)
    return Response(cached.data if request.method == "GET" else b"", headers=headers)


async def _read_limited(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes without reading them all."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise gate.GateError(f"manifest: larger than {limit} bytes", code="SIZE_INVALID", status=413)
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise gate.GateError(f"manifest: larger than {limit} bytes", code="SIZE_INVALID", status=413)
        chunks.append(chunk)
    return b"".join(chunks)


async def _put_manifest(gateway: Gateway, request: Request, caller: Caller, name: str, ref: str) -> Response:
    limit = gateway.config.max_manifest_bytes
    data = await _read_limited(request, limit)
    digest = sha256_bytes(data)
    checked = gate.structural(data, request.headers.get("content-type", ""), limit)
    if ref.startswith("sha256:") and ref != digest:
        raise gate.GateError(f"reference: {ref} is not the digest of the manifest ({digest})",
                             code="DIGEST_INVALID")
    if not ref.startswith("sha256:") and is_release_tag(ref):
        head = await gateway.upstream.head(f"/v2/{name}/manifests/{ref}", name, MANIFEST_ACCEPT)
        current = head.headers.get("docker-content-digest") if head.status_code == 200 else None
        if current and current != digest:
            if not caller.admin:
                gateway.metrics.denials.labels("immutable_tag").inc()
                gateway.audit.record("manifest.put", actor=caller.label, decision="deny", repository=name,
                                     tag=ref, digest=digest, current=current, reason="release tag is immutable")
                return oci_error(403, "DENIED", f"tag {ref}: a released version cannot be re-pointed "
                                 f"(it names {current})")
            gateway.audit.record("tag.override", actor=caller.label, decision="allow", repository=name, tag=ref,
                                 digest=digest, previous=current)

    async def exists(child: str) -> bool:
        resp = await gateway.upstream.head(f"/v2/{name}/manifests/{child}", name, MANIFEST_ACCEPT)
        return resp.status_code == 200

    async def read_blob(blob: str, size: int) -> bytes | None:
        resp = await gateway.upstream.http.get(f"/v2/{name}/blobs/{blob}", headers=gateway.upstream.repo_headers(name))
        return resp.content if resp.status_code == 200 and len(resp.content) == size else None

    if checked.is_bundle:
        await gate.check_bundle(checked, exists)
    await gate.check_referrer(checked, read_blob)

    response = await forward(gateway, request, name, content=data,
                             extra_headers={"content-type": checked.media_type, "content-length": str(len(data))})
    gateway.manifests.forget(name, ref)
    if response.status_code != 201:
        return response
    gateway.store.ensure_repository(name, gateway.config.default_visibility)
    if not ref.startswith("sha256:"):
        gateway.store.record_tag(name, ref, digest, caller.label)
    if (referrer := referrer_of(name, digest, checked.media_type, len(data), checked.document)) is not None:
        gateway.store.add_referrer(referrer)
        await add_to_fallback(gateway.upstream, referrer)
        gateway.manifests.forget(name, f"sha256-{referrer.subject.split(':', 1)[1]}")  # that tag just moved
        response.headers["OCI-Subject"] = referrer.subject
        if referrer.artifact_type == mt.PROFILE_ARTIFACT_TYPE:
            policy = StagePolicy.load(gateway.config.data_dir / "stage-policy.json")
            moved = profile_transition(gateway.store, policy, name, referrer.subject, digest, referrer.annotations,
                                       caller.label)
            if moved is not None:
                gateway.audit.record("stage.set", actor=moved.actor, decision="allow", repository=name,
                                     digest=referrer.subject, stage=moved.stage, evidence=moved.evidence)
    gateway.audit.record("manifest.put", actor=caller.label, decision="allow", repository=name, reference=ref,
                         digest=digest, artifact_type=checked.artifact_type)
    return response


async def _delete_manifest(gateway: Gateway, request: Request, caller: Caller, name: str, ref: str) -> Response:
    released = [t for t in gateway.store.tags_for(name, ref) if is_release_tag(t)]
    if released and not caller.admin:
        gateway.metrics.denials.labels("immutable_tag").inc()
        gateway.audit.record("manifest.delete", actor=caller.label, decision="deny", repository=name, digest=ref,
                             tags=released, reason="release tag is immutable")
        return oci_error(403, "DENIED", f"{ref} is the released version {released[0]}: only an admin may delete it")
    response = await forward(gateway, request, name)
    gateway.manifests.forget(name, ref)
    if response.status_code == 202:
        gateway.store.remove_referrer(name, ref)
        gateway.store.forget_digest(name, ref)
    gateway.audit.record("manifest.delete", actor=caller.label, decision="allow", repository=name, digest=ref,
                         tags=released, status=response.status_code)
    return response


async def _paged_tags(gateway: Gateway, request: Request, name: str) -> Response:
    """``tags/list[?n=&last=]`` as distribution-spec 1.1 lists it (Distribution 2.8 neither
    sorts nor pages): lexical order, tags after ``last``, at most ``n``, and a
    ``Link: rel="next"`` when more remain."""
    try:
        n = int(request.query_params.get("n", "-1"))
    except ValueError:
        return oci_error(400, "PAGINATION_NUMBER_INVALID", "n must be an integer")
    resp = await gateway.upstream.http.get(f"/v2/{name}/tags/list", params={"n": "100000"},
                                           headers=gateway.upstream.repo_headers(name))
    if resp.status_code != 200:
        return Response(resp.content, status_code=resp.status_code, media_type="application/json")
    tags = sorted(resp.json().get("tags") or [])
    if last := request.query_params.get("last"):
        tags = [t for t in tags if t > last]
    headers = {}
    if 0 <= n < len(tags):
        tags = tags[:n]
        if n:
            headers["Link"] = f'</v2/{name}/tags/list?n={n}&last={tags[-1]}>; rel="next"'
    return JSONResponse({"name": name, "tags": tags}, headers=headers)
