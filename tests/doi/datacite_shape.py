"""DataCite's documented request shape, written by hand from DataCite's REST API guide and
the DataCite Metadata Schema 4.x documentation, never from this project's schema file.

The fake API refuses what this check finds, so the client's requests are held to what
DataCite documents rather than to what the project itself wrote down.
"""

from __future__ import annotations

import re
from typing import Any

# DataCite Metadata Schema 4.5, appendix 1, table 1: resourceTypeGeneral.
RESOURCE_TYPE_GENERAL = frozenset({
    "Audiovisual", "Book", "BookChapter", "Collection", "ComputationalNotebook", "ConferencePaper",
    "ConferenceProceeding", "DataPaper", "Dataset", "Dissertation", "Event", "Image", "Instrument",
    "InteractiveResource", "Journal", "JournalArticle", "Model", "OutputManagementPlan", "PeerReview",
    "PhysicalObject", "Preprint", "Report", "Service", "Software", "Sound", "Standard", "StudyRegistration",
    "Text", "Workflow", "Other",
})
# Table 2: nameType; table 4: descriptionType; table 5: dateType.
NAME_TYPE = frozenset({"Organizational", "Personal"})
DESCRIPTION_TYPE = frozenset({"Abstract", "Methods", "SeriesInformation", "TableOfContents", "TechnicalInfo", "Other"})
DATE_TYPE = frozenset({"Accepted", "Available", "Copyrighted", "Collected", "Coverage", "Created", "Issued",
                       "Submitted", "Updated", "Valid", "Withdrawn", "Other"})
# Table 6: relatedIdentifierType; table 7: relationType.
RELATED_IDENTIFIER_TYPE = frozenset({"ARK", "arXiv", "bibcode", "CSTR", "DOI", "EAN13", "EISSN", "Handle", "IGSN",
                                     "ISBN", "ISSN", "ISTC", "LISSN", "LSID", "PMID", "PURL", "RRID", "UPC", "URL",
                                     "URN", "w3id"})
RELATION_TYPE = frozenset({
    "IsCitedBy", "Cites", "IsSupplementTo", "IsSupplementedBy", "IsContinuedBy", "Continues", "IsDescribedBy",
    "Describes", "HasMetadata", "IsMetadataFor", "HasVersion", "IsVersionOf", "IsNewVersionOf",
    "IsPreviousVersionOf", "IsPartOf", "HasPart", "IsPublishedIn", "IsReferencedBy", "References",
    "IsDocumentedBy", "Documents", "IsCompiledBy", "Compiles", "IsVariantFormOf", "IsOriginalFormOf",
    "IsIdenticalTo", "IsReviewedBy", "Reviews", "IsDerivedFrom", "IsSourceOf", "IsRequiredBy", "Requires",
    "IsObsoletedBy", "Obsoletes", "IsCollectedBy", "Collects", "IsTranslationOf", "HasTranslation",
})
# The attributes of a DOI resource the REST API reference lists (request side).
KNOWN_ATTRIBUTES = frozenset({
    "doi", "prefix", "suffix", "event", "identifiers", "alternateIdentifiers", "creators", "titles", "publisher",
    "container", "publicationYear", "subjects", "contributors", "dates", "language", "types", "relatedIdentifiers",
    "relatedItems", "sizes", "formats", "version", "rightsList", "descriptions", "geoLocations", "fundingReferences",
    "url", "contentUrl", "schemaVersion", "xml", "landingPage",
})
EVENTS = frozenset({"publish", "register", "hide"})
MANDATORY = ("creators", "titles", "publisher", "publicationYear", "types", "url")


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _list_of_objects(attributes: dict[str, Any], key: str, problems: list[tuple[str, str]]) -> list[dict[str, Any]]:
    value = attributes.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        problems.append((key, "must be an array of objects"))
        return []
    return value


def shape_problems(attributes: dict[str, Any]) -> list[tuple[str, str]]:
    """(attribute, problem) for everything DataCite would refuse in these attributes."""
    problems: list[tuple[str, str]] = []
    for key in sorted(set(attributes) - KNOWN_ATTRIBUTES):
        problems.append((key, "is not a DataCite attribute"))
    event = attributes.get("event")
    if event is not None and event not in EVENTS:
        problems.append(("event", f"must be one of {sorted(EVENTS)}"))
    if event in ("publish", "register"):
        problems += [(key, "can't be blank") for key in MANDATORY if not attributes.get(key)]
    for i, creator in enumerate(_list_of_objects(attributes, "creators", problems)):
        if not _is_text(creator.get("name")):
            problems.append((f"creators[{i}].name", "can't be blank"))
        if "nameType" in creator and creator["nameType"] not in NAME_TYPE:
            problems.append((f"creators[{i}].nameType", "is not a nameType"))
    for i, title in enumerate(_list_of_objects(attributes, "titles", problems)):
        if not _is_text(title.get("title")):
            problems.append((f"titles[{i}].title", "can't be blank"))
    publisher = attributes.get("publisher")
    if publisher is not None and not (_is_text(publisher) or (isinstance(publisher, dict)
                                                               and _is_text(publisher.get("name")))):
        problems.append(("publisher", "must be a name or an object with a name"))
    year = attributes.get("publicationYear")
    if year is not None and not re.fullmatch(r"[0-9]{4}", str(year)):
        problems.append(("publicationYear", "must be a four-digit year"))
    types = attributes.get("types")
    if types is not None and (not isinstance(types, dict) or types.get("resourceTypeGeneral")
                              not in RESOURCE_TYPE_GENERAL):
        problems.append(("types.resourceTypeGeneral", "is not a resourceTypeGeneral"))
    url = attributes.get("url")
    if url is not None and not (isinstance(url, str) and re.match(r"https?://[^/\s]+", url)):
        problems.append(("url", "must be an http(s) URL"))
    for i, description in enumerate(_list_of_objects(attributes, "descriptions", problems)):
        if description.get("descriptionType") not in DESCRIPTION_TYPE:
            problems.append((f"descriptions[{i}].descriptionType", "is not a descriptionType"))
        if not _is_text(description.get("description")):
            problems.append((f"descriptions[{i}].description", "can't be blank"))
    for i, date in enumerate(_list_of_objects(attributes, "dates", problems)):
        if date.get("dateType") not in DATE_TYPE or not _is_text(date.get("date")):
            problems.append((f"dates[{i}]", "needs a date and a dateType"))
    for i, related in enumerate(_list_of_objects(attributes, "relatedIdentifiers", problems)):
        if related.get("relatedIdentifierType") not in RELATED_IDENTIFIER_TYPE:
            problems.append((f"relatedIdentifiers[{i}].relatedIdentifierType", "is not a relatedIdentifierType"))
        if related.get("relationType") not in RELATION_TYPE:
            problems.append((f"relatedIdentifiers[{i}].relationType", "is not a relationType"))
        if not _is_text(related.get("relatedIdentifier")):
            problems.append((f"relatedIdentifiers[{i}].relatedIdentifier", "can't be blank"))
    for i, subject in enumerate(_list_of_objects(attributes, "subjects", problems)):
        if not _is_text(subject.get("subject")):
            problems.append((f"subjects[{i}].subject", "can't be blank"))
    for i, rights in enumerate(_list_of_objects(attributes, "rightsList", problems)):
        if not (_is_text(rights.get("rights")) or _is_text(rights.get("rightsUri"))):
            problems.append((f"rightsList[{i}]", "needs rights or a rightsUri"))
    formats = attributes.get("formats")
    if formats is not None and not (isinstance(formats, list) and all(_is_text(f) for f in formats)):
        problems.append(("formats", "must be an array of strings"))
    return problems
