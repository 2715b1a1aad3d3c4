"""The catalog as a viewer sees it: the service functions behind ``/api/v1`` and the web pages.

Every function takes the caller and answers only what that caller may pull: a
repository outside the caller's view is absent (None, or left out of a listing),
exactly like one that does not exist. Nodes see only their approved content closure:
versions, tags, referrers and stage events of approved digests. One bad record (say
an annotation that is not valid Unicode, stored before the gate refused such text)
is skipped and logged, never allowed to break a listing for everyone.

Bundle versions come from the catalog index in the state store
(:mod:`ecr_oci.gateway.domain.bundle_index`, kept at manifest PUT/DELETE and rebuilt by
``ecr admin reindex``), not from walking the registry on every request.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ecr_oci import mediatypes as mt
from ecr_oci.gateway.core import Gateway
from ecr_oci.gateway.domain import bundle_index
from ecr_oci.gateway.domain.policy import PULL, Caller, RepoFacts, facts
from ecr_oci.gateway.domain.stages import current_stages
from ecr_oci.gateway.stores.state import BundleVersion, Referrer, StageEvent
from ecr_oci.jsontext import is_unicode_clean

log = logging.getLogger("ecr.gateway")


def may_pull(gateway: Gateway, caller: Caller, repository: str) -> bool:
    """Whether ``caller`` may see ``repository`` at all."""
    return PULL in gateway.allowed(caller, repository)


def may_see(gateway: Gateway, caller: Caller, repository: str, digest: str) -> bool:
    """Whether ``caller`` may see one manifest of a repository it may pull (nodes: approved only)."""
    return gateway.node_content.permits(caller, repository, digest)


def referrer_descriptors(gateway: Gateway, caller: Caller, repository: str, subject: str) -> list[Referrer]:
    """The referrers of ``subject`` the caller may see (nodes: approved ones, of approved subjects)."""
    if not may_see(gateway, caller, repository, subject):
        return []
    out = []
    for referrer in gateway.store.referrers(repository, subject):
        if not may_see(gateway, caller, repository, referrer.digest):
            continue
        if not is_unicode_clean(referrer.descriptor()):
            log.warning("skipping referrer %s of %s in %s: not valid Unicode", referrer.digest, subject, repository)
            continue
        out.append(referrer)
    return out


async def visible_tags(gateway: Gateway, caller: Caller, repository: str, tags: list[str]) -> list[str]:
    """``tags`` less those naming content the caller may not see (only nodes lose any)."""
    if caller.kind != "node":
        return tags
    out = []
    for tag in tags:
        manifest = await gateway.manifest(repository, tag)
        if manifest is not None and may_see(gateway, caller, repository, manifest.digest):
            out.append(tag)
    return out


def _version(row: BundleVersion, events: list[StageEvent]) -> dict[str, Any]:
    document = json.loads(row.document)
    return {
        "tag": row.tag,
        "digest": row.digest,
        "doi": None,  # filled in by _with_doi
        "metadata": document["metadata"],
        "platforms": [p["platform"] for p in document["platforms"]],
        "stages": current_stages([e for e in events if e.digest == row.digest]),
    }


def _with_doi(gateway: Gateway, repository: str, version: dict[str, Any]) -> dict[str, Any]:
    dois = [
        r.annotations[mt.ECR_DOI] for r in gateway.store.referrers(repository, version["digest"])
        if r.artifact_type == mt.DOI_ARTIFACT_TYPE and r.annotations and mt.ECR_DOI in r.annotations
    ]
    version["doi"] = dois[-1] if dois else None
    return version


async def bundle_versions(gateway: Gateway, caller: Caller, repository: str,
                          keep: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
    """The bundle versions (tags naming a bundle index) of a repository the caller may see
    (and ``keep`` accepts, judged before the DOI is looked up).

    Read from the catalog index (:mod:`ecr_oci.gateway.domain.bundle_index`), in tag order.
    """
    if not may_pull(gateway, caller, repository):
        return []
    rows = sorted(gateway.store.bundle_versions(repository), key=lambda v: v.tag)
    events = gateway.store.stage_events(repository) if rows else []
    out = []
    for row in rows:
        if not may_see(gateway, caller, repository, row.digest):
            continue
        try:
            version = _version(row, events)
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            log.warning("skipping %s:%s in listings: %s", repository, row.tag, exc)
            continue
        if keep is None or keep(version):
            out.append(_with_doi(gateway, repository, version))
    return out


def visible_repositories(gateway: Gateway, caller: Caller, repositories: Iterable[str]) -> set[str]:
    """The subset of ``repositories`` the caller may pull, decided by the gateway's policy.

    Facts for users and anonymous callers come from one read of the store; nodes (whose
    facts depend on approvals) are checked one repository at a time.
    """
    wanted = set(repositories)
    if caller.kind == "node":
        return {r for r in wanted if may_pull(gateway, caller, r)}
    records = {r.name: r for r in gateway.store.list_repositories() if r.name in wanted}
    out = set()
    for name in wanted:
        record = records.get(name)
        repo = (RepoFacts(name=name, visibility=record.visibility, grants=record.grants) if record
                else facts(gateway.store, name, caller))
        if PULL in gateway.rules.allowed(caller, repo):
            out.add(name)
    return out


def matches(repository: str, version: dict[str, Any], query: Mapping[str, str]) -> bool:
    """Whether a version satisfies the search parameters (``q``, ``keyword``, ``platform``, ...).

    ``q`` is matched as on the search page: each of its words somewhere in the
    repository name, name, description, authors, science or keywords.
    """
    meta = version["metadata"]
    keywords = [str(k).lower() for k in meta.get("keywords") or []]
    terms = bundle_index.query_terms(query.get("q") or "")
    if terms and not bundle_index.text_matches(terms, bundle_index.search_text(repository, meta)):
        return False
    if (kw := query.get("keyword")) and kw.lower() not in keywords:
        return False
    if (platform := query.get("platform")) and platform not in version["platforms"]:
        return False
    if (runtime := query.get("runtime")) and runtime not in (meta.get("runtime") or {}):
        return False
    if (hardware := query.get("hardware")) and hardware not in (meta.get("hardware") or {}):
        return False
    return not ((stage := query.get("stage")) and stage not in version["stages"].values())


async def search(gateway: Gateway, caller: Caller, query: Mapping[str, str]) -> list[dict[str, Any]]:
    """Every repository the caller may see with its versions matching ``query``."""
    results = []
    # Narrow by the index first: the same text rule as ``matches``; platforms are facets.
    terms = bundle_index.query_terms(query.get("q") or "")
    facets = [f"platform:{p}"] if (p := query.get("platform")) else []
    indexed = {row[0] for row in gateway.store.newest_bundle_versions(terms, facets, None)}
    visible = visible_repositories(gateway, caller, indexed)
    for repository in sorted(visible):
        if (name := query.get("name")) and name not in repository:
            continue
        versions = await bundle_versions(gateway, caller, repository,
                                         lambda v: matches(repository, v, query))  # noqa: B023 (used at once)
        if versions:
            results.append({"repository": repository, "versions": versions})
    return results


async def bundle(gateway: Gateway, caller: Caller, repository: str) -> dict[str, Any] | None:
    """A repository's versions with their referrers; None when absent or not visible to the caller."""
    versions = await bundle_versions(gateway, caller, repository)
    if not versions:
        return None
    for version in versions:
        version["referrers"] = [
            r.descriptor() for r in referrer_descriptors(gateway, caller, repository, version["digest"])
        ]
    return {"repository": repository, "versions": versions}


def stage_events(gateway: Gateway, caller: Caller, repository: str, digest: str | None) -> list[StageEvent] | None:
    """The stage history the caller may see; None when the repository is not visible."""
    if not may_pull(gateway, caller, repository):
        return None
    events = gateway.store.stage_events(repository, digest)
    return [e for e in events if may_see(gateway, caller, repository, e.digest)]
