"""DataCite metadata (schema 4.x, REST API JSON attributes) from a bundle's annotations.

What goes where is described in annotations-spec/v1/doi.md §2. Nothing here talks to
a provider: the attributes are built, then checked against
``annotations-spec/v1/schemas/datacite-4.schema.json`` before any request is made.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from jsonschema.exceptions import best_match

from ecr_oci import mediatypes as mt
from ecr_oci import spec
from ecr_oci.bundle.remote import RemoteBundle, platform_text
from ecr_oci.errors import ValidationError

SCHEMA = "datacite-4"
SCHEMA_VERSION = "http://datacite.org/schema/kernel-4"
RESOURCE_TYPE = "ECR edge code bundle (OCI image index)"
SPDX_LIST = "https://spdx.org/licenses/"
_AUTHOR_RE = re.compile(r"^\s*(?P<name>[^<>]*?)\s*(?:<(?P<email>[^<>]*)>)?\s*$")
_SPDX_TOKEN = re.compile(r"[A-Za-z0-9.+:-]+")
_SPDX_OPERATORS = {"AND", "OR", "WITH"}


def creators_from(authors: str) -> list[dict[str, Any]]:
    """DataCite creators from ``Name <email>, Name <email>`` (emails are not published).

    A name of two or more words is taken as a person: the last word is the family name
    and ``name`` becomes ``Family, Given`` as DataCite recommends.

    Raises:
        ValidationError: an entry has no name.
    """
    creators: list[dict[str, Any]] = []
    for entry in (part for part in authors.split(",") if part.strip()):
        match = _AUTHOR_RE.match(entry)
        name = match.group("name").strip() if match else ""
        if not name:
            raise ValidationError(f"author {entry.strip()!r} has no name", field=f"annotations: {mt.OCI_AUTHORS}")
        words = name.split()
        if len(words) >= 2:
            given, family = " ".join(words[:-1]), words[-1]
            creators.append({"name": f"{family}, {given}", "nameType": "Personal",
                             "givenName": given, "familyName": family})
        else:
            creators.append({"name": name})
    return creators


def rights_from(expression: str) -> list[dict[str, str]]:
    """One DataCite rights entry per license of an SPDX expression (exceptions skipped).

    ``LicenseRef-`` identifiers are not on the SPDX list: they get a ``rights`` text only.
    """
    rights: list[dict[str, str]] = []
    tokens = _SPDX_TOKEN.findall(expression)
    skip_next = False
    for token in tokens:
        if skip_next:
            skip_next = False
            continue
        if token.upper() in _SPDX_OPERATORS:
            skip_next = token.upper() == "WITH"
            continue
        if any(r["rights"] == token for r in rights):
            continue
        if token.startswith(("LicenseRef-", "DocumentRef-")):
            rights.append({"rights": token})
            continue
        rights.append({
            "rights": token,
            "rightsUri": f"{SPDX_LIST}{token}.html",
            "rightsIdentifier": token.lower(),
            "rightsIdentifierScheme": "SPDX",
            "schemeUri": SPDX_LIST,
        })
    return rights


def publication_year(created: str | None, now: datetime | None = None) -> int:
    """The year of ``created`` (RFC 3339) when given, else the current UTC year."""
    if created and re.match(r"^[0-9]{4}-", created):
        return int(created[:4])
    return (now or datetime.now(UTC)).year


def manifest_url(registry_url: str, repository: str, digest: str) -> str:
    """The distribution-API URL that serves exactly the bundle index bytes."""
    return f"{registry_url.rstrip('/')}/v2/{repository}/manifests/{digest}"


def _required(annotations: dict[str, str], key: str, what: str, why: str) -> str:
    value = (annotations.get(key) or "").strip()
    if not value:
        raise ValidationError(f"cannot mint a DOI: the bundle has no {what} ({key}); {why}")
    return value


def build_attributes(
    bundle: RemoteBundle,
    *,
    registry_url: str,
    landing_url: str,
    publisher: str,
    prefix: str,
    doi: str | None = None,
    draft: bool = False,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The ``data.attributes`` of a DataCite ``POST /dois`` for ``bundle``.

    Args:
        bundle: the bundle index as fetched (its annotations are the source).
        registry_url: ``http(s)://host[:port]`` of the registry holding it.
        landing_url: the URL the DOI resolves to.
        publisher: DataCite ``publisher``.
        prefix: DOI prefix; DataCite generates the suffix unless ``doi`` is given.
        doi: a full DOI to register (one reserved earlier), under ``prefix``.
        draft: leave the DOI in draft state (no ``event``); else ``event: publish``.
        now: clock for the publication year when the bundle has no ``created``.

    Raises:
        ValidationError: a property DataCite or ECR requires is missing (no authors,
            no license, no title) or ``doi`` is not under ``prefix``.
    """
    notes = bundle.annotations
    creators = creators_from(_required(notes, mt.OCI_AUTHORS, "authors", "DataCite requires creators"))
    license_expression = _required(notes, mt.OCI_LICENSES, "license",
                                   "an ECR DOI record must state the rights (SPDX license)")
    title = (notes.get(mt.OCI_TITLE) or notes.get(mt.ECR_NAME) or "").strip()
    if not title:
        raise ValidationError(f"cannot mint a DOI: the bundle has no title ({mt.OCI_TITLE}); DataCite requires one")
    reference = bundle.reference
    attributes: dict[str, Any] = {
        "prefix": prefix,
        "creators": creators,
        "titles": [{"title": title}],
        "publisher": publisher,
        "publicationYear": publication_year(notes.get(mt.OCI_CREATED), now),
        "types": {"resourceTypeGeneral": "Software", "resourceType": RESOURCE_TYPE},
        "rightsList": rights_from(license_expression),
        "formats": [mt.OCI_INDEX],
        "url": landing_url,
        "schemaVersion": SCHEMA_VERSION,
    }
    if doi:
        if not doi.lower().startswith(prefix.lower() + "/"):
            raise ValidationError(f"cannot mint a DOI: {doi} is not under prefix {prefix}")
        attributes["doi"] = doi
    if not draft:
        attributes["event"] = "publish"
    if version := notes.get(mt.OCI_VERSION):
        attributes["version"] = version
    descriptions = []
    if text := notes.get(mt.OCI_DESCRIPTION):
        descriptions.append({"description": text, "descriptionType": "Abstract"})
    platforms = ", ".join(platform_text(e["platform"]) for e in bundle.images()) or "none"
    descriptions.append({
        "description": f"ECR bundle {reference.repo_path}@{bundle.digest} (OCI image index; platforms: {platforms}).",
        "descriptionType": "TechnicalInfo",
    })
    if science := notes.get(mt.ECR_SCIENCE):
        descriptions.append({"description": science, "descriptionType": "Other"})
    attributes["descriptions"] = descriptions
    if keywords := notes.get(mt.ECR_KEYWORDS):
        attributes["subjects"] = [{"subject": k.strip()} for k in keywords.split(",") if k.strip()]
    if created := notes.get(mt.OCI_CREATED):
        attributes["dates"] = [{"date": created, "dateType": "Created"}]
    related = [{
        "relatedIdentifier": manifest_url(registry_url, reference.repository, bundle.digest),
        "relatedIdentifierType": "URL",
        "relationType": "IsIdenticalTo",
        "resourceTypeGeneral": "Software",
    }]
    if source := notes.get(mt.OCI_SOURCE):
        related.append({"relatedIdentifier": source, "relatedIdentifierType": "URL", "relationType": "IsDerivedFrom"})
    if documentation := notes.get(mt.OCI_DOCUMENTATION):
        related.append({"relatedIdentifier": documentation, "relatedIdentifierType": "URL",
                        "relationType": "IsDocumentedBy"})
    if (reserved := notes.get(mt.ECR_DOI)) and reserved.lower() != (doi or "").lower():
        related.append({"relatedIdentifier": reserved, "relatedIdentifierType": "DOI", "relationType": "IsIdenticalTo"})
    attributes["relatedIdentifiers"] = related
    return attributes


def validate_attributes(attributes: dict[str, Any]) -> None:
    """Check attributes against the DataCite schema, always with findable-DOI rules.

    A draft is checked as if it were published, so a draft never needs fixing later.

    Raises:
        ValidationError: naming the first failing property.
    """
    document = {**attributes, "event": "publish"}
    error = best_match(spec.validator(SCHEMA).iter_errors(document))
    if error is not None:
        field, message = spec.describe(error)
        raise ValidationError(f"cannot mint a DOI: DataCite metadata invalid: {field}: {message}")
