"""Profiles as OCI 1.1 referrers of a bundle index.

Artifact: empty config, ``artifactType`` application/vnd.waggle.ecr.profile.v1+json,
the summary JSON layer and, optionally, the gzip raw-series layer; ``subject`` is the
bundle index. The same node and window produce the same bytes, so attaching twice
yields the same digest and the referrers list never holds a duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass

from ecr_oci import mediatypes as mt
from ecr_oci.bundle.remote import RemoteBundle
from ecr_oci.profile.result import ProfileResult
from ecr_oci.profile.summary import ProfileSummary
from ecr_oci.registry.client import RegistryClient
from ecr_oci.registry.referrers import Layer, attach, display_annotations

NODE = mt.ECR_PREFIX + "profile.node"
STAGE = mt.ECR_PREFIX + "profile.stage"
WINDOW_START = mt.ECR_PREFIX + "profile.window.start"
WINDOW_END = mt.ECR_PREFIX + "profile.window.end"


@dataclass(frozen=True)
class AttachedProfile:
    """A profile found among a bundle's referrers."""

    digest: str
    summary: ProfileSummary


def _annotations(summary: ProfileSummary) -> dict[str, str]:
    """Machine-readable keys, plus what a registry UI (Harbor) shows of the referrer.

    ``created`` is the window's end, not the attach time, so attaching the same
    profile twice still gives the same digest.
    """
    document = summary.to_dict()
    start, end = document["window"]["start"], document["window"]["end"]
    shown = display_annotations(
        f"Performance profile on {summary.node}",
        f"Performance of bundle {summary.bundle} measured on {summary.node} "
        f"(stage {summary.stage}) from {start} to {end}.",
        end,
    )
    return {**shown, NODE: summary.node, STAGE: summary.stage, WINDOW_START: start, WINDOW_END: end}


def attach_profile(
    client: RegistryClient, bundle: RemoteBundle, result: ProfileResult, *, with_series: bool = True
) -> str:
    """Attach ``result`` to ``bundle``; returns the profile artifact's digest.

    Raises:
        ValidationError: the summary does not satisfy the profile schema.
        RegistryError: the registry (or the ECR gateway's manifest gate) refused it.
    """
    if result.summary.bundle != bundle.digest:
        from ecr_oci.errors import ValidationError

        raise ValidationError(f"profile is for {result.summary.bundle}, not {bundle.digest}", field="bundle")
    layers = [Layer(mt.PROFILE_SUMMARY_LAYER, result.summary_layer())]
    if with_series and result.series:
        layers.append(Layer(mt.PROFILE_SERIES_LAYER, result.series_layer()))
    subject = {"mediaType": bundle.raw.media_type, "digest": bundle.digest, "size": len(bundle.raw.data)}
    return attach(
        client,
        bundle.reference.repository,
        subject,
        mt.PROFILE_ARTIFACT_TYPE,
        layers,
        annotations=_annotations(result.summary),
    )


def list_profiles(client: RegistryClient, bundle: RemoteBundle, *, node: str | None = None) -> list[AttachedProfile]:
    """Profiles attached to ``bundle`` (optionally of one node), oldest window first."""
    repo = bundle.reference.repository
    found = []
    for desc in client.referrers(repo, bundle.digest, mt.PROFILE_ARTIFACT_TYPE):
        if node and (desc.get("annotations") or {}).get(NODE) not in (None, node):
            continue
        manifest = client.get_manifest(repo, desc["digest"]).json()
        layer = next((x for x in manifest.get("layers", []) if x.get("mediaType") == mt.PROFILE_SUMMARY_LAYER), None)
        if layer is None:
            continue
        summary = ProfileSummary.from_json(client.get_blob(repo, layer["digest"]))
        if node and summary.node != node:
            continue
        found.append(AttachedProfile(digest=desc["digest"], summary=summary))
    return sorted(found, key=lambda p: (p.summary.window.start, p.summary.node))
