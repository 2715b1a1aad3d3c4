"""The published spec (annotations-spec/v1) against the code: examples, tables, layout claims."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from ecr_oci import mediatypes as mt
from ecr_oci import spec
from ecr_oci.bundle.annotations import annotations_for, metadata_from, validate_annotations
from ecr_oci.bundle.config import KNOWN_ARCH_VARIANTS, BundleConfig, Platform, load_config
from ecr_oci.bundle.model import Bundle, build_bundle
from ecr_oci.bundle.sage import ECR_EXTENSIONS, PRESERVED
from ecr_oci.errors import ValidationError
from ecr_oci.oci import Blob, canonical_json
from tests.spec.support import (
    EXAMPLES,
    README,
    annotations_example,
    assert_names_field,
    copy_example,
    expected_field,
    place_images,
)
from tests.support import build_tiny_layout

ECR_VALID = sorted(EXAMPLES.glob("ecr-valid-*.yaml"))
ECR_INVALID = sorted(EXAMPLES.glob("ecr-invalid-*.yaml"))
ANNOTATIONS_VALID = sorted(EXAMPLES.glob("annotations-valid-*.json"))
ANNOTATIONS_INVALID = sorted(EXAMPLES.glob("annotations-invalid-*.json"))
KNOWN_PATTERNS = ("ecr-valid-*.yaml", "ecr-invalid-*.yaml", "sage-valid-*.yaml", "sage-invalid-*.yaml",
                  "annotations-valid-*.json", "annotations-invalid-*.json", "profile*.json", "README.md")


def names(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


# --- every example is exercised ------------------------------------------------------


def test_every_example_file_has_a_known_kind() -> None:
    covered = {p for pattern in KNOWN_PATTERNS for p in EXAMPLES.glob(pattern)}
    stray = sorted(p.name for p in EXAMPLES.iterdir() if p not in covered)
    assert not stray, f"examples no test reads: {stray}"


def test_there_are_examples_of_each_kind() -> None:
    assert {"ecr-valid-minimal.yaml", "ecr-valid-full.yaml"} <= set(names(ECR_VALID))
    assert len(ECR_INVALID) >= 9 and len(ANNOTATIONS_INVALID) >= 4
    assert {"annotations-valid-minimal.json", "annotations-valid-full.json"} <= set(names(ANNOTATIONS_VALID))


@pytest.mark.parametrize("path", ECR_VALID, ids=names(ECR_VALID))
def test_valid_ecr_example_loads(path: Path, tmp_path: Path) -> None:
    document = yaml.safe_load(path.read_text())
    # Metadata level first: the schema alone, and every platform parses.
    spec.check("ecr", document, what=path.name)
    for item in document["images"]:
        Platform.parse(item["platform"])
    config = load_config(copy_example(path, tmp_path / "bundle"))
    assert config.name == document["name"]
    assert [str(e.platform) for e in config.images] == [i["platform"] for i in document["images"]]


@pytest.mark.parametrize("path", ECR_INVALID, ids=names(ECR_INVALID))
def test_invalid_ecr_example_is_rejected_naming_its_field(path: Path, tmp_path: Path) -> None:
    field = expected_field(path)
    # The files it names exist, so the one defect the example has is the only cause.
    root = copy_example(path, tmp_path / "bundle")
    with pytest.raises(ValidationError) as caught:
        load_config(root)
    assert_names_field(caught.value, "ecr.yaml", field)


@pytest.mark.parametrize("path", ANNOTATIONS_VALID, ids=names(ANNOTATIONS_VALID))
def test_valid_annotations_example_validates(path: Path) -> None:
    validate_annotations(annotations_example(path))


@pytest.mark.parametrize("path", ANNOTATIONS_INVALID, ids=names(ANNOTATIONS_INVALID))
def test_invalid_annotations_example_is_rejected_naming_its_key(path: Path) -> None:
    key = expected_field(path)
    with pytest.raises(ValidationError) as caught:
        validate_annotations(annotations_example(path))
    assert caught.value.field == f"annotations: {key}", str(caught.value)


# --- ecr.yaml -> annotations -> metadata ------------------------------------------------


@pytest.mark.parametrize("kind", ["minimal", "full"])
def test_annotations_example_is_what_the_ecr_example_produces(kind: str, tmp_path: Path) -> None:
    config = load_config(copy_example(EXAMPLES / f"ecr-valid-{kind}.yaml", tmp_path / "bundle"))
    annotations = annotations_for(config.data)
    validate_annotations(annotations)
    assert annotations == annotations_example(EXAMPLES / f"annotations-valid-{kind}.json")


# What metadata_from must give back for ecr-valid-full.yaml, written out by hand from that file.
FULL_EXAMPLE_METADATA: dict[str, Any] = {
    "name": "bird-detector",
    "version": "1.2.0",
    "description": "Counts and classifies birds in camera frames.",
    "authors": "Alice Example <alice@example.org>, Bob Example <bob@example.org>",  # one annotation string
    "license": "Apache-2.0 AND MIT",
    "homepage": "https://example.org/bird-detector",
    "documentation": "https://example.org/bird-detector/docs",
    "created": "2025-06-01T10:00:00Z",
    "doi": "10.5281/zenodo.1234567",
    "source": "https://github.com/example/bird-detector",
    "revision": "3f2c1e9d8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e",
    "source.directory": "plugin",
    "source.dockerfile": "Dockerfile",
    "build.toolchain": {"docker-buildx": "0.12.1", "python": "3.11"},
    "build.args": {"BASE_IMAGE": "waggle/plugin-base:1.1.1-base", "TORCH_VERSION": "2.1.0"},
    "build.recipe": "make images",
    "runtime": {"python": ">=3.11", "torch": "2.1", "cuda": "12.2"},
    "hardware": {"gpu": "nvidia", "accelerator": "nvidia-volta", "camera": True, "microphone": False,
                 "memory": "2Gi", "cpu": "1500m", "devices": ["/dev/video0"]},
    "inputs": [{"name": "camera", "type": "image", "description": "frames from the bottom camera"}],
    "outputs": [{"name": "env.bird.count", "type": "int", "unit": "birds", "description": "birds seen in one frame"}],
    "keywords": ["birds", "classification", "computer vision"],
    "science": "# Bird counting\n\nA small detector counts birds in each camera frame and publishes the count.\n",
    "spec.version": "1",
}


def test_full_example_round_trips_through_annotations(tmp_path: Path) -> None:
    config = load_config(copy_example(EXAMPLES / "ecr-valid-full.yaml", tmp_path / "bundle"))
    annotations = annotations_for(config.data)
    validate_annotations(annotations)
    assert metadata_from(annotations) == FULL_EXAMPLE_METADATA


def test_minimal_example_round_trips_through_annotations(tmp_path: Path) -> None:
    config = load_config(copy_example(EXAMPLES / "ecr-valid-minimal.yaml", tmp_path / "bundle"))
    metadata = metadata_from(annotations_for(config.data))
    assert metadata == {
        "name": "hello-waggle", "version": "0.1.0", "description": config.data["description"],
        "authors": "Alice Example <alice@example.org>", "license": "MIT", "spec.version": "1",
    }


# --- the bundle the examples build (the layout claims of README §3, §4, §7) -------------


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a layout tagged amd64/arm64/arm, a layout holding one arm image), built by umoci."""
    if not shutil.which("umoci"):
        pytest.fail("umoci is not installed: run `make deps`")
    work = tmp_path_factory.mktemp("spec-images")
    multi = build_tiny_layout(work / "multi", work, archs=("amd64", "arm64", "arm"))
    single = build_tiny_layout(work / "single", work, archs=("arm",))
    return multi, single


def _bundle_dir(kind: str, root: Path, layouts: tuple[Path, Path]) -> Path:
    path = EXAMPLES / f"ecr-valid-{kind}.yaml"
    copy_example(path, root)
    place_images(yaml.safe_load(path.read_text()), root, *layouts)
    return root


def _read(blob: Blob) -> bytes:
    return b"".join(blob.read(0))


def _build(root: Path, scratch: Path) -> tuple[BundleConfig, Bundle]:
    config = load_config(root)
    return config, build_bundle(config, scratch)


def test_minimal_example_is_a_code_only_bundle(tmp_path: Path, layouts: tuple[Path, Path]) -> None:
    _, bundle = _build(_bundle_dir("minimal", tmp_path / "b", layouts), tmp_path / "scratch")
    index = json.loads(bundle.index.data)
    assert bundle.model is None
    assert [e["platform"] for e in index["manifests"]] == [{"architecture": "arm64", "os": "linux"}]


def test_full_example_builds_the_documented_layout(tmp_path: Path, layouts: tuple[Path, Path]) -> None:
    root = _bundle_dir("full", tmp_path / "b", layouts)
    config, bundle = _build(root, tmp_path / "scratch")
    index = json.loads(bundle.index.data)
    assert bundle.index.data == canonical_json(index)
    assert index["mediaType"] == mt.OCI_INDEX and index["artifactType"] == mt.BUNDLE_ARTIFACT_TYPE
    assert index["annotations"] == annotations_for(config.data)
    assert "subject" not in index
    *images, model_entry = index["manifests"]
    assert [e["platform"] for e in images] == [
        {"architecture": "amd64", "os": "linux"},
        {"architecture": "arm64", "os": "linux"},
        {"architecture": "arm", "os": "linux", "variant": "v7"},
    ]
    assert all(set(e) == {"mediaType", "digest", "size", "platform"} for e in images)
    assert model_entry["platform"] == {"architecture": "unknown", "os": "unknown"}
    assert model_entry["artifactType"] == mt.MODEL_ARTIFACT_TYPE
    assert model_entry["annotations"] == {mt.ECR_ROLE: "model"}

    assert bundle.model is not None
    manifest = json.loads(bundle.model.data)
    assert manifest["artifactType"] == mt.MODEL_ARTIFACT_TYPE
    assert manifest["annotations"] == {mt.OCI_TITLE: "bird-detector", mt.OCI_VERSION: "1.2.0"}
    config_blob, *layers = bundle.model.blobs
    assert manifest["config"]["mediaType"] == mt.MODEL_CONFIG
    expected_config = {k: v for k, v in config.data.items() if k != "images"}
    expected_config |= {"platforms": ["linux/amd64", "linux/arm64", "linux/arm/v7"], "specVersion": "1"}
    assert _read(config_blob) == canonical_json(expected_config)
    assert expected_config["x-reviewed-by"] == "Sage science team"

    described = [(d["annotations"][mt.OCI_TITLE], d["mediaType"], d["annotations"][mt.ECR_LAYER_ROLE])
                 for d in manifest["layers"]]
    assert described == [
        ("model/weights.onnx", mt.MODEL_LAYER, "model"),
        ("model/labels/part-1.txt", mt.MODEL_LAYER, "model"),
        ("model/labels/sub/part-2.txt", mt.MODEL_LAYER, "model"),
        ("bird-detector-1.2.0-source.tar.gz", mt.SOURCE_LAYER, "source"),
        ("data/annotations.csv", mt.DATA_LAYER, "data"),
        ("data/images.tar.gz", mt.DATA_LAYER_TAR_GZIP, "data"),
    ]
    by_title = {layer.annotations[mt.OCI_TITLE]: layer for layer in layers}
    # Raw layers: the layer digest is the file's own SHA-256.
    weights = (root / "model" / "weights.onnx").read_bytes()
    assert by_title["model/weights.onnx"].digest == "sha256:" + hashlib.sha256(weights).hexdigest()
    assert _read(by_title["data/annotations.csv"]) == (root / "data" / "annotations.csv").read_bytes()
    _check_archive(_read(by_title["bird-detector-1.2.0-source.tar.gz"]), "source",
                   ["source/part-1.txt", "source/sub", "source/sub/part-2.txt"])
    _check_archive(_read(by_title["data/images.tar.gz"]), "images",
                   ["images/part-1.txt", "images/sub", "images/sub/part-2.txt"])


def _check_archive(data: bytes, prefix: str, expected: list[str]) -> None:
    """README §7.3: sorted entries under ``prefix``, zero mtimes and owners, bare gzip header."""
    assert data[:10] == bytes.fromhex("1f8b08000000000000ff")
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data)), mode="r:") as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == expected
    assert all(m.name.startswith(f"{prefix}/") for m in members)
    assert all((m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "") for m in members)
    assert {m.mode for m in members if m.isdir()} <= {0o755} and {m.mode for m in members if m.isfile()} == {0o644}


def test_same_inputs_give_the_same_bundle_digest(tmp_path: Path, layouts: tuple[Path, Path]) -> None:
    import os

    first = _bundle_dir("full", tmp_path / "one", layouts)
    second = _bundle_dir("full", tmp_path / "two", layouts)
    # Different mtimes on every file: they must not reach the bundle.
    for path in second.rglob("*"):
        os.utime(path, (1_000_000_000, 1_000_000_000), follow_symlinks=False)
    _, a = _build(first, tmp_path / "scratch-one")
    _, b = _build(second, tmp_path / "scratch-two")
    assert a.digest == b.digest
    assert [m.digest for m in a.manifests] == [m.digest for m in b.manifests]


# --- the README tables cannot drift from the code ---------------------------------------


def _section(heading: str) -> str:
    """The README text from the heading starting with ``heading`` to the next one of its level."""
    level = heading.split(" ", 1)[0]
    lines = README.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    end = next((i for i in range(start + 1, len(lines))
                if lines[i].startswith("#") and len(lines[i].split(" ", 1)[0]) <= len(level)), len(lines))
    return "\n".join(lines[start:end])


def _rows(text: str) -> list[list[str]]:
    """Table rows as cells (header and separator rows excluded); ``\\|`` is not a separator."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("|") or re.match(r"^\|\s*-", line):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        rows.append(cells)
    return rows


def _first_codes(text: str, prefix: str) -> list[str]:
    """First-column values written as `code` that start with ``prefix``."""
    out = []
    for cells in _rows(text):
        match = re.fullmatch(r"`([^`]+)`", cells[0])
        if match and match.group(1).startswith(prefix):
            out.append(match.group(1))
    return out


def _constants(prefix: str) -> set[str]:
    return {v for k, v in vars(mt).items() if k.isupper() and isinstance(v, str) and v.startswith(prefix)}


def test_readme_media_type_table_matches_mediatypes_module() -> None:
    documented = _first_codes(_section("## 2."), "application/")
    assert len(documented) == len(set(documented)), "a media type is listed twice"
    assert set(documented) == _constants("application/")
    # The constant column names the right constant.
    for cells in _rows(_section("## 2.")):
        if cells[0].startswith("`application/"):
            assert getattr(mt, cells[1].strip("`")) == cells[0].strip("`")


def test_readme_annotation_tables_match_mediatypes_module() -> None:
    documented = set(_first_codes(_section("## 5."), "org."))
    keys = {k for k in _constants("org.") if not k.endswith(".")}  # ECR_PREFIX is a prefix, not a key
    assert documented == keys


def test_readme_index_annotation_table_matches_the_schema() -> None:
    schema = spec.load_schema("bundle-annotations")
    rows = [r for r in _rows(_section("### 5.1")) if r[0].startswith("`org.")]
    keys = [r[0].strip("`") for r in rows]
    assert set(keys) == set(schema["properties"])
    assert {r[0].strip("`") for r in rows if r[2] == "yes"} == set(schema["required"])
    assert {r[0].strip("`") for r in rows if r[1].startswith("JSON")} == mt.JSON_ANNOTATIONS


def _schema_fields(schema: dict[str, Any], defs: dict[str, Any], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for name, sub in schema.get("properties", {}).items():
        path = prefix + name
        out.add(path)
        while "$ref" in sub:
            sub = defs[sub["$ref"].rsplit("/", 1)[-1]]
        if "properties" in sub:
            out |= _schema_fields(sub, defs, path + ".")
        items = sub.get("items")
        while isinstance(items, dict) and "$ref" in items:
            items = defs[items["$ref"].rsplit("/", 1)[-1]]
        if isinstance(items, dict) and "properties" in items:
            out |= _schema_fields(items, defs, path + "[].")
    return out


def test_readme_ecr_yaml_table_matches_the_schema() -> None:
    schema = spec.load_schema("ecr")
    rows = [r for r in _rows(_section("### 8.1")) if r[0].startswith("`")]
    documented = {r[0].strip("`") for r in rows} - {"x-*"}
    assert documented == _schema_fields(schema, schema["$defs"])
    top_level = [r for r in rows if not re.search(r"[.\[]", r[0])]
    assert {r[0].strip("`") for r in top_level if r[2] == "yes"} == set(schema["required"])


def test_readme_platform_table_matches_config_module() -> None:
    rows = [r for r in _rows(_section("### 8.2")) if r[0].startswith("`")]
    documented = {r[0].strip("`"): {v.strip("` ") for v in r[1].split(",") if v.strip()} for r in rows}
    assert documented == {arch: set(variants) for arch, variants in KNOWN_ARCH_VARIANTS.items()}


def test_readme_sage_table_names_every_handled_field() -> None:
    text = _section("## 9.")
    for key in PRESERVED:
        assert f"`{key}`" in text
    for key in ECR_EXTENSIONS:
        assert f"`{key}`" in text


def test_schema_platform_patterns_accept_exactly_the_known_platforms() -> None:
    """The node-facts schema (inlined in the OpenAPI document) and Platform.parse agree, so the
    facts API never refuses a value its OpenAPI document calls valid (found by schemathesis).
    ecr.yaml's schema keeps the plain os/arch grammar: Platform.parse then says which part is unknown."""
    import itertools
    import re

    from ecr_oci.bundle.config import KNOWN_ARCH_VARIANTS, Platform
    from ecr_oci.errors import ValidationError
    from ecr_oci.spec import load_schema

    patterns = [load_schema("node-facts")["properties"]["platform"]["pattern"]]
    words = ["linux", "windows", "0", *KNOWN_ARCH_VARIANTS, "v2", "v5", "v7", "v8", "v9", "x"]
    candidates = ["/".join(p) for n in (2, 3) for p in itertools.product(words, repeat=n)]
    for text in candidates:
        try:
            Platform.parse(text)
            known = True
        except ValidationError:
            known = False
        for pattern in patterns:
            assert bool(re.search(pattern, text)) == known, (pattern, text)
