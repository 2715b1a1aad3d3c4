"""sage.yaml -> ecr.yaml conversion (ecr_oci.bundle.sage), as published in README section 9."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ecr_oci import spec
from ecr_oci.bundle.annotations import annotations_for, validate_annotations
from ecr_oci.bundle.config import load_config
from ecr_oci.bundle.sage import convert_sage
from ecr_oci.errors import ValidationError
from tests.spec.support import EXAMPLES, assert_names_field, copy_example, expected_field

SAGE_VALID = sorted(EXAMPLES.glob("sage-valid-*.yaml"))
SAGE_INVALID = sorted(EXAMPLES.glob("sage-invalid-*.yaml"))

IMAGES = [
    {"platform": "linux/arm64", "from": "oci:build/oci:arm64"},
    {"platform": "linux/amd64", "from": "oci:build/oci:amd64"},
]


def sage(**fields: Any) -> dict[str, Any]:
    """A minimal sage.yaml document (as waggle plugins write it), plus ``fields``."""
    document: dict[str, Any] = {
        "name": "object-counter",
        "version": "0.5.1",
        "description": "Counts objects",
        "authors": "Alice Example <alice@example.org>",
        "license": "MIT",
        "source": {"architectures": ["linux/arm64", "linux/amd64"], "url": "https://github.com/example/p.git"},
        "images": IMAGES,
    }
    document.update(fields)
    return {k: v for k, v in document.items() if v is not None}


def error_of(document: dict[str, Any]) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        convert_sage(document)
    return caught.value


# --- the examples ----------------------------------------------------------------------------


def test_there_are_sage_examples() -> None:
    assert SAGE_VALID and len(SAGE_INVALID) >= 3


@pytest.mark.parametrize("path", SAGE_VALID, ids=[p.name for p in SAGE_VALID])
def test_valid_sage_example_loads_as_a_bundle(path: Path, tmp_path: Path) -> None:
    config = load_config(copy_example(path, tmp_path / "plugin", name="sage.yaml"))
    source = yaml.safe_load(path.read_text())
    assert config.name == source["name"]
    assert [str(e.platform) for e in config.images] == [i["platform"] for i in source["images"]]
    validate_annotations(annotations_for(config.data))


@pytest.mark.parametrize("path", SAGE_INVALID, ids=[p.name for p in SAGE_INVALID])
def test_invalid_sage_example_is_rejected_naming_its_field(path: Path, tmp_path: Path) -> None:
    field = expected_field(path)
    root = copy_example(path, tmp_path / "plugin", name="sage.yaml")
    with pytest.raises(ValidationError) as caught:
        load_config(root)
    assert_names_field(caught.value, "sage.yaml", field)


def test_plugin_example_converts_field_by_field(tmp_path: Path) -> None:
    config = load_config(copy_example(EXAMPLES / "sage-valid-plugin.yaml", tmp_path / "p", name="sage.yaml"))
    data = config.data
    assert data["authors"] == ["Alice Example <alice@example.org>", "Bob Example <bob@example.org>"]
    assert data["license"] == "MIT"  # "MIT license" in sage.yaml
    assert data["keywords"] == ["object counter", "object detection", "machine learning"]
    assert data["source"] == {
        "url": "https://github.com/example/plugin-object-counter.git", "revision": "main", "dockerfile": "Dockerfile",
    }
    assert data["build"] == {"args": {"VERSION": "0.5"}}
    assert data["inputs"] == [{"name": "stream", "type": "string"}, {"name": "confidence-level", "type": "float"}]
    assert data["model"] == ["model/yolov5s.pt"]
    assert data["x-sage-namespace"] == "waggle"
    assert data["x-sage-collaborators"] == "Waggle Edge Computing Team"
    assert data["x-sage-funding"] == "NSF 1935984"
    assert data["x-sage-metadata"] == {"ontology": "env.count.*"}
    assert "namespace" not in data and "collaborators" not in data


# --- field mapping -----------------------------------------------------------------------------


def test_minimal_document_converts_to_a_schema_valid_ecr_document() -> None:
    converted = convert_sage(sage())
    spec.check("ecr", converted, what="sage.yaml")
    assert converted == {
        "name": "object-counter",
        "version": "0.5.1",
        "description": "Counts objects",
        "authors": ["Alice Example <alice@example.org>"],
        "license": "MIT",
        "source": {"url": "https://github.com/example/p.git"},
        "images": IMAGES,
    }


def test_comma_separated_strings_become_lists_and_lists_are_kept() -> None:
    converted = convert_sage(sage(authors=" A <a@x.org> ,B <b@x.org>, ", keywords="ml, vision, ml,"))
    assert converted["authors"] == ["A <a@x.org>", "B <b@x.org>"]
    assert converted["keywords"] == ["ml", "vision"]
    assert convert_sage(sage(authors=["A <a@x.org>"]))["authors"] == ["A <a@x.org>"]


@pytest.mark.parametrize("text,spdx", [
    ("MIT license", "MIT"), ("The MIT License", "MIT"), ("Apache 2.0", "Apache-2.0"),
    ("Apache License, Version 2.0", "Apache-2.0"), ("BSD 3-Clause", "BSD-3-Clause"),
    ("Apache-2.0 OR MIT", "Apache-2.0 OR MIT"),
])
def test_license_prose_with_one_spdx_id_is_normalised(text: str, spdx: str) -> None:
    assert convert_sage(sage(license=text))["license"] == spdx


def test_other_license_prose_is_left_for_the_schema_to_reject() -> None:
    converted = convert_sage(sage(license="The license agreed by Argonne National Laboratory"))
    with pytest.raises(ValidationError) as caught:
        spec.check("ecr", converted, what="sage.yaml")
    assert caught.value.field == "sage.yaml: license"


def test_source_fields_map_and_empty_directory_is_the_default() -> None:
    source = {"architectures": ["linux/amd64"], "url": "https://github.com/example/p.git", "branch": "dev",
              "directory": "", "dockerfile": "Dockerfile.gpu", "build_args": {"N": 1, "FLAG": "on"}}
    converted = convert_sage(sage(source=source, images=[IMAGES[1]]))
    assert converted["source"] == {"url": "https://github.com/example/p.git", "revision": "dev",
                                   "dockerfile": "Dockerfile.gpu"}
    assert converted["build"] == {"args": {"N": "1", "FLAG": "on"}}
    converted = convert_sage(sage(source={**source, "directory": "plugin"}, images=[IMAGES[1]]))
    assert converted["source"]["directory"] == "plugin"


def test_build_extension_merges_with_build_args_but_not_twice() -> None:
    source = {"url": "https://github.com/example/p.git", "build_args": {"N": "1"}}
    converted = convert_sage(sage(source=source, build={"recipe": "make"}))
    assert converted["build"] == {"recipe": "make", "args": {"N": "1"}}
    error = error_of(sage(source=source, build={"args": {"N": "2"}}))
    assert error.field == "sage.yaml: build.args"


def test_inputs_id_becomes_name() -> None:
    converted = convert_sage(sage(inputs=[{"id": "stream", "type": "string", "description": "camera"}]))
    assert converted["inputs"] == [{"name": "stream", "type": "string", "description": "camera"}]
    assert convert_sage(sage(inputs=[{"name": "stream"}]))["inputs"] == [{"name": "stream"}]
    assert error_of(sage(inputs=[{"id": "a", "name": "a"}])).field == "sage.yaml: inputs[0]"
    assert error_of(sage(inputs=[{"id": "a", "default": 1}])).field == "sage.yaml: inputs[0]"
    assert error_of(sage(inputs={"id": "a"})).field == "sage.yaml: inputs"


def test_sage_only_fields_are_kept_as_x_sage_extensions() -> None:
    extra = {"namespace": "waggle", "collaborators": "C", "funding": "NSF", "metadata": {"k": 1},
             "resources": [{"type": "RGB_image_producer"}], "testing": {"command": ["pytest"]},
             "depends_on": "x", "baseCommand": "python3", "arguments": "--x", "frozen": True}
    converted = convert_sage(sage(**extra))
    assert {k: converted[f"x-sage-{k}"] for k in extra} == extra
    assert not set(extra) & set(converted)
    spec.check("ecr", converted, what="sage.yaml")
    # x-* fields never reach the annotations.
    assert not any("sage" in key for key in annotations_for(converted))


def test_ecr_extension_and_x_fields_pass_through() -> None:
    extension = {"runtime": {"python": ">=3.11"}, "hardware": {"camera": True}, "outputs": [{"name": "env.count"}],
                 "doi": "10.5281/zenodo.1", "documentation": "https://example.org/doc", "science": "text",
                 "created": "2025-01-01T00:00:00Z", "model": ["m.bin"], "source_archive": "src",
                 "training_data": ["d.csv"], "x-owner": "lab"}
    converted = convert_sage(sage(**extension))
    assert {k: converted[k] for k in extension} == extension
    spec.check("ecr", converted, what="sage.yaml")


def test_number_version_becomes_a_string_that_the_schema_rejects() -> None:
    converted = convert_sage(sage(version=1.0))
    assert converted["version"] == "1.0"
    with pytest.raises(ValidationError) as caught:
        spec.check("ecr", converted, what="sage.yaml")
    assert caught.value.field == "sage.yaml: version"


# --- errors -------------------------------------------------------------------------------------


def test_no_images_with_architectures_says_what_to_add() -> None:
    error = error_of(sage(images=None))
    assert error.field == "sage.yaml: images"
    assert "sage.yaml lists architectures linux/arm64, linux/amd64 but no images: " \
           "add an `images:` list (platform + from)" in str(error)


def test_no_images_and_no_architectures() -> None:
    error = error_of(sage(images=None, source={"url": "https://github.com/example/p.git"}))
    assert error.field == "sage.yaml: images"
    assert "add an `images:` list" in str(error)


def test_images_must_match_architectures_both_ways() -> None:
    error = error_of(sage(images=[IMAGES[0]]))
    assert error.field == "sage.yaml: images" and "linux/amd64" in str(error)
    extra = [*IMAGES, {"platform": "linux/arm/v7", "from": "oci:build/oci:arm"}]
    error = error_of(sage(images=extra))
    assert error.field == "sage.yaml: images[2].platform" and "linux/arm/v7" in str(error)


def test_images_without_architectures_are_taken_as_they_are() -> None:
    converted = convert_sage(sage(source={"url": "https://github.com/example/p.git"}, images=[IMAGES[0]]))
    assert converted["images"] == [IMAGES[0]]


def test_unknown_fields_are_errors_naming_them() -> None:
    assert error_of(sage(licence="MIT")).field == "sage.yaml: licence"
    source = {"url": "https://github.com/example/p.git", "architectures": ["linux/amd64"], "testing": {}}
    assert error_of(sage(source=source)).field == "sage.yaml: source.testing"


@pytest.mark.parametrize("fields,field", [
    ({"source": "https://github.com/example/p.git"}, "sage.yaml: source"),
    ({"source": {"architectures": "linux/amd64"}}, "sage.yaml: source.architectures"),
    ({"source": {"build_args": ["A=1"]}}, "sage.yaml: source.build_args"),
    ({"authors": 42}, "sage.yaml: authors"),
    ({"keywords": {"a": 1}}, "sage.yaml: keywords"),
])
def test_wrong_shapes_are_errors_naming_the_field(fields: dict[str, Any], field: str) -> None:
    assert error_of(sage(**fields)).field == field


# --- how load_config finds and treats sage.yaml ---------------------------------------------------


def _write(root: Path, name: str, document: dict[str, Any]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / name).write_text(yaml.safe_dump(document, sort_keys=False))
    return root


def test_sage_yml_is_converted_too(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, "sage.yml", sage()))
    assert config.data["authors"] == ["Alice Example <alice@example.org>"]


def test_ecr_yaml_wins_over_sage_yaml(tmp_path: Path) -> None:
    _write(tmp_path, "sage.yaml", sage())
    ecr = convert_sage(sage()) | {"description": "from ecr.yaml"}
    config = load_config(_write(tmp_path, "ecr.yaml", ecr))
    assert config.data["description"] == "from ecr.yaml"


def test_converted_document_errors_use_the_file_name(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as caught:
        load_config(_write(tmp_path, "sage.yaml", sage(images=None)))
    assert caught.value.field == "sage.yaml: images"
