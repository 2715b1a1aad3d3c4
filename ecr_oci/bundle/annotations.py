"""Bundle metadata <-> index annotations.

Standard ``org.opencontainers.image.*`` keys carry what they can; the rest uses the
``org.waggle.ecr.`` namespace. Annotation values are strings (image-spec), so
structured values (runtime, hardware, inputs ...) are compact JSON.
"""

from __future__ import annotations

import json
from typing import Any

from ecr_oci import mediatypes as mt
from ecr_oci import spec
from ecr_oci.errors import ValidationError


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def annotations_for(data: dict[str, Any]) -> dict[str, str]:
    """The index annotations for a validated ecr.yaml document."""
    out: dict[str, str] = {
        mt.ECR_SPEC_VERSION: mt.SPEC_VERSION,
        mt.ECR_NAME: data["name"],
        mt.OCI_TITLE: data["name"],
        mt.OCI_VERSION: data["version"],
        mt.OCI_DESCRIPTION: data["description"],
        mt.OCI_AUTHORS: ", ".join(data["authors"]),
        mt.OCI_LICENSES: data["license"],
    }
    simple = {
        mt.OCI_CREATED: data.get("created"),
        mt.OCI_URL: data.get("homepage"),
        mt.OCI_DOCUMENTATION: data.get("documentation"),
        mt.ECR_SCIENCE: data.get("science"),
        mt.ECR_DOI: data.get("doi"),
        mt.ECR_MODEL_PATH: data.get("model_path"),
    }
    source = data.get("source") or {}
    simple |= {
        mt.OCI_SOURCE: source.get("url"),
        mt.OCI_REVISION: source.get("revision"),
        mt.ECR_SOURCE_DIRECTORY: source.get("directory"),
        mt.ECR_SOURCE_DOCKERFILE: source.get("dockerfile"),
    }
    build = data.get("build") or {}
    simple[mt.ECR_BUILD_RECIPE] = build.get("recipe")
    if data.get("keywords"):
        simple[mt.ECR_KEYWORDS] = ",".join(data["keywords"])
    structured = {
        mt.ECR_RUNTIME: data.get("runtime"),
        mt.ECR_HARDWARE: data.get("hardware"),
        mt.ECR_INPUTS: data.get("inputs"),
        mt.ECR_OUTPUTS: data.get("outputs"),
        mt.ECR_BUILD_TOOLCHAIN: build.get("toolchain"),
        mt.ECR_BUILD_ARGS: build.get("args"),
    }
    out |= {k: v for k, v in simple.items() if v}
    out |= {k: _json(v) for k, v in structured.items() if v}
    return dict(sorted(out.items()))


# annotation key -> ($defs name in ecr.schema.json) for JSON-valued annotations
_JSON_DEFS = {
    mt.ECR_RUNTIME: "runtime",
    mt.ECR_HARDWARE: "hardware",
    mt.ECR_INPUTS: "ports",
    mt.ECR_OUTPUTS: "ports",
    mt.ECR_BUILD_TOOLCHAIN: "stringMap",
    mt.ECR_BUILD_ARGS: "stringMap",
}


def validate_annotations(annotations: dict[str, Any]) -> None:
    """Check a bundle index's annotation set against the spec.

    Raises:
        ValidationError: naming the failing annotation key.
    """
    spec.check("bundle-annotations", annotations, what="annotations")
    ecr_schema = spec.load_schema("ecr")
    for key, definition in _JSON_DEFS.items():
        if key not in annotations:
            continue
        try:
            value = json.loads(annotations[key])
        except ValueError:
            raise ValidationError("is not valid JSON", field=f"annotations: {key}") from None
        sub = {"$schema": ecr_schema["$schema"], "$defs": ecr_schema["$defs"], "$ref": f"#/$defs/{definition}"}
        import jsonschema

        error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(sub).iter_errors(value))
        if error is not None:
            where = spec.field_path(error.absolute_path)
            raise ValidationError(f"{where}: {error.message}", field=f"annotations: {key}")


def metadata_from(annotations: dict[str, str]) -> dict[str, Any]:
    """Readable metadata from bundle annotations (the reverse of :func:`annotations_for`)."""
    names = {
        mt.OCI_TITLE: "name", mt.OCI_VERSION: "version", mt.OCI_DESCRIPTION: "description",
        mt.OCI_AUTHORS: "authors", mt.OCI_LICENSES: "license", mt.OCI_SOURCE: "source",
        mt.OCI_REVISION: "revision", mt.OCI_CREATED: "created", mt.OCI_URL: "homepage",
        mt.OCI_DOCUMENTATION: "documentation",
    }
    out: dict[str, Any] = {}
    for key, value in annotations.items():
        if key in names:
            out[names[key]] = value
        elif key.startswith(mt.ECR_PREFIX):
            short = key[len(mt.ECR_PREFIX):]
            if key in mt.JSON_ANNOTATIONS:
                try:
                    out[short] = json.loads(value)
                except ValueError:
                    out[short] = value
            elif key == mt.ECR_KEYWORDS:
                out[short] = value.split(",")
            else:
                out[short] = value
    return out
