"""Access to the published JSON Schemas of ``annotations-spec/v1``.

The schemas live once, in ``annotations-spec/v1/schemas``; wheels carry a copy under
``ecr_oci/_schemas`` (see pyproject.toml), source checkouts read them in place.
"""

from __future__ import annotations

import difflib
import json
import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ecr_oci.errors import ValidationError

if TYPE_CHECKING:  # jsonschema and referencing load on the first validation (CLI start-up time)
    import jsonschema
    from jsonschema.exceptions import ValidationError as SchemaError
    from referencing import Registry

_PACKAGED = Path(__file__).parent / "_schemas"
_CHECKOUT = Path(__file__).resolve().parent.parent / "annotations-spec" / "v1" / "schemas"

# Readable words for pattern failures, keyed by the last path element or $defs name.
_PATTERN_WORDS = {
    "version": "is not a semantic version (MAJOR.MINOR.PATCH, e.g. 1.2.0)",
    "licenses": "is not an SPDX license expression (e.g. Apache-2.0, MIT OR BSD-3-Clause)",
    "license": "is not an SPDX license expression (e.g. Apache-2.0, MIT OR BSD-3-Clause)",
    "name": "is not a valid name (lowercase letters, digits and . _ - separators)",
    "platform": "is not an os/arch[/variant] platform (e.g. linux/arm64)",
    "from": "is not an image source (oci:PATH[:TAG], oci-archive:PATH, docker-archive:PATH, docker://HOST/REPO:TAG)",
    "model": "must be a relative path inside the bundle directory",
    "model_path": "must be an absolute path without . or .. parts (e.g. /app/model)",
    "org.waggle.ecr.model.path": "must be an absolute path without . or .. parts (e.g. /app/model)",
    "training_data": "must be a relative path inside the bundle directory",
    "source_archive": "must be a relative path inside the bundle directory",
    "authors": "must name one author per entry (no commas)",
    "doi": "is not a DOI (10.PREFIX/SUFFIX)",
    "memory": "is not a quantity (e.g. 512Mi, 2Gi)",
    "cpu": "is not a quantity (e.g. 1, 500m)",
    "keywords": "is not a keyword (a letter or digit first, then letters, digits, spaces and _ . + -;"
                " at most 64 characters)",
    "homepage": "is not an http(s):// URL",
    "documentation": "is not an http(s):// URL",
    "url": "is not a repository URL (https://, http://, git:// or ssh://)",
}


def schema_dir() -> Path:
    return _PACKAGED if _PACKAGED.is_dir() else _CHECKOUT


@cache
def load_schema(name: str) -> dict[str, Any]:
    """Load ``<name>.schema.json`` from the spec."""
    path = schema_dir() / f"{name}.schema.json"
    schema: dict[str, Any] = json.loads(path.read_text())
    return schema


@cache
def _registry() -> Registry:
    """All spec schemas by $id, so cross-file $refs resolve offline."""
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    resources = []
    for path in sorted(schema_dir().glob("*.schema.json")):
        schema = json.loads(path.read_text())
        uri = schema.get("$id") or f"https://waggle.org/ecr/v1/{path.name}"
        resources.append((uri, Resource.from_contents(schema, default_specification=DRAFT202012)))
    return Registry().with_resources(resources)


@cache
def validator(name: str) -> jsonschema.protocols.Validator:
    """A format-checking Draft 2020-12 validator for schema ``name``."""
    import jsonschema

    schema = load_schema(name)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    v: jsonschema.protocols.Validator = cls(schema, registry=_registry(), format_checker=cls.FORMAT_CHECKER)
    return v


def field_path(path: Any) -> str:
    """``images[0].platform`` from a jsonschema error path."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(document)"


def describe(error: SchemaError) -> tuple[str, str]:
    """(field, message) for a schema error, in words a user can act on."""
    field = field_path(error.absolute_path)
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        prefix = field_path(error.absolute_path)
        return (f"{prefix}.{missing}" if error.absolute_path else missing), "required field is missing"
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set(error.schema.get("properties", {}))
        patterns = [re.compile(p) for p in error.schema.get("patternProperties", {})]
        extra = sorted(k for k in error.instance if k not in known and not any(p.search(k) for p in patterns))
        return field, "; ".join(_unknown_field(str(k), known) for k in extra)
    if error.validator == "pattern":
        key = next((str(p) for p in reversed(error.absolute_path) if isinstance(p, str)), "")
        words = _PATTERN_WORDS.get(key) or _PATTERN_WORDS.get(key.rsplit(".", 1)[-1], "has an invalid format")
        return field, f"{error.instance!r} {words}"
    return field, error.message


def _unknown_field(key: str, known: set[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.7)
    return f"unknown field {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


def _misspelt(error: SchemaError) -> dict[str, str]:
    """For an ``additionalProperties`` error: {known field: the unknown key that looks like it}."""
    if error.validator != "additionalProperties" or not isinstance(error.instance, dict):
        return {}
    known = sorted(error.schema.get("properties", {}))
    found = {}
    for key in error.instance:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.7)
            if close and close[0] not in error.instance:
                found[close[0]] = str(key)
    return found


def problems(name: str, document: Any, *, what: str) -> list[tuple[str, str]]:
    """Every problem of ``document`` against schema ``name``: ``(field, message)`` pairs,
    the field prefixed with ``what``.

    A required field reported missing because it was misspelt is left out: the
    "unknown field 'descripton' (did you mean 'description'?)" line says it.
    """
    from jsonschema.exceptions import best_match

    errors = list(validator(name).iter_errors(document))
    misspelt: set[tuple[tuple[Any, ...], str]] = set()
    for error in errors:
        misspelt |= {(tuple(error.absolute_path), field) for field in _misspelt(error)}
    found: list[tuple[str, str]] = []
    for error in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path]):
        if error.validator == "required":
            field = error.message.split("'")[1] if "'" in error.message else ""
            if (tuple(error.absolute_path), field) in misspelt:
                continue
        if error.validator in ("anyOf", "oneOf") and error.context:
            error = best_match(error.context) or error
        field, message = describe(error)
        if (f"{what}: {field}", message) not in found:
            found.append((f"{what}: {field}", message))
    return found


def check(name: str, document: Any, *, what: str) -> None:
    """Validate ``document`` against schema ``name``.

    Raises:
        ValidationError: listing every problem (its message is the first).
    """
    found = problems(name, document, what=what)
    if found:
        raise ValidationError.of(found)
