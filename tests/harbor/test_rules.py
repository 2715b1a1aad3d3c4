"""The re-statement of Harbor's rules checked against outputs Harbor itself was seen to give.

Each case is an input/output pair from Harbor's own tests, docs or issue threads, so a
mistake in ``harbor_rules`` (not only in the bundle format) fails here.
"""

from __future__ import annotations

import pytest

from tests.harbor import harbor_rules as hr

V2_12, V2_13, V2_15 = (2, 12), (2, 13), (2, 15)


@pytest.mark.parametrize(("media_type", "shown"), [
    # goharbor/harbor#20756 (API output): a config type with a dotted middle part
    ("application/vnd.vmware.paih.model.config.v1+json", "PAIH.MODEL"),
    # the example in src/controller/artifact/processor/default.go
    ("application/vnd.caicloud.model.config.v1alpha1+json", "MODEL"),
    # the ECR model config: one word between vendor and "config"
    ("application/vnd.waggle.ecrmodel.config.v1+json", "ECRMODEL"),
    # no ".config." part: the regex does not match
    ("application/vnd.waggle.ecr.bundle.v1+json", hr.UNKNOWN),
    ("application/vnd.oci.empty.v1+json", hr.UNKNOWN),
])
def test_default_processor_regex(media_type: str, shown: str) -> None:
    assert hr.default_type(media_type) == shown


def plain_index(artifact_type: str | None = None, annotations: dict[str, str] | None = None) -> hr.HarborArtifact:
    body: dict[str, object] = {"schemaVersion": 2, "mediaType": hr.OCI_INDEX, "manifests": []}
    if artifact_type:
        body["artifactType"] = artifact_type
    if annotations:
        body["annotations"] = annotations
    return hr.abstract(body, hr.OCI_INDEX)


def test_a_multi_platform_image_index_is_an_image_in_every_version() -> None:
    for version in (V2_12, V2_13, V2_15):
        assert hr.artifact_type_shown(plain_index(), version) == hr.IMAGE


def test_an_index_artifact_type_without_a_processor_is_unknown_from_2_13() -> None:
    art = plain_index("application/vnd.example.thing.v1+json")
    assert hr.artifact_type_shown(art, V2_12) == hr.IMAGE
    assert hr.artifact_type_shown(art, V2_13) == hr.UNKNOWN
    assert not hr.has_pull_command(hr.UNKNOWN)


def test_cnab_annotation_names_the_index_type() -> None:
    # abstractIndexMetadata: CNAB puts its type in the org.opencontainers.artifactType annotation
    art = plain_index(annotations={"org.opencontainers.artifactType": hr.CNAB_INDEX_TYPE})
    assert hr.artifact_type_shown(art, V2_12) == hr.CNAB


def test_modelpack_manifest_is_cnai_from_2_13() -> None:
    body = {"schemaVersion": 2, "mediaType": hr.OCI_MANIFEST, "artifactType": hr.MODELPACK_MANIFEST,
            "config": {"mediaType": "application/vnd.cncf.model.config.v1+json", "digest": "sha256:" + "0" * 64,
                       "size": 2}, "layers": []}
    art = hr.abstract(body, hr.OCI_MANIFEST)
    assert hr.artifact_type_shown(art, V2_13) == hr.CNAI
    # before the artifactType selection the config type goes through the default regex
    assert hr.artifact_type_shown(art, V2_12) == "MODEL"


def test_referrer_classification_follows_artifact_type_then_config() -> None:
    def referrer(artifact_type: str | None, config: str) -> dict[str, object]:
        body: dict[str, object] = {"config": {"mediaType": config}, "layers": [],
                                   "subject": {"digest": "sha256:" + "1" * 64}}
        if artifact_type:
            body["artifactType"] = artifact_type
        return body

    empty = "application/vnd.oci.empty.v1+json"
    assert hr.referrer_accessory_type(referrer("application/vnd.dev.cosign.artifact.sig.v1+json", empty)) \
        == hr.COSIGN_SIGNATURE
    assert hr.referrer_accessory_type(referrer(None, "application/vnd.cncf.notary.signature")) \
        == hr.NOTATION_SIGNATURE
    # goharbor/harbor#21345: any other artifactType is shown as subject.accessory
    assert hr.referrer_accessory_type(referrer("trivy-sbom/cyclonedx", empty)) == hr.SUBJECT_ACCESSORY
    assert hr.referrer_accessory_type({"config": {"mediaType": empty}, "layers": []}) is None


def test_only_sig_tags_are_cosign_accessories() -> None:
    hexdigest = "a" * 64
    sig_layer = {"layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json"}]}
    assert hr.tag_accessory_type(f"sha256-{hexdigest}.sig", sig_layer) == hr.COSIGN_SIGNATURE
    assert hr.tag_accessory_type(f"sha256-{hexdigest}.att", sig_layer) is None
    assert hr.tag_accessory_type(f"sha256-{hexdigest}", sig_layer) is None
    assert hr.tag_accessory_type(f"sha256-{hexdigest}.sig", {"layers": []}) is None


def test_signature_accessories_count_for_content_trust_by_version() -> None:
    assert hr.counts_as_signature(hr.COSIGN_SIGNATURE, (2, 5), from_tag=True)
    assert not hr.counts_as_signature(hr.COSIGN_SIGNATURE, (2, 10), from_tag=False)
    assert hr.counts_as_signature(hr.COSIGN_SIGNATURE, (2, 11), from_tag=False)
    assert not hr.counts_as_signature(hr.SUBJECT_ACCESSORY, V2_15, from_tag=False)


def test_icon_sniffing() -> None:
    assert hr.icon_accepted(b"\x89PNG\r\n\x1a\n" + b"\0" * 10)
    assert hr.icon_accepted(b"GIF89a...")
    assert hr.icon_accepted(b"\xff\xd8\xff\xe0")
    assert not hr.icon_accepted(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    assert not hr.icon_accepted(b"BM\0\0")  # BMP: Go sniffs it, Harbor refuses it
