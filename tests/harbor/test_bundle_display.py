"""What Harbor would show for a bundle `ecr push` really wrote (Harbor's rules: harbor_rules.py).

The bundle is pushed by the ``ecr`` CLI to a real CNCF Distribution (the registry
Harbor bundles) and read back with plain HTTP; Harbor's rules are then applied to
those bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BASE_METADATA, write_bundle
from tests.harbor import harbor_rules as hr
from tests.harbor.support import Http, ecr, png, write_icon_bundle
from tests.support import Registry

BEFORE, FROM, CURRENT = (2, 12), (2, 13), (2, 15)
ICON = png(4, 4)


@dataclass
class Pushed:
    repo: str
    digest: str
    http: Http
    index: dict[str, Any]

    def child(self, entry: dict[str, Any]) -> tuple[hr.HarborArtifact, dict[str, Any]]:
        media_type, _, body = self.http.manifest(self.repo, entry["digest"])
        return hr.abstract(body, media_type), body

    def model_entry(self) -> dict[str, Any]:
        [entry] = [e for e in self.index["manifests"] if e.get("platform", {}).get("os") == "unknown"]
        return dict(entry)


@pytest.fixture(scope="module")
def pushed(registry: Registry, tiny_layout: Path, tmp_path_factory: pytest.TempPathFactory) -> Pushed:
    root = write_icon_bundle(tmp_path_factory.mktemp("harbor") / "b", tiny_layout, dict(BASE_METADATA), ICON)
    pinned = ecr("push", "--quiet", str(root), f"{registry.host}/harbor/display:0.1.0").stdout.strip()
    http = Http(registry.url)
    media_type, _, index = http.manifest("harbor/display", "0.1.0")
    assert media_type == hr.OCI_INDEX
    return Pushed("harbor/display", pinned.rsplit("@", 1)[1], http, index)


def test_bundle_index_is_image_before_2_13_and_unknown_from_it(pushed: Pushed) -> None:
    art = hr.abstract(pushed.index, hr.OCI_INDEX)
    assert hr.artifact_type_shown(art, BEFORE) == hr.IMAGE
    assert hr.has_pull_command(hr.IMAGE)
    for version in (FROM, CURRENT):
        assert hr.artifact_type_shown(art, version) == hr.UNKNOWN
    assert not hr.has_pull_command(hr.UNKNOWN)
    # The spec's choice (§11.1): the bundle keeps its artifactType, and never sets the
    # CNAB-style annotation, which would turn it UNKNOWN before 2.13 as well.
    assert "org.opencontainers.artifactType" not in (pushed.index.get("annotations") or {})
    # Harbor shows the index annotations: the bundle metadata is there to read.
    assert art.annotations["org.opencontainers.image.title"] == BASE_METADATA["name"]
    assert art.annotations["org.opencontainers.image.description"] == BASE_METADATA["description"]


def test_platform_images_are_images_with_a_pull_command_in_every_version(pushed: Pushed) -> None:
    images = [e for e in pushed.index["manifests"] if e.get("platform", {}).get("os") == "linux"]
    assert len(images) == 2
    for entry in images:
        art, _ = pushed.child(entry)
        for version in (BEFORE, FROM, CURRENT):
            shown = hr.artifact_type_shown(art, version)
            assert shown == hr.IMAGE and hr.has_pull_command(shown)


def test_model_manifest_is_ecrmodel_with_the_bundle_metadata_as_extra_attrs(pushed: Pushed) -> None:
    entry = pushed.model_entry()
    art, body = pushed.child(entry)
    config = pushed.http.blob(pushed.repo, body["config"]["digest"])
    for version in (BEFORE, FROM, CURRENT):
        assert hr.artifact_type_shown(art, version) == "ECRMODEL"
        attrs = hr.default_processor_extra_attrs(art, version, config, body["config"].get("annotations") or {})
        assert attrs is not None
        assert attrs["name"] == BASE_METADATA["name"] and attrs["version"] == BASE_METADATA["version"]
        assert attrs["platforms"] == ["linux/amd64", "linux/arm64"]
    assert not hr.has_pull_command("ECRMODEL")
    # Harbor main re-files BuildKit attestation entries as accessories; the model entry
    # is not one, so it stays a child of the bundle.
    assert not hr.is_attestation_child(entry)
    assert all(not hr.is_attestation_child(e) for e in pushed.index["manifests"])


def test_icon_is_the_model_manifests_icon_and_harbor_accepts_it(pushed: Pushed) -> None:
    art, body = pushed.child(pushed.model_entry())
    layer = hr.icon_layer(art, body)
    assert layer is not None
    assert layer["digest"] == "sha256:" + hashlib.sha256(ICON).hexdigest()
    assert layer["mediaType"] == "image/png"
    assert layer["annotations"]["org.waggle.ecr.layer.role"] == "icon"
    blob = pushed.http.blob(pushed.repo, layer["digest"])
    assert len(blob) <= hr.ICON_READ_LIMIT and hr.icon_accepted(blob)
    # An index cannot carry an icon (Harbor parses icons of image manifests only).
    assert hr.icon_layer(hr.abstract(pushed.index, hr.OCI_INDEX), pushed.index) is None


def test_pull_skips_the_icon_and_writes_the_model_files(pushed: Pushed, registry: Registry, tmp_path: Path) -> None:
    ecr("pull", f"{registry.host}/{pushed.repo}:0.1.0", "--model-only", "-o", str(tmp_path / "out"))
    written = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert "art/icon.png" not in written
    assert {"model/weights.bin", "model/labels.txt", "ecr-bundle.json"} <= set(written)


def test_code_only_bundle_with_an_icon_gets_a_model_manifest_holding_it(
        registry: Registry, tiny_layout: Path, tmp_path: Path) -> None:
    metadata = {k: v for k, v in BASE_METADATA.items() if k not in ("model", "source_archive")}
    root = write_icon_bundle(tmp_path / "b", tiny_layout, metadata, b"GIF89a" + b"\0" * 64, "logo.gif")
    ecr("push", "--quiet", str(root), f"{registry.host}/harbor/code-only:0.1.0")
    http = Http(registry.url)
    _, _, index = http.manifest("harbor/code-only", "0.1.0")
    [entry] = [e for e in index["manifests"] if e.get("platform", {}).get("os") == "unknown"]
    _, _, body = http.manifest("harbor/code-only", entry["digest"])
    assert [layer["annotations"]["org.waggle.ecr.layer.role"] for layer in body["layers"]] == ["icon"]
    assert body["layers"][0]["mediaType"] == "image/gif"
    assert hr.icon_layer(hr.abstract(body, hr.OCI_MANIFEST), body) == body["layers"][0]


REFUSED_ICONS = {
    "svg": ("icon.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "is not a PNG, JPEG or GIF image"),
    "too-big": ("big.png", png() + b"\0" * (1 << 20), "an icon may be at most 1048576 bytes"),
    "empty": ("empty.png", b"", "is not a PNG, JPEG or GIF image"),
}


@pytest.mark.parametrize("case", sorted(REFUSED_ICONS))
def test_an_icon_harbor_would_refuse_is_an_error_naming_the_field(tiny_layout: Path, tmp_path: Path,
                                                                  case: str) -> None:
    name, content, message = REFUSED_ICONS[case]
    root = write_icon_bundle(tmp_path / "b", tiny_layout, dict(BASE_METADATA), content, name)
    proc = ecr("validate", str(root), check=False)
    assert proc.returncode == 3, proc.stderr
    assert "icon:" in proc.stderr and message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_icon_file_is_an_error(tiny_layout: Path, tmp_path: Path) -> None:
    root = write_bundle(tmp_path / "b", tiny_layout, {**BASE_METADATA, "icon": "art/none.png"})
    proc = ecr("validate", str(root), check=False)
    assert proc.returncode == 3 and "icon" in proc.stderr and "no such file" in proc.stderr


def test_icon_path_may_not_leave_the_bundle(tiny_layout: Path, tmp_path: Path) -> None:
    (tmp_path / "outside.png").write_bytes(ICON)
    root = write_bundle(tmp_path / "b", tiny_layout, {**BASE_METADATA, "icon": "../outside.png"})
    proc = ecr("validate", str(root), check=False)
    assert proc.returncode == 3 and "icon" in proc.stderr
