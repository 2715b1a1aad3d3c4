"""Referrers of a bundle as Harbor would file them (accessories), and its cosign content trust.

Written by the real ``ecr`` CLI and library through a real ``ecr serve`` gateway, which
implements the OCI referrers API (answers ``OCI-Subject``) as Harbor does; compared with
a plain CNCF Distribution 2.8, which does not.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ecr_oci.bundle.remote import fetch_bundle
from ecr_oci.digest import sha256_bytes
from ecr_oci.doi.record import DoiRecord, attach_record, metadata_bytes
from ecr_oci.profile.attach import attach_profile
from ecr_oci.profile.result import ProfileResult
from ecr_oci.profile.summary import ProfileSummary
from ecr_oci.registry.auth import Credentials
from ecr_oci.registry.client import RegistryClient
from ecr_oci.registry.reference import parse_reference
from ecr_oci.trust.keys import write_key_pair
from tests.conftest import BASE_METADATA, write_bundle
from tests.gateway.support import GatewayProcess
from tests.harbor import harbor_rules as hr
from tests.harbor.support import Http, ecr, png, write_icon_bundle
from tests.support import Registry

EXAMPLES = Path(__file__).resolve().parents[2] / "annotations-spec" / "v1" / "examples"
USER, PASSWORD = "alice", "alice-harbor-pw"
REPO = "alice/harbor-acc"
DISPLAY_KEYS = ("org.opencontainers.image.title", "org.opencontainers.image.description",
                "org.opencontainers.image.created")


@dataclass
class Attached:
    gw: GatewayProcess
    http: Http
    digest: str
    index: dict[str, Any]
    keypair: tuple[Path, Path]

    @property
    def ref(self) -> str:
        return f"{self.gw.host}/{REPO}:0.1.0"

    def manifests(self) -> list[str]:
        return [self.digest, *(e["digest"] for e in self.index["manifests"])]


def login_args() -> list[str]:
    return ["--username", USER, "--password-stdin"]


@pytest.fixture(scope="module")
def attached(tiny_layout: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attached]:
    work = tmp_path_factory.mktemp("harbor-acc")
    gw = GatewayProcess(work / "data")
    gw.start()
    try:
        gw.admin().add_user(USER, PASSWORD)
        keypair = write_key_pair(work / "cosign", b"pw")
        root = write_icon_bundle(work / "b", tiny_layout, dict(BASE_METADATA), png())
        ref = f"{gw.host}/{REPO}:0.1.0"
        pinned = ecr("push", "--quiet", str(root), ref, *login_args(), stdin=PASSWORD + "\n").stdout.strip()
        ecr("sign", "--native", "--recursive", "--key", str(keypair[0]), ref, *login_args(), stdin=PASSWORD + "\n")
        ecr("provenance", "attach", ref, "--key", str(keypair[0]), *login_args(), stdin=PASSWORD + "\n")
        client = RegistryClient(gw.host, credentials=Credentials(USER, PASSWORD))
        bundle = fetch_bundle(client, parse_reference(ref))
        document = json.loads((EXAMPLES / "profile-vw.json").read_text())
        document["bundle"] = bundle.digest
        attach_profile(client, bundle, ProfileResult(ProfileSummary.from_dict(document), ()))
        attributes = {"titles": [{"title": "tiny detector"}]}
        record = DoiRecord(doi="10.5072/FK2HARBOR", url="https://example.org/tiny", provider="datacite",
                           registered="2026-01-02T03:04:05Z", bundle=bundle.digest,
                           metadata_digest=sha256_bytes(metadata_bytes(attributes)), state="findable", test=True)
        attach_record(client, bundle, record, attributes)
        http = Http(gw.url, (USER, PASSWORD))
        _, _, index = http.manifest(REPO, "0.1.0")
        yield Attached(gw, http, pinned.rsplit("@", 1)[1], index, keypair)
    finally:
        gw.stop()


def referrers_of(attached: Attached, digest: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(descriptor, manifest) of each referrer the gateway lists for ``digest``."""
    out = []
    for desc in attached.http.referrers(REPO, digest):
        _, _, body = attached.http.manifest(REPO, desc["digest"])
        out.append((desc, body))
    return out


def test_every_referrer_has_a_title_description_and_created_time(attached: Attached) -> None:
    found = referrers_of(attached, attached.digest)
    kinds = sorted(body["artifactType"] for _, body in found)
    assert kinds == sorted(["application/vnd.dev.cosign.artifact.sig.v1+json", "application/vnd.dsse.envelope.v1+json",
                            "application/vnd.waggle.ecr.profile.v1+json", "application/vnd.waggle.ecr.doi.v1+json"])
    for desc, body in found:
        annotations = body.get("annotations") or {}
        for key in DISPLAY_KEYS:
            assert annotations.get(key), f"{body['artifactType']} has no {key}"
        dt.datetime.fromisoformat(annotations["org.opencontainers.image.created"].replace("Z", "+00:00"))
        assert (desc.get("annotations") or {}).get("org.opencontainers.image.title") == \
            annotations["org.opencontainers.image.title"]
    titles = {body["artifactType"]: body["annotations"]["org.opencontainers.image.title"] for _, body in found}
    assert titles["application/vnd.waggle.ecr.doi.v1+json"] == "DOI 10.5072/FK2HARBOR"
    assert titles["application/vnd.waggle.ecr.profile.v1+json"].startswith("Performance profile on ")


def test_referrers_are_accessories_signatures_are_cosign_signatures(attached: Attached) -> None:
    for _, body in referrers_of(attached, attached.digest):
        expected = hr.COSIGN_SIGNATURE if body["artifactType"].startswith("application/vnd.dev.cosign") \
            else hr.SUBJECT_ACCESSORY
        assert hr.referrer_accessory_type(body) == expected


def test_no_attestation_tag_where_the_registry_has_the_referrers_api(attached: Attached) -> None:
    tags = attached.http.tags(REPO)
    assert not [t for t in tags if t.endswith(".att")], tags
    # (The gateway itself keeps sha256-<hex> fallback indexes in its registry for
    # clients that read it directly; deploy/harbor.md says to filter them out of a
    # replication to Harbor, where they would be tagged IMAGE artifacts.)


def test_recursive_signing_satisfies_harbor_cosign_content_trust_for_every_manifest(attached: Attached) -> None:
    assert len(attached.manifests()) == 4  # index, two platform images, model manifest
    tags = set(attached.http.tags(REPO))
    for digest in attached.manifests():
        tag = f"sha256-{digest.split(':', 1)[1]}.sig"
        assert tag in tags
        _, _, sig = attached.http.manifest(REPO, tag)
        assert hr.counts_as_signature(hr.tag_accessory_type(tag, sig), (2, 5), from_tag=True)
        cosign_referrers = [body for _, body in referrers_of(attached, digest)
                            if hr.referrer_accessory_type(body) == hr.COSIGN_SIGNATURE]
        assert len(cosign_referrers) == 1
        assert hr.counts_as_signature(hr.COSIGN_SIGNATURE, (2, 11), from_tag=False)
    verified = ecr("verify", attached.ref, "--key", str(attached.keypair[1]), *login_args(),
                   stdin=PASSWORD + "\n")
    assert attached.digest in verified.stdout + verified.stderr


def test_signing_again_adds_no_referrer(attached: Attached) -> None:
    before = {d: len(attached.http.referrers(REPO, d)) for d in attached.manifests()}
    ecr("sign", "--native", "--recursive", "--key", str(attached.keypair[0]), attached.ref, *login_args(),
        stdin=PASSWORD + "\n")
    assert {d: len(attached.http.referrers(REPO, d)) for d in attached.manifests()} == before


def test_without_the_referrers_api_the_att_tag_is_written_and_harbor_would_list_it_as_an_image(
        registry: Registry, tiny_layout: Path, tmp_path: Path) -> None:
    keypair = write_key_pair(tmp_path / "cosign", b"pw")
    root = write_bundle(tmp_path / "b", tiny_layout)
    ref = f"{registry.host}/harbor/att-fallback:0.1.0"
    digest = ecr("push", "--quiet", str(root), ref).stdout.strip().rsplit("@", 1)[1]
    ecr("provenance", "attach", ref, "--key", str(keypair[0]))
    http = Http(registry.url)
    att = f"sha256-{digest.split(':', 1)[1]}.att"
    assert att in http.tags("harbor/att-fallback")
    media_type, _, body = http.manifest("harbor/att-fallback", att)
    # Harbor: not an accessory (only .sig tags are), so a tagged IMAGE artifact of its own
    assert hr.tag_accessory_type(att, body) is None
    assert hr.artifact_type_shown(hr.abstract(body, media_type), (2, 15)) == hr.IMAGE


def test_recursive_signing_without_the_referrers_api_uses_the_fallback_index_per_manifest(
        registry: Registry, tiny_layout: Path, tmp_path: Path) -> None:
    keypair = write_key_pair(tmp_path / "cosign", b"pw")
    root = write_bundle(tmp_path / "b", tiny_layout)
    ref = f"{registry.host}/harbor/sign-fallback:0.1.0"
    digest = ecr("push", "--quiet", str(root), ref).stdout.strip().rsplit("@", 1)[1]
    ecr("sign", "--native", "--recursive", "--key", str(keypair[0]), ref)
    http = Http(registry.url)
    _, _, index = http.manifest("harbor/sign-fallback", "0.1.0")
    tags = set(http.tags("harbor/sign-fallback"))
    for manifest in [digest, *(e["digest"] for e in index["manifests"])]:
        hexdigest = manifest.split(":", 1)[1]
        assert f"sha256-{hexdigest}.sig" in tags
        _, _, fallback = http.manifest("harbor/sign-fallback", f"sha256-{hexdigest}")
        [entry] = fallback["manifests"]
        assert entry["artifactType"] == "application/vnd.dev.cosign.artifact.sig.v1+json"
        assert entry["annotations"]["org.opencontainers.image.title"] == "cosign signature"
    ecr("verify", ref, "--key", str(keypair[1]))
