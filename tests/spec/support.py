"""Helpers shared by the spec tests: example files, their expectations, bundle directories."""

from __future__ import annotations

import json
import re
import shutil
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from ecr_oci.errors import ValidationError

SPEC = Path(__file__).resolve().parents[2] / "annotations-spec" / "v1"
EXAMPLES = SPEC / "examples"
README = SPEC / "README.md"

# "INVALID field=<field>: <what is wrong>" -- the first line of every invalid example.
_EXPECT = re.compile(r"^INVALID field=(\S+): \S")


def expected_field(path: Path) -> str:
    """The field an invalid example's error must name, from its comment line.

    Raises:
        AssertionError: the example does not say (every invalid example must).
    """
    if path.suffix == ".json":
        comment = str(json.loads(path.read_text()).get("//", ""))
    else:
        comment = path.read_text().splitlines()[0].removeprefix("#").strip()
    match = _EXPECT.match(comment)
    assert match, f"{path.name}: first comment must read 'INVALID field=<field>: <reason>'"
    return match.group(1)


def assert_names_field(error: ValidationError, what: str, field: str) -> None:
    """The error is about ``field``: as its field path, or quoted when it is an unknown key."""
    if error.field == f"{what}: (document)":
        # An unknown top-level key is reported on the document, with the key quoted.
        assert f"'{field}'" in str(error), str(error)
    else:
        assert error.field == f"{what}: {field}", str(error)


def annotations_example(path: Path) -> dict[str, Any]:
    """An annotations example without its ``"//"`` comment member."""
    document = json.loads(path.read_text())
    document.pop("//", None)
    return dict(document)


def _safe(rel: str) -> bool:
    # Invalid examples may name absolute or ``..`` paths; those are never created.
    path = PurePosixPath(rel)
    return bool(rel) and not path.is_absolute() and ".." not in path.parts


def materialise(document: dict[str, Any], root: Path) -> None:
    """Create the files an example names: a path with an extension is a file, else a directory.

    Contents depend only on the path, so two materialised copies are byte-identical.
    """
    paths: list[str] = []
    for key in ("model", "training_data"):
        value = document.get(key)
        if isinstance(value, list):
            paths += [str(v) for v in value]
    if isinstance(document.get("source_archive"), str):
        paths.append(document["source_archive"])
    for rel in filter(_safe, paths):
        target = root / rel
        if target.suffix:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(f"content of {rel}\n")
        else:
            (target / "sub").mkdir(parents=True, exist_ok=True)
            (target / "part-1.txt").write_text(f"first part of {rel}\n")
            (target / "sub" / "part-2.txt").write_text(f"second part of {rel}\n")


def copy_example(path: Path, root: Path, name: str = "ecr.yaml") -> Path:
    """Copy an example into ``root`` as ``name`` and create the files it names."""
    import yaml

    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, root / name)
    document = yaml.safe_load(path.read_text())
    if isinstance(document, dict):
        materialise(document, root)
    return root


def _tar_directory(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(dest, "w") as tar:
        for item in sorted(source.rglob("*")):
            tar.add(item, arcname=item.relative_to(source).as_posix(), recursive=False)


def place_images(document: dict[str, Any], root: Path, multi: Path, single: Path) -> None:
    """Create the image sources an example's ``images`` name, from tiny umoci layouts.

    Args:
        multi: a layout with one image per architecture, tagged by architecture name.
        single: a layout holding one image (what a one-image ``docker save`` holds).
    """
    for item in document["images"]:
        transport, _, rest = str(item["from"]).partition(":")
        if transport == "docker":
            pytest.skip("docker:// sources need a registry")
        path = rest.rsplit(":", 1)[0] if transport in ("oci", "oci-archive") and ":" in rest else rest
        target = root / path
        if target.exists():
            continue
        if transport == "oci":
            shutil.copytree(multi, target)
        elif transport == "oci-archive":
            _tar_directory(multi, target)
        else:
            # A Docker 25+ `docker save` tar is an OCI layout (its extra manifest.json
            # is for older loaders and not read when the layout is there).
            _tar_directory(single, target)
