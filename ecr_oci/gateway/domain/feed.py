"""``GET /api/v1/deployments/{deployment}/feed``: what a deployment's nodes may run.

The Edge Scheduler polls this. It lists every bundle version approved for the
deployment (exactly the content its nodes may pull: the ``approved_content`` the
proxy enforces), with per-platform image digests, the model manifest, requirements,
whether each node of the deployment can run it (and why not), the latest performance
profile per node hardware, and the signature/countersignature status. Format:
``annotations-spec/v1/deploy.md``.

Polling is cheap: the answer carries a strong ``ETag`` (the digest of the body) and
``If-None-Match`` gets ``304``; ``?since=<cursor>`` lists only bundles whose approval
changed after the cursor (granted: in ``bundles``; revoked: in ``removed``). The
parts of an entry that never change for a digest (manifests, profile summaries,
signature checks) are cached by digest.

Access: :func:`ecr_oci.gateway.domain.policy.can_read_feed` (administrators and the
deployment's own nodes). Anyone else gets the same 404 as for a deployment that does
not exist.
"""

from __future__ import annotations

import json
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ecr_oci import mediatypes as mt
from ecr_oci.bundle.annotations import metadata_from
from ecr_oci.bundle.config import Platform
from ecr_oci.deploy import spec as deploy_spec
from ecr_oci.deploy.facts import fit
from ecr_oci.digest import sha256_bytes
from ecr_oci.errors import EcrError
from ecr_oci.gateway.core import Gateway
from ecr_oci.gateway.domain import names
from ecr_oci.gateway.domain.policy import can_read_feed
from ecr_oci.gateway.domain.system import APPROVED_FOR
from ecr_oci.gateway.surfaces.api import ApiError, _caller, _handler, _parsed
from ecr_oci.profile.attach import WINDOW_END
from ecr_oci.trust import simplesigning as ss
from ecr_oci.trust.keys import verify_bytes

# How long a computed full answer is reused while no stage event, node fact or referrer
# of an approved bundle changed (what else can change, e.g. a new tag on an approved
# digest, shows up after at most this).
FRESH_SECONDS = 10.0
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
SIGNATURE_TYPES = frozenset({mt.COSIGN_ARTIFACT_TYPE, mt.COSIGN_SIMPLESIGNING, mt.SIGSTORE_BUNDLE})
_MAX_CACHED = 4096


class DigestCache:
    """A bounded map from a digest (whose content never changes) to what we derived from it."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, Any] = OrderedDict()

    def get(self, key: str) -> Any:
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        return None

    def put(self, key: str, value: Any) -> None:
        self._items[key] = value
        if len(self._items) > _MAX_CACHED:
            self._items.popitem(last=False)


def _cache(gateway: Gateway) -> DigestCache:
    cache = getattr(gateway, "_feed_cache", None)
    if cache is None:
        cache = DigestCache()
        gateway._feed_cache = cache  # type: ignore[attr-defined]
    return cache


def _platform_text(platform: dict[str, Any]) -> str:
    return "/".join(str(platform[k]) for k in ("os", "architecture", "variant") if platform.get(k))


async def _json_manifest(gateway: Gateway, repository: str, digest: str) -> dict[str, Any] | None:
    manifest = await gateway.manifest(repository, digest)
    if manifest is None:
        return None
    doc = json.loads(manifest.data)
    return doc if isinstance(doc, dict) else None


async def _blob(gateway: Gateway, repository: str, layer: dict[str, Any], limit: int = 1 << 20) -> bytes | None:
    """A small blob a manifest names (a profile summary, a signature payload), verified;
    None when absent, larger than ``limit`` (by its descriptor, then while reading) or wrong."""
    digest, size = layer.get("digest"), layer.get("size")
    if not isinstance(digest, str) or not _DIGEST.match(digest) or not isinstance(size, int) \
            or not 0 <= size <= limit:
        return None
    path = f"/v2/{repository}/blobs/{digest}"
    async with gateway.upstream.http.stream("GET", path, headers=gateway.upstream.repo_headers(repository)) as resp:
        if resp.status_code != 200:
            return None
        data = b""
        async for chunk in resp.aiter_bytes():
            data += chunk
            if len(data) > limit:
                return None
    return data if len(data) == size and sha256_bytes(data) == digest else None


async def _static_part(gateway: Gateway, repository: str, digest: str) -> dict[str, Any] | None:
    """What a bundle digest says about itself (never changes): images, model, requirements."""
    cache = _cache(gateway)
    key = f"bundle:{repository}@{digest}"
    if (cached := cache.get(key)) is not None:
        return dict(cached)
    index = await _json_manifest(gateway, repository, digest)
    if index is None or index.get("artifactType") != mt.BUNDLE_ARTIFACT_TYPE:
        return None
    annotations = dict(index.get("annotations") or {})
    metadata = metadata_from(annotations)
    platforms, model = [], None
    for entry in index.get("manifests") or []:
        platform = entry.get("platform") or {}
        if entry.get("artifactType") == mt.MODEL_ARTIFACT_TYPE:
            doc = await _json_manifest(gateway, repository, entry["digest"]) or {}
            layers = [layer for layer in doc.get("layers") or []
                      if (layer.get("annotations") or {}).get(mt.ECR_LAYER_ROLE) == "model"]
            model = {"digest": entry["digest"], "size": entry.get("size"),
                     "files": len(layers), "bytes": sum(int(layer.get("size") or 0) for layer in layers),
                     "path": annotations.get(mt.ECR_MODEL_PATH) or "/app/model"}
        elif platform.get("os") not in (None, "unknown"):
            platforms.append({"platform": _platform_text(platform), "digest": entry["digest"],
                              "size": entry.get("size")})
    part = {
        "repository": repository,
        "digest": digest,
        "name": metadata.get("name"),
        "version": metadata.get("version"),
        "platforms": platforms,
        "model": model,
        "requirements": {"runtime": metadata.get("runtime") or {}, "hardware": metadata.get("hardware") or {}},
    }
    cache.put(key, part)
    return dict(part)


async def _profile(gateway: Gateway, repository: str, digest: str) -> dict[str, Any] | None:
    """The short form of one profile's summary (cached by the profile's digest)."""
    cache = _cache(gateway)
    key = f"profile:{repository}@{digest}"
    if (cached := cache.get(key)) is not None:
        return cached or None
    doc = await _json_manifest(gateway, repository, digest) or {}
    summary = None
    for layer in doc.get("layers") or []:
        if layer.get("mediaType") == mt.PROFILE_SUMMARY_LAYER and (raw := await _blob(gateway, repository, layer)):
            try:
                summary = json.loads(raw)
            except ValueError:
                summary = None
            break
    short: dict[str, Any] = {}
    if isinstance(summary, dict):
        metrics = summary.get("metrics") or {}
        latency = metrics.get("latency_seconds") or {}
        short = {"profile": digest, "node": summary.get("node"), "stage": summary.get("stage"),
                 "window": summary.get("window"), "hardware": summary.get("hardware"),
                 "latency_seconds": {k: latency.get(k) for k in ("p50", "p95", "p99") if k in latency},
                 **{k: metrics.get(k) for k in ("throughput_per_second", "cpu_cores", "peak_rss_bytes",
                                                "gpu_utilization", "gpu_power_watts") if k in metrics}}
    cache.put(key, short)
    return short or None


async def _signature(gateway: Gateway, repository: str, bundle: str, digest: str) -> list[tuple[bool, str]]:
    """(made by this gateway's key, deployment it approves) per signature layer (cached)."""
    cache = _cache(gateway)
    key = f"signature:{repository}@{digest}"
    if (cached := cache.get(key)) is not None:
        return cached  # type: ignore[no-any-return]
    public = gateway.countersign_key.key.public_key()
    out: list[tuple[bool, str]] = []
    for layer in (await _json_manifest(gateway, repository, digest) or {}).get("layers") or []:
        payload = await _blob(gateway, repository, layer, limit=64 << 10)
        claims = ss.parse_claims(payload) if payload else None
        if payload is None or claims is None or ss.claimed_digest(claims) != bundle:
            continue
        signature = ss.decode_signature((layer.get("annotations") or {}).get(ss.SIGNATURE_ANNOTATION))
        ours = bool(signature) and verify_bytes(public, payload, signature)
        out.append((ours, str(ss.optional_claims(claims).get(APPROVED_FOR) or "")))
    cache.put(key, out)
    return out


async def _entry(gateway: Gateway, repository: str, digest: str, deployment: str, nodes: list[str],
                 facts: dict[str, dict[str, Any]], base: str) -> dict[str, Any] | None:
    key_url = f"{base}/api/v1/signing-key"
    entry = await _static_part(gateway, repository, digest)
    if entry is None:
        return None
    approvals = [e for e in gateway.store.stage_events(repository, digest)
                 if e.stage == "approved" and e.deployment == deployment]
    entry["tags"] = gateway.store.tags_for(repository, digest)
    entry["approved"] = {"at": approvals[-1].at, "by": approvals[-1].actor} if approvals else None
    signatures: list[tuple[bool, str]] = []
    profiles: list[tuple[str, dict[str, Any]]] = []
    for referrer in gateway.store.referrers(repository, digest):
        if referrer.artifact_type in SIGNATURE_TYPES:
            signatures += await _signature(gateway, repository, digest, referrer.digest)
        elif referrer.artifact_type == mt.PROFILE_ARTIFACT_TYPE:
            annotations = referrer.annotations or {}
            if summary := await _profile(gateway, repository, referrer.digest):
                profiles.append((annotations.get(WINDOW_END, ""), summary))
    entry["signatures"] = {
        "signed": any(not ours for ours, _ in signatures),
        "countersigned": any(ours and approved in (deployment, "") for ours, approved in signatures),
        "key_url": key_url,
    }
    profiles.sort(key=lambda item: item[0])
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for _, summary in profiles:
        hardware = summary.get("hardware") or {}
        latest[(str(hardware.get("arch")), str(hardware.get("accelerator") or ""))] = summary
    entry["performance"] = list(latest.values())
    hardware = entry["requirements"]["hardware"]
    platforms = [p["platform"] for p in entry["platforms"]]
    entry["nodes"] = []
    for node in nodes:
        node_facts = facts.get(node)
        result = fit(node_facts, platforms, hardware if isinstance(hardware, dict) else {}).to_dict()
        result["node"] = node
        result["performance"] = _matching_profile(profiles, node, node_facts)
        result["spec"] = (f"{base}/api/v1/deployments/{quote(deployment)}/spec?"
                          + urlencode({"repository": repository, "digest": digest, "node": node})
                          if result["can_run"] else None)
        entry["nodes"].append(result)
    return entry


def _matching_profile(profiles: list[tuple[str, dict[str, Any]]], node: str,
                      facts: dict[str, Any] | None) -> dict[str, Any] | None:
    """The latest profile from this node, else from hardware like it (same arch and accelerator)."""
    own = [s for _, s in profiles if s.get("node") == node]
    if own:
        return own[-1]
    if not facts:
        return None
    arch = str(facts.get("platform", "")).split("/")[1:2]
    accelerator = facts.get("accelerator") or None
    alike = [s for _, s in profiles if [str((s.get("hardware") or {}).get("arch"))] == arch
             and ((s.get("hardware") or {}).get("accelerator") or None) == accelerator]
    return alike[-1] if alike else None


def _cursor(text: str | None) -> int | None:
    if text is None:
        return None
    if not text.isdigit() or len(text) > 18:
        raise ApiError("since: a cursor from an earlier answer (digits)")
    return int(text)


@dataclass(frozen=True)
class _Answer:
    """A full feed answer as computed at ``at`` (monotonic), for one view of a deployment."""

    cursor: int
    nodes: tuple[str, ...]
    facts: str
    referrers: int
    data: bytes
    etag: str
    at: float


def _answers(gateway: Gateway) -> dict[tuple[str, str, str], _Answer]:
    answers = getattr(gateway, "_feed_answers", None)
    if answers is None:
        answers = {}
        gateway._feed_answers = answers  # type: ignore[attr-defined]
    return answers


def _respond(request: Request, data: bytes, etag: str) -> Response:
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    return Response(data, media_type="application/json", headers=headers)


async def feed(request: Request, gateway: Gateway) -> Response:
    caller = await _caller(request)
    deployment = _parsed(names.deployment, request.path_params["deployment"], "deployment")
    missing = ApiError(f"no deployment {deployment}", 404)
    if not can_read_feed(caller, deployment):
        raise missing
    since = _cursor(request.query_params.get("since"))
    # A node sees its own fit only (not its neighbours' facts), which also keeps a
    # thousand nodes' polls small; a scheduler may narrow the answer to one node.
    asked = request.query_params.get("node")
    wanted_node = caller.name if caller.kind == "node" else (
        _parsed(names.account, asked, "node") if asked is not None else None)
    all_nodes = gateway.store.deployment_nodes(deployment)
    if wanted_node is not None and wanted_node not in all_nodes:
        raise ApiError(f"no node {wanted_node} in deployment {deployment}", 404)
    nodes = [wanted_node] if wanted_node is not None else all_nodes
    facts = gateway.store.node_facts(nodes)
    facts_key = json.dumps(facts, sort_keys=True)
    base = gateway.public_base(request)
    view = (deployment, wanted_node or "", base)
    if since is None and (known := _answers(gateway).get(view)) is not None \
            and time.monotonic() - known.at < FRESH_SECONDS \
            and known.nodes == tuple(all_nodes) and known.facts == facts_key \
            and gateway.store.stage_changes(deployment, known.cursor)[0] == known.cursor \
            and gateway.store.approved_referrer_count(deployment) == known.referrers:
        # Nothing changed that decides membership, fit, signatures or profiles: approvals
        # and revocations are stage events, so a revoked bundle never outlives its event.
        return _respond(request, known.data, known.etag)
    referrers = gateway.store.approved_referrer_count(deployment)  # before the entries: never newer than them
    cursor, changed = gateway.store.stage_changes(deployment, since or 0)
    approved = gateway.store.approved_bundles(deployment)
    if not approved and not all_nodes and not changed:
        raise missing
    wanted = approved if since is None else [pair for pair in approved if pair in set(changed)]
    bundles = [e for repo, digest in wanted if (e := await _entry(gateway, repo, digest, deployment, nodes, facts,
                                                                   base))]
    body: dict[str, Any] = {
        "deployment": deployment,
        "cursor": str(cursor),
        "since": str(since) if since is not None else None,
        "node": wanted_node,
        "nodes": [{"node": n, "facts": facts.get(n)} for n in nodes],
        "bundles": bundles,
        "removed": [{"repository": r, "digest": d} for r, d in changed if (r, d) not in set(approved)]
        if since is not None else [],
        "signing_key": f"{base}/api/v1/signing-key",
    }
    data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    etag = f'"{sha256_bytes(data)}"'
    if since is None:
        answers = _answers(gateway)
        if len(answers) > _MAX_CACHED:
            answers.clear()
        answers[view] = _Answer(cursor, tuple(all_nodes), facts_key, referrers, data, etag, time.monotonic())
    return _respond(request, data, etag)


async def node_spec(request: Request, gateway: Gateway) -> Response:
    """The Pod that runs an approved bundle on one node of the deployment (``format=k8s``,
    the default, or ``podman``): what ``ecr deploy`` prints, for schedulers that fetch it."""
    caller = await _caller(request)
    deployment = _parsed(names.deployment, request.path_params["deployment"], "deployment")
    if not can_read_feed(caller, deployment):
        raise ApiError(f"no deployment {deployment}", 404)
    query = request.query_params
    repository = _parsed(names.repository, query.get("repository"), "repository")
    digest = _parsed(names.digest, query.get("digest"), "digest")
    node = _parsed(names.account, query.get("node"), "node")
    if caller.kind == "node" and node != caller.name:
        raise ApiError(f"no node {node} in deployment {deployment}", 404)  # its own spec only, like its feed
    missing = ApiError("no such bundle approved for this deployment", 404)
    if (repository, digest) not in set(gateway.store.approved_bundles(deployment)):
        raise missing
    if node not in gateway.store.deployment_nodes(deployment):
        raise ApiError(f"no node {node} in deployment {deployment}", 404)
    fmt = query.get("format", "k8s")
    if fmt not in ("k8s", "podman"):
        raise ApiError("format: k8s or podman")
    facts = gateway.store.node_facts([node]).get(node)
    if not facts:
        raise ApiError(f"node {node} has no recorded platform", 409)
    index = await _json_manifest(gateway, repository, digest)
    if index is None:
        raise missing
    model_entry = next((m for m in index.get("manifests") or [] if m.get("artifactType") == mt.MODEL_ARTIFACT_TYPE),
                       None)
    model = await _json_manifest(gateway, repository, model_entry["digest"]) if model_entry else None
    base = gateway.public_base(request)
    registry = base.split("://", 1)[1]
    try:
        target = deploy_spec.plan(index, digest, model, Platform.parse(facts["platform"]), registry=registry,
                                  repository=repository, scheme=base.split("://", 1)[0])
    except EcrError as exc:
        raise ApiError(str(exc), 409) from None
    fetcher = await gateway.manifest(deploy_spec.FETCHER_REPOSITORY, "latest")
    fetcher_image = f"{registry}/{deploy_spec.FETCHER_REPOSITORY}" + (f"@{fetcher.digest}" if fetcher else ":latest")
    kubernetes = fmt == "k8s"
    document = deploy_spec.pod(target, fetcher_image=fetcher_image, node=node, kubernetes=kubernetes)
    header = (deploy_spec.kubernetes_header if kubernetes else deploy_spec.podman_header)(target, node)
    return Response(deploy_spec.render(document, header=header), media_type="application/yaml")


routes = [
    Route("/api/v1/deployments/{deployment}/feed", _handler(feed), methods=["GET"]),
    Route("/api/v1/deployments/{deployment}/spec", _handler(node_spec), methods=["GET"]),
]
