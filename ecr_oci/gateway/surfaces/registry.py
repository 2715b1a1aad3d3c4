"""``/v2/...``: the distribution API, authorised, gated, and streamed to the registry.

Bodies are never buffered except manifests (bounded by the gate's size limit):
request bodies stream upstream from the ASGI receive channel, responses stream back
from httpx. Every request is authorised against the caller's token *and* current
policy; a read the caller may not do is answered exactly like a read of a
repository that does not exist.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import httpx
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ecr_oci import mediatypes as mt
from ecr_oci.digest import sha256_bytes
from ecr_oci.gateway.core import Gateway, oci_error
from ecr_oci.gateway.domain import bundle_index, catalog, gate, names, releases
from ecr_oci.gateway.domain.policy import DELETE, PULL, PUSH, Caller, is_release_tag
from ecr_oci.gateway.domain.referrers import add_to_fallback, index_document, referrer_of
from ecr_oci.gateway.domain.stages import StagePolicy, profile_transition
from ecr_oci.gateway.surfaces import ranges
from ecr_oci.gateway.surfaces.disconnects import UpstreamBroke
from ecr_oci.registry.client import MANIFEST_ACCEPT

log = logging.getLogger("ecr.gateway")
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME = rf"{_COMPONENT}(?:/{_COMPONENT})*"
# Path shapes only; names, references and digests are then parsed by gateway.names.
_ROUTES = (
    ("tags", re.compile(rf"^(?P<name>{_NAME})/tags/list$")),
    ("manifest", re.compile(rf"^(?P<name>{_NAME})/manifests/(?P<ref>[^/]+)$")),
    ("upload", re.compile(rf"^(?P<name>{_NAME})/blobs/uploads/(?P<ref>[A-Za-z0-9_-]*)$")),
    ("blob", re.compile(rf"^(?P<name>{_NAME})/blobs/(?P<ref>[^/]+)$")),
    ("referrers", re.compile(rf"^(?P<name>{_NAME})/referrers/(?P<ref>[^/]+)$")),
)
# Which methods each route answers: anything else is 405, before any authorization.
_ROUTE_METHODS = {
    "tags": ("GET", "HEAD"),
    "manifest": ("GET", "HEAD", "PUT", "DELETE"),
    "blob": ("GET", "HEAD", "DELETE"),
    "upload": ("POST", "GET", "PATCH", "PUT", "DELETE"),
    "referrers": ("GET", "HEAD"),
}
# What the registry is told a forwarded request may do: exactly the decided action.
_UPSTREAM_ACTIONS = {PULL: ("pull",), PUSH: ("pull", "push"), DELETE: ("delete",)}
_MAX_FORM_BYTES = 64 << 10
_REQUEST_HEADERS = ("accept", "content-type", "content-length", "content-range", "range", "if-none-match",
                    "if-match", "if-modified-since")
_RESPONSE_HEADERS = ("content-type", "content-length", "docker-content-digest", "docker-upload-uuid", "location",
                     "range", "content-range", "accept-ranges", "etag", "link", "oci-subject", "last-modified",
                     "cache-control", "docker-distribution-api-version", "oci-filters-applied")


@dataclass(frozen=True)
class Target:
    """A parsed ``/v2`` request: the route, the repository, and its reference, digest or upload id."""

    route: str
    name: str
    ref: str = ""

    @property
    def upstream_path(self) -> str:
        """The registry URL path, built from parsed parts only."""
        tail = {"tags": "tags/list", "manifest": f"manifests/{self.ref}", "blob": f"blobs/{self.ref}",
                "upload": f"blobs/uploads/{self.ref}", "referrers": f"referrers/{self.ref}"}[self.route]
        return f"/v2/{self.name}/{tail}"


def _parse(path: str, method: str) -> Target | Response:
    """The request's target, or the OCI error answering a malformed one."""
    for route, pattern in _ROUTES:  # noqa: B007 (the matching route is used after the loop)
        if match := pattern.match(path):
            break
    else:
        if re.search(r"(^|/)(manifests|blobs|tags|referrers)/", path):
            return oci_error(400, "NAME_INVALID", "invalid repository name or reference")
        return oci_error(404, "UNSUPPORTED", "not a distribution API path")
    allowed = _ROUTE_METHODS[route]
    if route == "upload":
        allowed = ("POST",) if not match["ref"] else tuple(m for m in allowed if m != "POST")
    if method not in allowed:
        return oci_error(405, "UNSUPPORTED", f"{method} is not supported here",
                         headers={"Allow": ", ".join(allowed)})
    try:
        name = names.repository(match["name"])
        ref = match["ref"] if "ref" in pattern.groupindex else ""
        if route == "manifest":
            ref = names.reference(ref)
        elif route in ("blob", "referrers"):
            ref = names.digest(ref)
    except names.InvalidName as exc:
        if exc.code == "TAG_INVALID" and method != "PUT":
            # No manifest can have that name: what the conformance suite (and Distribution) answer.
            return oci_error(404, "MANIFEST_UNKNOWN", "manifest unknown")
        return oci_error(400, exc.code, str(exc))
    return Target(route, name, ref)


def _action(target: Target, method: str) -> str:
    if target.route == "upload" or (target.route == "manifest" and method == "PUT"):
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


async def _relayed(gateway: Gateway, request: Request, resp: httpx.Response) -> AsyncIterator[bytes]:
    """The registry's answer, passed on as it comes; a break on the registry's side is
    logged in one line and ends the client's response short (see disconnects)."""
    sent = 0
    try:
        async for chunk in _counted(gateway, resp.aiter_raw(), "out"):
            sent += len(chunk)
            yield chunk
    except httpx.TransportError as exc:
        log.warning("registry stream broke after %d of %s bytes: %s %s: %s", sent,
                    resp.headers.get("content-length", "?"), request.method, request.url.path[:300],
                    exc.__class__.__name__)
        raise UpstreamBroke from exc


async def forward(
    gateway: Gateway,
    request: Request,
    target: Target,
    action: str,
    *,
    content: bytes | None = None,
    params: list[tuple[str, str | int | float | bool | None]] | None = None,
    extra_headers: dict[str, str] | None = None,
    send_body: bool = True,
    without: tuple[str, ...] = (),
    method: str | None = None,
) -> Response:
    """Send the request on to the registry, with a token for exactly ``action``, and stream its answer back.

    Only the parsed target's path and the ``params`` the caller decided reach the
    registry: no client path fragment or query parameter passes through unread.
    """
    # Clients (skopeo) send Accept as several header lines: keep them all.
    headers = {k: ", ".join(v) for k in _REQUEST_HEADERS if k not in without and (v := request.headers.getlist(k))}
    headers.update(gateway.upstream.auth_header("repository", target.name, _UPSTREAM_ACTIONS[action]))
    if target.route == "upload":
        # Distribution reads upload parameters with Go's FormValue, which parses a form
        # body too: an upload body is only ever blob bytes to the registry.
        headers["content-type"] = "application/octet-stream"
    headers.update(extra_headers or {})
    body: Any = content
    if not send_body:
        body = b""
        headers.pop("transfer-encoding", None)
        headers["content-length"] = "0"
    elif content is None and request.method in ("POST", "PUT", "PATCH") and (
        "content-length" in request.headers or "transfer-encoding" in request.headers
    ):
        body = _counted(gateway, request.stream(), "in")
    upstream_request = gateway.upstream.http.build_request(
        method or request.method, target.upstream_path, params=params or [], headers=headers, content=body,
    )
    resp = await gateway.upstream.http.send(upstream_request, stream=True)
    out = _response_headers(gateway, request, resp)
    if resp.status_code >= 500 and request.method in ("POST", "PUT", "PATCH"):
        body = await resp.aread()  # an error document: small
        await resp.aclose()
        if b"no space left on device" in body or _storage_full(gateway, request):
            log.warning("registry storage full: %s /v2/%s refused", request.method, target.upstream_path[4:200])
            return oci_error(507, "UNKNOWN", "the registry's storage is full: nothing was stored; retry once space "
                             "is freed")
        return Response(body, status_code=resp.status_code, headers=out)
    if resp.status_code == 416 and target.route == "blob":
        # Distribution announces the blob's Content-Length before Go's range check fails,
        # then sends a short text: answer the 416 itself, whole (the connection is dropped).
        await resp.aclose()
        out.pop("content-length", None)
        return Response(b"", status_code=416, headers=out)
    if request.method == "HEAD" or resp.status_code in (204, 304):
        # Read the (empty) body so the connection goes back to the pool: closing an
        # unread response makes httpcore drop the connection, a TCP handshake per HEAD.
        await resp.aread()
        await resp.aclose()
        return Response(b"", status_code=resp.status_code, headers=out)
    return StreamingResponse(
        _relayed(gateway, request, resp),
        status_code=resp.status_code,
        headers=out,
        background=BackgroundTask(resp.aclose),
    )


def _storage_full(gateway: Gateway, request: Request) -> bool:
    """Whether the embedded registry's filesystem lacks room for this request (its 5xx then
    means ENOSPC, which Distribution reports as an unknown error)."""
    root = gateway.config.storage_dir
    if root is None:
        return False
    try:
        stats = os.statvfs(root)
    except OSError:
        return False
    declared = request.headers.get("content-length", "")
    needed = max(1 << 20, int(declared) if declared.isdigit() and len(declared) < 19 else 0)
    return stats.f_bavail * stats.f_frsize < needed


async def v2(request: Request) -> Response:
    """Entry point for everything under ``/v2/``."""
    gateway: Gateway = request.app.state.gateway
    started = time.perf_counter()
    path = request.path_params.get("rest", "")
    route = "base" if path in ("", "/") else "catalog" if path == "_catalog" else "unknown"
    caller, claims, bad = await gateway.identify(request)
    decision = "allow"
    try:
        if route == "unknown":
            parsed = _parse(path, request.method)
            if isinstance(parsed, Response):
                response = parsed
                decision = "invalid"
            else:
                route = parsed.route
                response = await _dispatch(gateway, request, parsed, caller, claims, bad)
        else:
            response = await _dispatch_top(gateway, request, route, caller, claims, bad)
        if response.status_code in (401, 403):
            decision = "deny" if (bad or caller.name is not None or claims is not None) else "challenge"
    except gate.GateError as exc:
        decision = "deny"
        gateway.metrics.denials.labels("gate").inc()
        gateway.audit.record("manifest.put", actor=caller.label, decision="deny", reason=str(exc), code=exc.code)
        response = oci_error(exc.status, exc.code, str(exc))
    except ClientDisconnect:
        # One line, not a traceback: the client went away mid-request (its session, if any, stays resumable).
        log.info("client disconnected during %s /v2/%s", request.method, path[:200])
        decision = "disconnected"
        response = Response(b"", status_code=499)  # never sent; counted in the metrics as nginx does
    except httpx.TransportError as exc:
        log.warning("registry unreachable during %s /v2/%s: %s", request.method, path[:200],
                    exc.__class__.__name__)
        decision = "upstream_error"
        response = oci_error(503, "UNAVAILABLE", "the registry behind the gateway is unavailable: retry later",
                             headers={"Retry-After": "1"})
    gateway.metrics.requests.labels(route, request.method, str(response.status_code), decision).inc()
    gateway.metrics.latency.labels(route, request.method).observe(time.perf_counter() - started)
    return response


async def _dispatch_top(
    gateway: Gateway, request: Request, route: str, caller: Caller, claims: dict[str, Any] | None, bad: bool
) -> Response:
    """``/v2/`` (the API version check) and ``/v2/_catalog``."""
    if request.method not in ("GET", "HEAD"):
        return oci_error(405, "UNSUPPORTED", f"{request.method} is not supported here", headers={"Allow": "GET, HEAD"})
    authenticated = claims is not None or caller.name is not None
    scope = "registry:catalog:*" if route == "catalog" else None
    if bad or not authenticated:
        return oci_error(401, "UNAUTHORIZED", "authentication required", gateway.challenge(request, scope))
    if route == "base":
        return JSONResponse({}, headers={"Docker-Distribution-API-Version": "registry/2.0"})
    return await _catalog(gateway, request, caller)


async def _dispatch(
    gateway: Gateway,
    request: Request,
    target: Target,
    caller: Caller,
    claims: dict[str, Any] | None,
    bad: bool,
) -> Response:
    name = target.name
    action = _action(target, request.method)
    scope = f"repository:{name}:{'pull,push' if action == PUSH else action}"
    if bad or not gateway.permits(caller, claims, name, action):
        probe = not bad and claims is None and caller.name is None
        if not probe:
            gateway.metrics.denials.labels("scope").inc()
        # An anonymous first request is the token dance's opening move, not a denial.
        gateway.audit.record(f"{target.route}.{request.method.lower()}", actor=caller.label,
                             decision="challenge" if probe else "deny", repository=name, action=action,
                             reason="not permitted")
        return gateway.unauthorized(request, scope, claims is not None)

    if target.route == "tags":
        return await _paged_tags(gateway, request, caller, name)
    if target.route == "referrers":
        return _referrers(gateway, request, caller, name, target.ref)
    if target.route == "blob":
        return await _blob(gateway, request, caller, target, action)
    if target.route == "upload":
        return await _upload(gateway, request, caller, target)
    return await _manifest(gateway, request, caller, target)


async def _blob(gateway: Gateway, request: Request, caller: Caller, target: Target, action: str) -> Response:
    name, digest = target.name, target.ref
    if request.method == "DELETE":
        refused = await _release_guard(gateway, caller, name, digest, "blob.delete")
        if refused is not None:
            return refused
        response = await forward(gateway, request, target, action)
        gateway.audit.record("blob.delete", actor=caller.label, decision="allow", repository=name,
                             digest=digest, status=response.status_code)
        return response
    if not gateway.node_content.permits(caller, name, digest):
        return _node_denied(gateway, caller, name, digest)
    if gateway.local_blobs is not None:
        local = gateway.local_blobs.response(name, digest)
        if local is not None:
            size = int(local.headers.get("content-length", "0") or 0)
            if request.method == "GET":
                gateway.metrics.bytes.labels("out").inc(size)
            return local
    if "range" in request.headers:
        return await _ranged_blob(gateway, request, target, action, request.headers["range"])
    return await forward(gateway, request, target, action)


async def _ranged_blob(gateway: Gateway, request: Request, target: Target, action: str, header: str) -> Response:
    """A proxied ranged read, answered as RFC 9110 says (ranges.py) rather than as Go 1.19 does
    (416 for an ignorable range, ``bytes=-0`` as an inverted 206). One HEAD for the size;
    only resumed downloads pay it."""
    if not ranges.is_valid(header):
        return await forward(gateway, request, target, action, without=("range",))
    head = await gateway.upstream.http.head(target.upstream_path, headers=gateway.upstream.auth_header(
        "repository", target.name, _UPSTREAM_ACTIONS[PULL]))
    size = head.headers.get("content-length", "")
    if head.status_code != 200 or not size.isdigit():
        # missing (the registry answers), or a storage redirect: the client sends its Range to the storage
        return await forward(gateway, request, target, action)
    try:
        wanted = ranges.resolve(header, int(size))
    except ranges.Unsatisfiable as exc:
        return Response(b"", status_code=416, headers={"Content-Range": f"bytes */{exc.size}"})
    normalized = "bytes=" + ",".join(f"{start}-{end - 1}" for start, end in wanted)
    return await forward(gateway, request, target, action, extra_headers={"range": normalized})


async def _release_guard(gateway: Gateway, caller: Caller, name: str, digest: str, event: str) -> Response | None:
    """403 when a non-admin deletes content a release needs (the release itself, or any part of it)."""
    if caller.admin:
        return None
    release = await releases.release_holding(gateway, name, digest)
    if release is None:
        return None
    gateway.metrics.denials.labels("immutable_tag").inc()
    gateway.audit.record(event, actor=caller.label, decision="deny", repository=name, digest=digest,
                         release=release, reason="part of a released version")
    return oci_error(403, "DENIED", f"{digest} is part of the released version {release}: only an admin may "
                     "delete a release")


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
        if visible:
            headers["Link"] = f'</v2/_catalog?last={quote(visible[-1])}&n={n}>; rel="next"'
    return JSONResponse({"repositories": visible}, headers=headers)


def _referrers(gateway: Gateway, request: Request, caller: Caller, name: str, digest: str) -> Response:
    artifact_type = request.query_params.get("artifactType")
    doc = index_document(catalog.referrer_descriptors(gateway, caller, name, digest), artifact_type)
    headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type else {}
    return JSONResponse(doc, media_type=mt.OCI_INDEX, headers=headers)


async def _form_values(request: Request) -> dict[str, str]:
    """The fields of a small ``application/x-www-form-urlencoded`` body (first value wins).

    Distribution reads ``mount``/``from`` with Go's ``FormValue``: body fields first, then
    the query. The gateway decides on the same values, then forwards only the query it
    built (and never such a body), so what the registry acts on is exactly what was authorised.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return {}
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > _MAX_FORM_BYTES:
            return {}
    fields: dict[str, str] = {}
    for key, value in parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True):
        fields.setdefault(key, value)
    return fields


async def _upload(gateway: Gateway, request: Request, caller: Caller, target: Target) -> Response:
    name = target.name
    query = dict(request.query_params)
    params: list[tuple[str, str | int | float | bool | None]] = []
    if "_state" in query:
        params.append(("_state", query["_state"]))
    if "digest" in query:
        try:
            params.append(("digest", names.digest(query["digest"])))
        except names.InvalidName as exc:
            return oci_error(400, exc.code, str(exc))
    monolithic = request.method == "POST" and "digest" in query
    extra: dict[str, str] | None = None
    if request.method == "POST" and not monolithic:
        wanted: dict[str, str] = {k: query[k] for k in ("mount", "from") if k in query}
        wanted.update(await _form_values(request))
        source, blob = wanted.get("from"), wanted.get("mount")
        if source is not None or blob is not None:
            mount = _mount_decision(gateway, caller, name, source, blob)
            if mount is not None:
                params += [("mount", mount[1]), ("from", mount[0])]
                extra = {"Authorization": gateway.upstream.bearer_for([(name, ("pull", "push")),
                                                                      (mount[0], ("pull",))])}
    content_range = request.headers.get("content-range")
    if content_range and request.method in ("PATCH", "PUT") and request.headers.get("content-length") != "0":
        refused = await _out_of_order(gateway, request, target, content_range)
        if refused is not None:
            return refused
    if monolithic:
        return await _monolithic(gateway, request, caller, target, str(dict(params)["digest"]))
    # A POST that starts a session carries no blob: its body is never forwarded.
    send_body = request.method in ("PATCH", "PUT")
    response = await forward(gateway, request, target, PUSH, params=params, extra_headers=extra, send_body=send_body)
    if response.status_code == 201 and request.method in ("PUT", "POST"):
        gateway.audit.record("blob.push", actor=caller.label, decision="allow", repository=name,
                             digest=response.headers.get("docker-content-digest"),
                             mounted_from=dict(params).get("from"))
    return response


async def _monolithic(gateway: Gateway, request: Request, caller: Caller, target: Target, digest: str) -> Response:
    """``POST ?digest=`` with the blob, completed here: Distribution 2.8 answers 202 without
    reading the body (and Go drops the connection under a large one), so the gateway opens
    a session and PUTs the body into it, answering 201 like a registry that supports
    monolithic uploads (distribution-spec 1.1)."""
    opened = await gateway.upstream.http.post(
        target.upstream_path, headers=gateway.upstream.auth_header("repository", target.name, _UPSTREAM_ACTIONS[PUSH]))
    location = urlsplit(opened.headers.get("location", ""))
    session = location.path.rsplit("/", 1)[-1]
    if opened.status_code != 202 or not re.match(r"^[A-Za-z0-9_-]+$", session):
        return Response(opened.content, status_code=opened.status_code,
                        headers=_response_headers(gateway, request, opened))
    state: list[tuple[str, str | int | float | bool | None]] = [
        (k, v) for k, v in parse_qsl(location.query) if k == "_state"]
    response = await forward(gateway, request, Target("upload", target.name, session), PUSH, method="PUT",
                             params=[*state, ("digest", digest)])
    if response.status_code == 201:
        gateway.audit.record("blob.push", actor=caller.label, decision="allow", repository=target.name,
                             digest=response.headers.get("docker-content-digest"), mounted_from=None)
    return response


def _mount_decision(gateway: Gateway, caller: Caller, name: str, source: str | None,
                    blob: str | None) -> tuple[str, str] | None:
    """(source, digest) when the caller may read the blob in the source, else None.

    A refused mount becomes a plain upload session (202), what a registry answers for a
    blob it does not have, so the answer says nothing about the source.
    """
    try:
        source_name = names.repository(source or "")
        digest = names.digest(blob or "")
    except names.InvalidName:
        source_name, digest = "", ""
    allowed = bool(source_name) and (gateway.permits(caller, None, source_name, PULL)
                                     and gateway.node_content.permits(caller, source_name, digest))
    gateway.audit.record("blob.mount", actor=caller.label, decision="allow" if allowed else "deny",
                         repository=name, source=source, digest=blob)
    return (source_name, digest) if allowed else None


# Chunk ranges as clients send them: the spec's ``0-29``, and RFC 9110's ``bytes 0-29/*``
# or ``bytes 0-29/60`` (also seen: ``bytes=0-29``).
_CHUNK_RANGE = re.compile(r"^(?:bytes[ =]\s*)?(\d{1,19})-(\d{1,19})(?:/(?:\d{1,19}|\*))?$")


async def _out_of_order(gateway: Gateway, request: Request, target: Target, content_range: str) -> Response | None:
    """416, with the ``Range`` received so far, for a chunk that does not start where the
    upload stands or whose ``Content-Range`` is unreadable (distribution-spec 1.1;
    Distribution 2.8 accepts it and corrupts the session). Asks the registry for the
    upload status first, so only chunked uploads pay one extra round trip per chunk."""
    match = _CHUNK_RANGE.match(content_range.strip())
    state: list[tuple[str, str | int | float | bool | None]] = [
        ("_state", v) for v in request.query_params.getlist("_state")]
    status = await gateway.upstream.http.get(
        target.upstream_path, params=state,
        headers=gateway.upstream.auth_header("repository", target.name, _UPSTREAM_ACTIONS[PUSH]))
    if status.status_code != 204:
        return None  # unknown session: the registry answers the PATCH itself
    stands = status.headers.get("range", "0-0")
    end = int(stands.split("-")[-1]) if re.match(r"^0-\d{1,19}$", stands) else 0
    # Distribution says "0-0" for an empty upload and for a one-byte one alike: either start goes on.
    expected = {end + 1} if end > 0 else {0, 1}
    received = {"Range": stands}
    if match is None:
        return oci_error(416, "BLOB_UPLOAD_INVALID", "Content-Range must be <start>-<end>", headers=received)
    start, last = int(match[1]), int(match[2])
    if start in expected and last >= start:
        return None
    return oci_error(416, "BLOB_UPLOAD_INVALID", f"chunk {start}-{last} does not continue the upload ({stands})",
                     headers=received)


def _accepts(request: Request, media_type: str) -> bool:
    """Whether the client's Accept header(s) take ``media_type`` (no header: let the registry decide)."""
    accepted = {part.split(";")[0].strip() for value in request.headers.getlist("accept") for part in value.split(",")}
    return media_type in accepted or "*/*" in accepted


async def _manifest(gateway: Gateway, request: Request, caller: Caller, target: Target) -> Response:
    name, ref = target.name, target.ref
    if request.method == "DELETE":
        return await _delete_manifest(gateway, request, caller, target)
    if request.method == "PUT":
        return await _put_manifest(gateway, request, caller, target)
    cached = await gateway.manifest(name, ref)
    if caller.kind == "node" and not gateway.node_content.permits(caller, name, cached.digest if cached else ref):
        return _node_denied(gateway, caller, name, cached.digest if cached else ref)
    if cached is None or not _accepts(request, cached.media_type):
        # Missing, or a type the client did not ask for: the registry answers (404,
        # conversion or refusal) exactly as it would without us.
        return await forward(gateway, request, target, PULL)
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


async def _put_manifest(gateway: Gateway, request: Request, caller: Caller, target: Target) -> Response:
    name, ref = target.name, target.ref
    limit = gateway.config.max_manifest_bytes
    data = await _read_limited(request, limit)
    digest = sha256_bytes(data)
    checked = await run_in_threadpool(gate.structural, data, request.headers.get("content-type", ""), limit)
    by_digest = names.looks_like_digest(ref)
    if by_digest and ref != digest:
        raise gate.GateError(f"reference: {ref} is not the digest of the manifest ({digest})",
                             code="DIGEST_INVALID")
    claimed = False
    if not by_digest and is_release_tag(ref):
        refused, claimed = await _claim_release(gateway, caller, name, ref, digest)
        if refused is not None:
            return refused

    async def exists(child: str) -> bool:
        resp = await gateway.upstream.head(f"/v2/{name}/manifests/{child}", name, MANIFEST_ACCEPT)
        return resp.status_code == 200

    async def read_blob(blob: str, size: int) -> bytes | None:
        return await gateway.upstream.read_blob(name, blob, size)

    if checked.is_bundle:
        await gate.check_bundle(checked, exists)
    await gate.check_referrer(checked, read_blob)

    response = await forward(gateway, request, target, PUSH, content=data,
                             extra_headers={"content-type": checked.media_type, "content-length": str(len(data))})
    gateway.manifests.forget(name, ref)
    if response.status_code != 201:
        if claimed:
            gateway.store.unclaim_tag(name, ref, digest)
        return response
    gateway.store.ensure_repository(name, gateway.config.default_visibility)
    if not by_digest and not claimed:
        gateway.store.record_tag(name, ref, digest, caller.label)
    await bundle_index.manifest_written(gateway, name, ref, digest, checked.document, len(data))
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
                         digest=digest, artifact_type=checked.artifact_type,
                         subject=(checked.subject or {}).get("digest"))
    return response


async def _claim_release(gateway: Gateway, caller: Caller, name: str, tag: str,
                         digest: str) -> tuple[Response | None, bool]:
    """Bind a release tag to ``digest`` for good: (refusal or None, whether this request claimed it).

    The claim in the state store is atomic, so of concurrent pushes of different
    manifests to a new release tag exactly one wins (across gateways too). Admins may
    re-point a release; that is recorded.
    """
    head = await gateway.upstream.head(f"/v2/{name}/manifests/{tag}", name, MANIFEST_ACCEPT)
    current = head.headers.get("docker-content-digest") if head.status_code == 200 else None
    if caller.admin:
        if current and current != digest:
            gateway.audit.record("tag.override", actor=caller.label, decision="allow", repository=name, tag=tag,
                                 digest=digest, previous=current)
        return None, False
    bound, claimed = (current, False) if current else gateway.store.claim_tag(name, tag, digest, caller.label)
    if bound == digest:
        return None, claimed
    gateway.metrics.denials.labels("immutable_tag").inc()
    gateway.audit.record("manifest.put", actor=caller.label, decision="deny", repository=name, tag=tag,
                         digest=digest, current=bound, reason="release tag is immutable")
    return oci_error(403, "DENIED", f"tag {tag}: a released version cannot be re-pointed (it names {bound})"), False


async def _delete_manifest(gateway: Gateway, request: Request, caller: Caller, target: Target) -> Response:
    name, ref = target.name, target.ref
    if not caller.admin and not names.looks_like_digest(ref) and is_release_tag(ref):
        gateway.metrics.denials.labels("immutable_tag").inc()
        gateway.audit.record("manifest.delete", actor=caller.label, decision="deny", repository=name, tag=ref,
                             reason="release tag is immutable")
        return oci_error(403, "DENIED", f"{ref} is a released version: only an admin may delete it")
    if names.looks_like_digest(ref):
        refused = await _release_guard(gateway, caller, name, ref, "manifest.delete")
        if refused is not None:
            return refused
    response = await forward(gateway, request, target, DELETE)
    gateway.manifests.forget(name, ref)
    if response.status_code == 202:
        gateway.store.remove_referrer(name, ref)
        gateway.store.forget_digest(name, ref)
        bundle_index.manifest_deleted(gateway, name, ref)
    gateway.audit.record("manifest.delete", actor=caller.label, decision="allow", repository=name, digest=ref,
                         status=response.status_code)
    return response


async def _paged_tags(gateway: Gateway, request: Request, caller: Caller, name: str) -> Response:
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
    tags = await catalog.visible_tags(gateway, caller, name, sorted(resp.json().get("tags") or []))
    if last := request.query_params.get("last"):
        tags = [t for t in tags if t > last]
    headers = {}
    if 0 <= n < len(tags):
        tags = tags[:n]
        if n:
            headers["Link"] = f'</v2/{name}/tags/list?n={n}&last={quote(tags[-1])}>; rel="next"'
    return JSONResponse({"name": name, "tags": tags}, headers=headers)
