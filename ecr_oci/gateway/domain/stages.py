"""Bundle stages: submitted → tested-vw → tested-node → approved (per deployment) → deprecated.

Each transition is recorded (who, when, evidence) in the state store and the audit
log. Which evidence a stage needs is policy (:class:`StagePolicy`, loaded from
``<data-dir>/stage-policy.json`` when present). Approving a bundle for a deployment
records the closure of its content (index, image manifests, blobs, referrers), which
is exactly what nodes of that deployment may then pull.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ecr_oci.gateway.domain.policy import Caller
from ecr_oci.gateway.stores.state import StageEvent, StateStore
from ecr_oci.registry.client import MANIFEST_ACCEPT

if TYPE_CHECKING:  # httpx and the token code: not loaded by `ecr inspect` (current_stages)
    from ecr_oci.gateway.upstream import Upstream

STAGES = ("submitted", "tested-vw", "tested-node", "approved", "deprecated")
PER_DEPLOYMENT = frozenset({"approved"})
# Two axes: a bundle's lifecycle (global events: submitted, tested-vw, tested-node,
# deprecated) and its approvals (per deployment). Only deprecation ends every approval;
# a stage set for one deployment ends that deployment's. Testing stages record
# maturity: a profile from a node running an approved bundle moves it to tested-node
# without taking the approval away.
WITHDRAWS_ALL = frozenset({"deprecated"})


class StageError(Exception):
    """A transition policy refuses (message says why); ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        self.status = status
        super().__init__(message)


@dataclass(frozen=True)
class StagePolicy:
    """Which evidence each stage needs, and who may set it.

    Attributes:
        evidence: stage -> evidence keys that must be given (e.g. ``{"tested-vw": ["profile"]}``);
            an evidence value that is a digest must name a referrer of the bundle.
        owner_stages: stages a namespace owner may set on their own bundles (admins may set all).
        profile_triggers: profile stage (``vw``/``node``) -> bundle stage a newly attached
            profile moves the bundle to (e.g. ``{"vw": "tested-vw"}``); empty: none.
    """

    evidence: dict[str, list[str]] = field(default_factory=dict)
    owner_stages: frozenset[str] = frozenset({"submitted", "deprecated"})
    profile_triggers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> StagePolicy:
        if not path.exists():
            return cls()
        data = json.loads(path.read_text())
        triggers = {k: v for k, v in dict(data.get("profile_triggers") or {}).items() if v in STAGES}
        return cls(evidence=dict(data.get("evidence") or {}),
                   owner_stages=frozenset(data.get("owner_stages") or cls().owner_stages),
                   profile_triggers=triggers)

    def check(self, caller: Caller, repository: str, stage: str, deployment: str, evidence: dict[str, Any],
              referrers: set[str]) -> None:
        """Raises:
            StageError: unknown stage, missing deployment, not allowed, evidence missing.
        """
        if stage not in STAGES:
            raise StageError(f"stage: {stage!r} is not one of {', '.join(STAGES)}")
        if stage in PER_DEPLOYMENT and not deployment:
            raise StageError(f"deployment: stage {stage} is per deployment (pass --deployment)")
        owner = caller.kind == "user" and repository.split("/", 1)[0] == caller.name
        if not (caller.kind == "user" and caller.admin) and not (owner and stage in self.owner_stages):
            raise StageError(f"not allowed to set stage {stage} on {repository}", status=403)
        for key in self.evidence.get(stage, []):
            if key not in evidence:
                raise StageError(f"evidence.{key}: required for stage {stage}")
        for key, value in evidence.items():
            if isinstance(value, str) and value.startswith("sha256:") and value not in referrers:
                raise StageError(f"evidence.{key}: {value} is not a referrer of this bundle")


async def content_closure(upstream: Upstream, store: StateStore, repository: str, digest: str) -> set[str]:
    """Every digest a node needs to pull bundle ``digest``: manifests, blobs, referrers."""
    out: set[str] = set()
    pending = [digest, *(r.digest for r in store.referrers(repository, digest))]
    while pending:
        current = pending.pop()
        if current in out:
            continue
        out.add(current)
        resp = await upstream.get_manifest(repository, current, MANIFEST_ACCEPT)
        if resp.status_code != 200:
            continue
        doc = json.loads(resp.content)
        pending += [m["digest"] for m in doc.get("manifests") or [] if "digest" in m]
        if config := doc.get("config"):
            out.add(config["digest"])
        out.update(layer["digest"] for layer in doc.get("layers") or [] if "digest" in layer)
    return out


async def set_stage(
    upstream: Upstream,
    store: StateStore,
    policy: StagePolicy,
    caller: Caller,
    repository: str,
    digest: str,
    stage: str,
    deployment: str,
    evidence: dict[str, Any],
) -> StageEvent:
    """Record a transition (and the approved content for ``approved``/``deprecated``).

    Raises:
        StageError: refused by :class:`StagePolicy`.
    """
    referrers = {r.digest for r in store.referrers(repository, digest)}
    policy.check(caller, repository, stage, deployment, evidence, referrers)
    event = StageEvent(repository, digest, stage, deployment, caller.label, time.time(), evidence)
    if stage == "approved":
        closure = await content_closure(upstream, store, repository, digest)
        store.approve_content(repository, deployment, digest, closure)
    elif deployment:
        store.revoke_content(repository, deployment, digest)
    elif stage in WITHDRAWS_ALL:
        for dep in {e.deployment for e in store.stage_events(repository, digest) if e.stage == "approved"}:
            store.revoke_content(repository, dep, digest)
    store.add_stage_event(event)
    return event


PROFILE_STAGE = "org.waggle.ecr.profile.stage"  # annotation `ecr profile attach` writes


def profile_transition(store: StateStore, policy: StagePolicy, repository: str, subject: str,
                       profile_digest: str, annotations: dict[str, str] | None, actor: str) -> StageEvent | None:
    """Move a bundle forward when a profile arrives, as ``profile_triggers`` says.

    Never moves backwards: a bundle already at (or past) the target stays where it is.
    The profile's digest is the transition's evidence.
    """
    target = policy.profile_triggers.get((annotations or {}).get(PROFILE_STAGE, ""))
    if target is None:
        return None
    reached = [STAGES.index(e.stage) for e in store.stage_events(repository, subject)
               if e.stage in STAGES and not e.deployment]  # the lifecycle axis only
    if reached and max(reached) >= STAGES.index(target):
        return None
    event = StageEvent(repository, subject, target, "", f"{actor} (profile)", time.time(),
                       {"profile": profile_digest})
    store.add_stage_event(event)
    return event


def current_stages(events: list[StageEvent]) -> dict[str, str]:
    """deployment ('' for global) -> latest stage, from an ordered event list."""
    out: dict[str, str] = {}
    for event in events:
        out[event.deployment] = event.stage
        if not event.deployment and event.stage in WITHDRAWS_ALL:
            # Deprecation supersedes every per-deployment approval.
            out = {k: (event.stage if v == "approved" else v) for k, v in out.items()}
    return out
