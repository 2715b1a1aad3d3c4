"""``sage.yaml`` -> ``ecr.yaml``: read a Waggle/Sage plugin's metadata as a bundle.

Waggle plugins describe themselves in a ``sage.yaml`` (the format of the Sage ECR
and the waggle-sensor plugin repositories). It names the source to build, not built
images, so a bundle needs one ECR extension there: an ``images:`` list, exactly as in
ecr.yaml. Other ecr.yaml fields sage.yaml does not have (``model``, ``runtime``,
``hardware`` ...) may be added to sage.yaml as they are.

The field mapping is published in ``annotations-spec/v1/README.md`` (section "sage.yaml");
this module and that table must agree.
"""

from __future__ import annotations

from typing import Any

from ecr_oci.errors import ValidationError

# Sage fields with no ecr.yaml counterpart: kept under an ``x-sage-`` extension key
# (ecr.schema.json admits ``x-*``), so nothing the author wrote is silently lost.
# They reach the model manifest's config blob, not the index annotations.
PRESERVED = ("namespace", "collaborators", "funding", "metadata", "resources", "testing",
             "depends_on", "baseCommand", "arguments", "frozen")

# ecr.yaml fields sage.yaml lacks: accepted in sage.yaml unchanged (the "ECR extension").
ECR_EXTENSIONS = ("images", "documentation", "created", "doi", "build", "runtime", "hardware",
                  "outputs", "science", "model", "source_archive", "training_data", "icon")

# Fields whose value is copied as is (same name and meaning in both formats).
SAME = ("name", "description", "homepage")

SOURCE_KEYS = frozenset({"architectures", "url", "branch", "directory", "dockerfile", "build_args"})
INPUT_KEYS = frozenset({"id", "name", "type", "description", "unit"})

# Free-text spellings seen in sage.yaml files for licenses that have one SPDX id.
# Only unambiguous names: anything else goes to the schema unchanged and, if it is
# not an SPDX expression, is rejected there with a message naming `license`.
LICENSE_ALIASES = {
    "mit license": "MIT",
    "the mit license": "MIT",
    "mit": "MIT",
    "apache 2.0": "Apache-2.0",
    "apache 2": "Apache-2.0",
    "apache license 2.0": "Apache-2.0",
    "apache license, version 2.0": "Apache-2.0",
    "apache-2.0 license": "Apache-2.0",
    "bsd 3-clause": "BSD-3-Clause",
    "bsd-3-clause license": "BSD-3-Clause",
    "bsd 2-clause": "BSD-2-Clause",
    "bsd-2-clause license": "BSD-2-Clause",
}


def convert_sage(document: dict[str, Any], *, what: str = "sage.yaml") -> dict[str, Any]:
    """Convert a sage.yaml document into an ecr.yaml document.

    The result is not validated here: :func:`ecr_oci.bundle.config.load_config` checks it
    against ``ecr.schema.json`` like any ecr.yaml, so field names in its errors are the
    ecr.yaml names (the same as sage.yaml's for the shared fields).

    Args:
        document: the parsed sage.yaml (a mapping).
        what: the file name used in error messages.

    Raises:
        ValidationError: a field of unknown name or of the wrong shape, no ``images:``
            list, or images that disagree with ``source.architectures``.
    """
    unknown = sorted(
        str(key) for key in document
        if key not in (*SAME, *PRESERVED, *ECR_EXTENSIONS, "version", "authors", "license", "keywords",
                       "source", "inputs")
        and not str(key).startswith("x-")
    )
    if unknown:
        raise ValidationError(
            f"unknown field {unknown[0]!r} (sage.yaml fields, ecr.yaml extension fields or x-* only)",
            field=f"{what}: {unknown[0]}",
        )
    out: dict[str, Any] = {}
    for key in ("name", "version", "description", "authors", "license", "homepage"):
        if key not in document:
            continue
        value = document[key]
        if key == "version" and isinstance(value, int | float) and not isinstance(value, bool):
            # YAML reads `version: 1.0` as a number; the schema then reports it as a
            # non-semver string, which tells the author what to write.
            value = str(value)
        elif key == "authors":
            value = _split_list(value, f"{what}: authors")
        elif key == "license":
            value = _license(value)
        out[key] = value
    source = document.get("source")
    architectures = _source(source, out, what) if source is not None else []
    for key in ("documentation", "created", "doi", "science"):
        if key in document:
            out[key] = document[key]
    if "build" in document:
        out["build"] = _merge_build(document["build"], out.get("build"), what)
    for key in ("runtime", "hardware"):
        if key in document:
            out[key] = document[key]
    if "inputs" in document:
        out["inputs"] = _inputs(document["inputs"], what)
    if "outputs" in document:
        out["outputs"] = document["outputs"]
    if "keywords" in document:
        out["keywords"] = _dedupe(_split_list(document["keywords"], f"{what}: keywords"))
    for key in ("model", "source_archive", "training_data", "icon"):
        if key in document:
            out[key] = document[key]
    out["images"] = _images(document.get("images"), architectures, what)
    for key in PRESERVED:
        if key in document:
            out[f"x-sage-{key}"] = document[key]
    out |= {str(k): v for k, v in document.items() if str(k).startswith("x-")}
    return out


def _split_list(value: Any, field: str) -> list[Any]:
    """``"A <a@x>, B <b@x>"`` -> ``["A <a@x>", "B <b@x>"]``; a list is kept (ecr.yaml form).

    Raises:
        ValidationError: neither a string nor a list.
    """
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    raise ValidationError("must be a comma-separated string or a list of strings", field=field)


def _dedupe(items: list[Any]) -> list[Any]:
    # sage.yaml keyword strings repeat words now and then; ecr.yaml wants unique items.
    seen: list[Any] = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def _license(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    return LICENSE_ALIASES.get(" ".join(value.lower().split()), value)


def _source(source: Any, out: dict[str, Any], what: str) -> list[str]:
    """Fill ``out["source"]`` and ``out["build"]`` from sage's ``source``; return its architectures.

    Raises:
        ValidationError: ``source`` is not a mapping, has unknown keys, or bad architectures.
    """
    if not isinstance(source, dict):
        raise ValidationError("must be a mapping (url, branch, architectures ...)", field=f"{what}: source")
    extra = sorted(str(k) for k in source if k not in SOURCE_KEYS)
    if extra:
        raise ValidationError(
            f"unknown field {extra[0]!r} (known: {', '.join(sorted(SOURCE_KEYS))})",
            field=f"{what}: source.{extra[0]}",
        )
    mapped: dict[str, Any] = {}
    if "url" in source:
        mapped["url"] = source["url"]
    if source.get("branch"):
        # A branch is the only source position sage.yaml records; it moves, so a
        # bundle that needs an exact revision should name a commit or tag instead.
        mapped["revision"] = source["branch"]
    # Sage documents "" as "the root of the repository", which is also what an
    # absent ecr.yaml `source.directory` means.
    if source.get("directory"):
        mapped["directory"] = source["directory"]
    if source.get("dockerfile"):
        mapped["dockerfile"] = source["dockerfile"]
    if mapped:
        out["source"] = mapped
    if source.get("build_args"):
        args = source["build_args"]
        if not isinstance(args, dict):
            raise ValidationError("must be a mapping of NAME: value", field=f"{what}: source.build_args")
        # docker build-args are strings; YAML makes numbers of `N: 1`.
        out["build"] = {"args": {
            str(k): str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v for k, v in args.items()
        }}
    architectures = source.get("architectures", [])
    if not isinstance(architectures, list) or not all(isinstance(a, str) for a in architectures):
        raise ValidationError("must be a list of os/arch[/variant] strings", field=f"{what}: source.architectures")
    return [a.strip() for a in architectures]


def _merge_build(build: Any, from_source: dict[str, Any] | None, what: str) -> Any:
    """The ECR ``build`` extension, plus ``args`` from ``source.build_args``.

    Raises:
        ValidationError: build args given in both places.
    """
    if from_source is None or not isinstance(build, dict):
        return build
    if "args" in build:
        raise ValidationError(
            "build args are given twice (source.build_args and build.args): keep one", field=f"{what}: build.args"
        )
    return {**build, "args": from_source["args"]}


def _inputs(inputs: Any, what: str) -> Any:
    """Sage inputs ``[{id, type}]`` -> ecr.yaml ports ``[{name, type}]``.

    Raises:
        ValidationError: not a list of mappings, unknown keys, or both ``id`` and ``name``.
    """
    if not isinstance(inputs, list):
        raise ValidationError("must be a list of {id, type} entries", field=f"{what}: inputs")
    ports = []
    for i, item in enumerate(inputs):
        field = f"{what}: inputs[{i}]"
        if not isinstance(item, dict):
            raise ValidationError("must be a mapping with id and type", field=field)
        extra = sorted(str(k) for k in item if k not in INPUT_KEYS)
        if extra:
            raise ValidationError(f"unknown field {extra[0]!r} (known: id, type, description, unit)", field=field)
        if "id" in item and "name" in item:
            raise ValidationError("has both id (sage.yaml) and name (ecr.yaml): keep one", field=field)
        port = {("name" if k == "id" else k): v for k, v in item.items()}
        ports.append(port)
    return ports


def _images(images: Any, architectures: list[str], what: str) -> Any:
    """The ``images:`` extension, checked against ``source.architectures``.

    sage.yaml says which platforms the Sage ECR would build, never where built
    images are; guessing a location would publish something nobody built.

    Raises:
        ValidationError: no images, or images and architectures name different platforms.
    """
    if images is None:
        if architectures:
            raise ValidationError(
                f"sage.yaml lists architectures {', '.join(architectures)} but no images: "
                "add an `images:` list (platform + from)",
                field=f"{what}: images",
            )
        raise ValidationError("sage.yaml has no images: add an `images:` list (platform + from)",
                              field=f"{what}: images")
    if not architectures or not isinstance(images, list):
        return images  # the schema reports a malformed list with its own words
    platforms = {i: str(item.get("platform")) for i, item in enumerate(images) if isinstance(item, dict)}
    missing = [a for a in architectures if a not in platforms.values()]
    if missing:
        raise ValidationError(
            f"source.architectures lists {', '.join(missing)} but images has no entry for it",
            field=f"{what}: images",
        )
    for i, platform in platforms.items():
        if platform not in architectures:
            raise ValidationError(
                f"{platform} is not in source.architectures ({', '.join(architectures)})",
                field=f"{what}: images[{i}].platform",
            )
    return images
