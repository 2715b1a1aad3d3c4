"""The catalog as the web pages show it, read from the catalog index.

Like :mod:`ecr_oci.gateway.domain.catalog` (whose visibility checks these functions reuse),
every function takes the viewer and answers only what the viewer may pull; a
repository the viewer may not see is absent, exactly like one that does not exist.
The source is the state store's catalog index (:mod:`ecr_oci.gateway.domain.bundle_index`),
never the registry per request: a search filters an in-memory copy of the searched
columns (reloaded when the index changes), asks the policy engine about the
repositories found, and reads documents for the page shown only. Signatures,
provenance and profiles of the one version a bundle page shows are read from the
registry (and verification results cached by content).
"""

from __future__ import annotations

import json
import logging
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ecr_oci import mediatypes as mt
from ecr_oci.bundle.icon import sniff_image
from ecr_oci.gateway.core import Gateway
from ecr_oci.gateway.domain import bundle_index, catalog
from ecr_oci.gateway.domain.policy import Caller
from ecr_oci.gateway.domain.stages import STAGES, current_stages
from ecr_oci.gateway.domain.system import APPROVED_FOR
from ecr_oci.gateway.stores.state import BundleVersion, StageEvent
from ecr_oci.profile.attach import NODE, STAGE
from ecr_oci.trust import simplesigning as ss
from ecr_oci.trust.dsse import parse_envelope
from ecr_oci.trust.keys import key_id
from ecr_oci.trust.policy import AllOf, IsSimpleSigning, NamesDigest, PolicyError, SignedBy

log = logging.getLogger("ecr.gateway")
PER_PAGE = 20
SORTS = ("updated", "name")
_MAX_BLOB = 1 << 20


# --- search -------------------------------------------------------------------------------
@dataclass(frozen=True)
class SearchQuery:
    """What the search form asks (every field optional)."""

    q: str = ""
    platform: str = ""
    hardware: str = ""
    license: str = ""
    keyword: str = ""
    namespace: str = ""
    stage: str = ""
    deployment: str = ""
    sort: str = "updated"
    page: int = 1

    @classmethod
    def from_params(cls, params: Any) -> SearchQuery:
        def text(key: str, limit: int = 200) -> str:
            value = params.get(key) or ""
            return str(value).strip()[:limit]

        page = text("page", 6)
        stage = text("stage")
        sort = text("sort")
        return cls(q=text("q"), platform=text("platform"), hardware=text("hardware").lower(),
                   license=text("license").lower(), keyword=text("keyword").lower(), namespace=text("namespace"),
                   stage=stage if stage in STAGES else "", deployment=text("deployment", 64),
                   sort=sort if sort in SORTS else "updated", page=int(page) if page.isdigit() and int(page) else 1)

    def facets(self) -> list[str]:
        pairs = (("platform", self.platform), ("hardware", self.hardware), ("license", self.license),
                 ("keyword", self.keyword))
        return [f"{k}:{v}" for k, v in pairs if v]


@dataclass
class Version:
    """One bundle version as a page shows it."""

    repository: str
    tag: str
    digest: str
    pushed: float
    metadata: dict[str, Any]
    platforms: list[dict[str, Any]]
    model: dict[str, Any] | None
    size: int
    stages: dict[str, str] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return self.repository.split("/", 1)[0]

    @property
    def short_name(self) -> str:
        return self.repository.split("/", 1)[-1]


@dataclass(frozen=True)
class SearchPage:
    results: list[Version]
    total: int
    page: int
    pages: int


def _version(row: BundleVersion, stages: dict[str, str]) -> Version | None:
    try:
        doc = json.loads(row.document)
        return Version(row.repository, row.tag, row.digest, row.pushed, dict(doc["metadata"]),
                       list(doc["platforms"]), doc.get("model"), int(doc.get("size") or 0), stages)
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("skipping %s:%s in the catalog index: %s", row.repository, row.tag, exc)
        return None


def _stages_by_digest(events: Sequence[StageEvent]) -> dict[tuple[str, str], dict[str, str]]:
    grouped: dict[tuple[str, str], list[StageEvent]] = {}
    for event in events:
        grouped.setdefault((event.repository, event.digest), []).append(event)
    return {key: current_stages(evs) for key, evs in grouped.items()}


def _stage_matches(stages: dict[str, str], stage: str, deployment: str) -> bool:
    if deployment:
        return stages.get(deployment) == stage
    return stage in stages.values()


Row = tuple[str, str, str, float, str, str]  # repository, tag, digest, pushed, search_text, facets


class _CatalogCopy:
    """This process's copy of the index's searched columns, by repository with the newest
    version first. It is reloaded when the store's catalog generation moves (any gateway
    sharing the store bumps it on every write), so a search is a few list filters in
    memory instead of a scan of the database."""

    def __init__(self) -> None:
        self.generation = -1
        self.rows: list[Row] = []
        self.newest: list[Row] = []
        self.lock = threading.Lock()

    def current(self, gateway: Gateway) -> _CatalogCopy:
        generation = gateway.store.catalog_generation()
        if generation != self.generation:
            with self.lock:
                if generation != self.generation:
                    rows = sorted(gateway.store.catalog_rows(), key=lambda r: (r[3], r[1]), reverse=True)
                    rows.sort(key=lambda r: r[0])  # stable: newest first within each repository
                    self.rows, self.newest = rows, _first_per_repository(rows)
                    self.generation = generation
        return self


def _first_per_repository(rows: list[Row]) -> list[Row]:
    out: list[Row] = []
    for row in rows:
        if not out or out[-1][0] != row[0]:
            out.append(row)
    return out


_copies: weakref.WeakKeyDictionary[Any, _CatalogCopy] = weakref.WeakKeyDictionary()


def _copy(gateway: Gateway) -> _CatalogCopy:
    copy = _copies.get(gateway.store)
    if copy is None:
        copy = _copies[gateway.store] = _CatalogCopy()
    return copy.current(gateway)


def _newest_matching(gateway: Gateway, query: SearchQuery, staged: set[tuple[str, str]] | None) -> list[Row]:
    """Each repository's newest version matching the text, facets, namespace and, when
    ``staged`` is given, being one of those (repository, digest) pairs; by name."""
    copy = _copy(gateway)
    terms = bundle_index.query_terms(query.q)
    facets = [f"|{f}|" for f in query.facets()]
    if not (terms or facets or query.namespace or staged is not None):
        return list(copy.newest)
    rows = copy.rows
    if query.namespace:
        prefix = query.namespace + "/"
        rows = [r for r in rows if r[0].startswith(prefix)]
    if staged is not None:
        rows = [r for r in rows if (r[0], r[2]) in staged]
    rows = [r for r in rows if bundle_index.text_matches(terms, r[4])]
    for facet in facets:
        rows = [r for r in rows if facet in r[5]]
    return _first_per_repository(rows)


def search(gateway: Gateway, caller: Caller, query: SearchQuery, per_page: int = PER_PAGE) -> SearchPage:
    """Bundles with a version matching ``query`` that the caller may pull, one entry per
    bundle (its newest matching version), sorted and paged."""
    staged = None
    if query.stage:  # every stage event at once: few versions have any
        stages = _stages_by_digest(gateway.store.all_stage_events(None))
        staged = {k for k, v in stages.items() if _stage_matches(v, query.stage, query.deployment)}
    if caller.kind == "node":  # nodes see approved digests only: an older version may be the one shown
        rows = _copy(gateway).rows
        repositories = catalog.visible_repositories(gateway, caller, {r[0] for r in rows})
        approved = {(r[0], r[2]) for r in rows
                    if r[0] in repositories and catalog.may_see(gateway, caller, r[0], r[2])}
        staged = approved if staged is None else staged & approved
    rows = _newest_matching(gateway, query, staged)
    visible = catalog.visible_repositories(gateway, caller, [r[0] for r in rows])
    rows = [r for r in rows if r[0] in visible]
    if query.sort == "updated":
        rows.sort(key=lambda r: (-r[3], r[0]))  # else already by name
    pages = max(1, -(-len(rows) // per_page))
    page = min(query.page, pages)
    chosen = rows[(page - 1) * per_page: page * per_page]
    stored = {(v.repository, v.tag): v for v in gateway.store.bundle_versions_at([(r[0], r[1]) for r in chosen])}
    stages_shown = _stages_by_digest(gateway.store.all_stage_events([r[0] for r in chosen]))
    results = []
    for repository, tag, digest, *_ in chosen:
        stored_row = stored.get((repository, tag))
        version = _version(stored_row, stages_shown.get((repository, digest), {})) if stored_row else None
        if version is not None:
            results.append(version)
    return SearchPage(results, len(rows), page, pages)


# --- one bundle ---------------------------------------------------------------------------
def versions(gateway: Gateway, caller: Caller, repository: str) -> list[Version]:
    """The versions of a bundle the caller may see, newest first; [] when not visible or absent."""
    if not catalog.may_pull(gateway, caller, repository):
        return []
    stages = _stages_by_digest(gateway.store.stage_events(repository))
    out = []
    for row in gateway.store.bundle_versions(repository):
        if not catalog.may_see(gateway, caller, repository, row.digest):
            continue
        version = _version(row, stages.get((repository, row.digest), {}))
        if version is not None:
            out.append(version)
    return out


def timeline(gateway: Gateway, caller: Caller, repository: str, digest: str) -> list[StageEvent]:
    return catalog.stage_events(gateway, caller, repository, digest) or []


def doi_of(gateway: Gateway, caller: Caller, version: Version) -> str | None:
    """The version's DOI: the newest DOI referrer, else the one in its metadata."""
    dois = [r.annotations[mt.ECR_DOI] for r in catalog.referrer_descriptors(gateway, caller, version.repository,
                                                                            version.digest)
            if r.artifact_type == mt.DOI_ARTIFACT_TYPE and r.annotations and mt.ECR_DOI in r.annotations]
    found = dois[-1] if dois else version.metadata.get("doi")
    return str(found) if found else None


# --- trust ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Signature:
    """One cosign signature of a version, as checked by the server."""

    source: str
    approved: bool  # verified with this ECR's countersigning key, over this digest
    deployment: str | None
    detail: str


@dataclass(frozen=True)
class Trust:
    signatures: list[Signature]
    key_fingerprint: str
    provenance: list[dict[str, Any]]


_trust_cache: dict[tuple[str, str, tuple[str, ...]], Trust] = {}


async def _blob(gateway: Gateway, repository: str, digest: str) -> bytes | None:
    resp = await gateway.upstream.http.get(f"/v2/{repository}/blobs/{digest}",
                                           headers=gateway.upstream.repo_headers(repository))
    if resp.status_code != 200 or len(resp.content) > _MAX_BLOB:
        return None
    return resp.content


async def _manifest_doc(gateway: Gateway, repository: str, reference: str) -> dict[str, Any] | None:
    manifest = await gateway.manifest(repository, reference)
    if manifest is None:
        return None
    try:
        doc = json.loads(manifest.data)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


async def _signature_layers(gateway: Gateway, repository: str, reference: str) -> list[ss.SignatureLayer]:
    doc = await _manifest_doc(gateway, repository, reference)
    out = []
    for layer in (doc or {}).get("layers") or []:
        if not isinstance(layer, dict) or layer.get("mediaType") != mt.COSIGN_SIMPLESIGNING:
            continue
        payload = await _blob(gateway, repository, str(layer.get("digest")))
        if payload is None:
            continue
        annotations = layer.get("annotations") or {}
        out.append(ss.SignatureLayer(payload, ss.decode_signature(annotations.get(ss.SIGNATURE_ANNOTATION)),
                                     reference, tuple(sorted((str(k), str(v)) for k, v in annotations.items()
                                                             if k != ss.SIGNATURE_ANNOTATION))))
    return out


def _provenance_summary(statement: dict[str, Any]) -> dict[str, Any]:
    predicate = statement.get("predicate") or {}
    definition = predicate.get("buildDefinition") or {}
    run = predicate.get("runDetails") or {}
    source = (definition.get("externalParameters") or {}).get("source") or {}
    materials = [str(d.get("uri") or d.get("name")) for d in definition.get("resolvedDependencies") or []
                 if isinstance(d, dict)]
    return {"builder": str((run.get("builder") or {}).get("id") or ""),
            "build_type": str(definition.get("buildType") or ""),
            "source": str(source.get("url") or "") if isinstance(source, dict) else "",
            "revision": str(source.get("revision") or "") if isinstance(source, dict) else "",
            "materials": materials[:20],
            "finished": str((run.get("metadata") or {}).get("finishedOn") or "")}


async def trust(gateway: Gateway, caller: Caller, version: Version) -> Trust:
    """Signatures (the gateway's countersignature verified here, with its key's
    fingerprint) and provenance statements of one version."""
    referrers = catalog.referrer_descriptors(gateway, caller, version.repository, version.digest)
    key = gateway.countersign_key.key.public_key()
    fingerprint = key_id(key)
    cache_key = (version.repository, version.digest, tuple(r.digest for r in referrers))
    if (cached := _trust_cache.get(cache_key)) is not None:
        return cached
    sources = [r.digest for r in referrers if r.artifact_type == mt.COSIGN_ARTIFACT_TYPE]
    if not sources and not any(r.artifact_type == mt.DSSE_ENVELOPE for r in referrers):
        return Trust([], fingerprint, [])
    policy = AllOf([SignedBy(key, "this ECR's countersigning key"), IsSimpleSigning(), NamesDigest(version.digest)])
    signatures: list[Signature] = []
    seen: set[tuple[bytes, bytes]] = set()
    for source in sources:
        for layer in await _signature_layers(gateway, version.repository, source):
            if (layer.payload, layer.signature) in seen:
                continue
            seen.add((layer.payload, layer.signature))
            claims = ss.parse_claims(layer.payload) or {}
            deployment = ss.optional_claims(claims).get(APPROVED_FOR)
            try:
                policy.verify(layer)
                signatures.append(Signature(source, True, str(deployment) if deployment else None,
                                            f"verified with this ECR's key {fingerprint}"))
            except PolicyError:
                signatures.append(Signature(source, False, None, "signed with a key this ECR does not hold (or not "
                                            "over this digest): check it with the signer's public key, "
                                            "`ecr verify --key`"))
    provenance = []
    for referrer in referrers:
        if referrer.artifact_type != mt.DSSE_ENVELOPE:
            continue
        doc = await _manifest_doc(gateway, version.repository, referrer.digest)
        for layer in (doc or {}).get("layers") or []:
            data = await _blob(gateway, version.repository, str(layer.get("digest"))) if isinstance(layer, dict) \
                else None
            try:
                statement = json.loads(parse_envelope(data).payload) if data else None
            except Exception:  # a corrupt envelope is no provenance, never a broken page
                statement = None
            if isinstance(statement, dict):
                provenance.append(_provenance_summary(statement))
    signatures.sort(key=lambda sig: not sig.approved)  # this ECR's approvals first
    found = Trust(signatures, fingerprint, provenance)
    if len(_trust_cache) > 5000:
        _trust_cache.clear()
    _trust_cache[cache_key] = found
    return found


async def icon(gateway: Gateway, version: Version) -> tuple[bytes, str] | None:
    """The version's icon bytes and media type, when its bytes are the image they claim to be."""
    found = (version.model or {}).get("icon")
    if not isinstance(found, dict):
        return None
    data = await _blob(gateway, version.repository, str(found.get("digest")))
    if data is None or sniff_image(data) != found.get("media_type"):
        return None
    return data, str(found["media_type"])


# --- performance ----------------------------------------------------------------------
async def profiles(gateway: Gateway, caller: Caller, bundle_versions: Sequence[Version],
                   limit: int = 40) -> list[dict[str, Any]]:
    """Profile summaries attached to the given versions, one row each (newest versions first)."""
    rows: list[dict[str, Any]] = []
    for version in bundle_versions:
        for referrer in catalog.referrer_descriptors(gateway, caller, version.repository, version.digest):
            if referrer.artifact_type != mt.PROFILE_ARTIFACT_TYPE or len(rows) >= limit:
                continue
            doc = await _manifest_doc(gateway, version.repository, referrer.digest)
            layers = [x for x in (doc or {}).get("layers") or []
                      if isinstance(x, dict) and x.get("mediaType") == mt.PROFILE_SUMMARY_LAYER]
            data = await _blob(gateway, version.repository, str(layers[0].get("digest"))) if layers else None
            try:
                summary = json.loads(data) if data else None
            except ValueError:
                summary = None
            if not isinstance(summary, dict):
                continue
            metrics = summary.get("metrics") or {}
            latency = metrics.get("latency_seconds") or {}
            hardware = summary.get("hardware") or {}
            annotations = referrer.annotations or {}
            rows.append({
                "order": (bundle_versions.index(version), str(summary.get("node") or "")),
                "version": version.tag,
                "node": str(summary.get("node") or annotations.get(NODE) or "?"),
                "stage": str(summary.get("stage") or annotations.get(STAGE) or ""),
                "hardware": str(hardware.get("model") or hardware.get("arch") or "?"),
                "accelerator": str(hardware.get("accelerator") or ""),
                "p50": _number(latency.get("p50")), "p95": _number(latency.get("p95")),
                "throughput": _number(metrics.get("throughput_per_second")),
                "cpu": _number(metrics.get("cpu_cores")), "rss": _number(metrics.get("peak_rss_bytes")),
                "gpu": _number(metrics.get("gpu_utilization")),
            })
    return sorted(rows, key=lambda r: r["order"])


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


# --- comparing two versions -----------------------------------------------------------
def compare(a: Version, b: Version) -> dict[str, Any]:
    """What changed from ``a`` to ``b``: metadata fields, model files, images."""
    keys = sorted(set(a.metadata) | set(b.metadata))
    metadata = [(k, a.metadata.get(k), b.metadata.get(k)) for k in keys
                if a.metadata.get(k) != b.metadata.get(k) and k != "version"]
    files_a = {f["path"]: f for f in (a.model or {}).get("files") or []}
    files_b = {f["path"]: f for f in (b.model or {}).get("files") or []}
    files = []
    for path in sorted(set(files_a) | set(files_b)):
        fa, fb = files_a.get(path), files_b.get(path)
        state = ("added" if fa is None else "removed" if fb is None
                 else "same" if fa["digest"] == fb["digest"] else "changed")
        files.append({"path": path, "state": state, "a": fa, "b": fb})
    images_a = {p["platform"]: p for p in a.platforms}
    images_b = {p["platform"]: p for p in b.platforms}
    images = []
    for platform in sorted(set(images_a) | set(images_b)):
        ia, ib = images_a.get(platform), images_b.get(platform)
        state = ("added" if ia is None else "removed" if ib is None
                 else "same" if ia["digest"] == ib["digest"] else "changed")
        images.append({"platform": platform, "state": state, "a": ia, "b": ib})
    return {"metadata": metadata, "files": files, "images": images}


