"""EZID provider: DataCite XML (kernel 4) in an ANVL body, as the Sage ``sage-doi`` tool did.

EZID API (https://ezid.cdlib.org/doc/apidoc.html): HTTP Basic auth; ``POST
/shoulder/doi:{shoulder}`` mints a new identifier on a shoulder (``10.5072/FK2`` is
the test shoulder); ``POST /id/doi:{doi}`` updates one. The body is ANVL
(``name: value`` lines, ``%``, CR and LF percent-encoded), ``Content-Type:
text/plain; charset=UTF-8``; answers are ``success: doi:... | ark:/...`` or
``error: reason``. Metadata: ``_profile: datacite``, ``datacite: <XML record>``,
``_target: <landing URL>``, ``_status: public | reserved``.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import quote

import requests

from ecr_oci.doi.errors import DoiProviderError
from ecr_oci.doi.provider import Registration
from ecr_oci.errors import AuthError

KERNEL4 = "http://datacite.org/schema/kernel-4"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
SCHEMA_LOCATION = f"{KERNEL4} http://schema.datacite.org/meta/kernel-4/metadata.xsd"
ANVL = "text/plain; charset=UTF-8"
TBA = "(:tba)"  # EZID replaces this identifier placeholder with the minted DOI
TIMEOUT = (10, 60)
_SUCCESS = re.compile(r"^success:\s*doi:(\S+)", re.MULTILINE)


def anvl_escape(text: str) -> str:
    """Percent-encode what ANVL reserves in values: ``%``, CR, LF."""
    return text.replace("%", "%25").replace("\n", "%0A").replace("\r", "%0D")


def anvl(pairs: dict[str, str]) -> bytes:
    """An ANVL document (names also escape ``:``)."""
    lines = [f"{anvl_escape(k).replace(':', '%3A')}: {anvl_escape(v)}" for k, v in pairs.items()]
    return "\n".join(lines).encode()


def _add(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, f"{{{KERNEL4}}}{tag}", {k: v for k, v in attrs.items() if v})
    if text is not None:
        element.text = text
    return element


def datacite_xml(attributes: dict[str, Any], doi: str | None = None) -> str:
    """DataCite XML (kernel 4) for REST API JSON attributes.

    Args:
        attributes: the JSON attributes (as built by :mod:`ecr_oci.doi.metadata`).
        doi: the identifier; the EZID placeholder ``(:tba)`` when minting.
    """
    ET.register_namespace("", KERNEL4)
    ET.register_namespace("xsi", XSI)
    root = ET.Element(f"{{{KERNEL4}}}resource", {f"{{{XSI}}}schemaLocation": SCHEMA_LOCATION})
    _add(root, "identifier", doi or attributes.get("doi") or TBA, identifierType="DOI")
    creators = _add(root, "creators")
    for c in attributes.get("creators") or []:
        creator = _add(creators, "creator")
        _add(creator, "creatorName", c["name"], nameType=c.get("nameType", ""))
        for key in ("givenName", "familyName"):
            if c.get(key):
                _add(creator, key, c[key])
    titles = _add(root, "titles")
    for t in attributes.get("titles") or []:
        _add(titles, "title", t["title"], titleType=t.get("titleType", ""))
    publisher = attributes.get("publisher")
    _add(root, "publisher", publisher["name"] if isinstance(publisher, dict) else str(publisher or ""))
    _add(root, "publicationYear", str(attributes.get("publicationYear", "")))
    types = attributes.get("types") or {}
    _add(root, "resourceType", types.get("resourceType", ""), resourceTypeGeneral=types.get("resourceTypeGeneral", ""))
    if attributes.get("subjects"):
        subjects = _add(root, "subjects")
        for s in attributes["subjects"]:
            _add(subjects, "subject", s["subject"], subjectScheme=s.get("subjectScheme", ""))
    if attributes.get("dates"):
        dates = _add(root, "dates")
        for d in attributes["dates"]:
            _add(dates, "date", d["date"], dateType=d["dateType"])
    if attributes.get("relatedIdentifiers"):
        related = _add(root, "relatedIdentifiers")
        for r in attributes["relatedIdentifiers"]:
            _add(related, "relatedIdentifier", r["relatedIdentifier"], relatedIdentifierType=r["relatedIdentifierType"],
                 relationType=r["relationType"], resourceTypeGeneral=r.get("resourceTypeGeneral", ""))
    if attributes.get("formats"):
        formats = _add(root, "formats")
        for f in attributes["formats"]:
            _add(formats, "format", f)
    if attributes.get("version"):
        _add(root, "version", attributes["version"])
    if attributes.get("rightsList"):
        rights = _add(root, "rightsList")
        for r in attributes["rightsList"]:
            _add(rights, "rights", r.get("rights", ""), rightsURI=r.get("rightsUri", ""),
                 rightsIdentifier=r.get("rightsIdentifier", ""),
                 rightsIdentifierScheme=r.get("rightsIdentifierScheme", ""), schemeURI=r.get("schemeUri", ""))
    if attributes.get("descriptions"):
        descriptions = _add(root, "descriptions")
        for d in attributes["descriptions"]:
            _add(descriptions, "description", d["description"], descriptionType=d["descriptionType"])
    return ET.tostring(root, encoding="unicode")


class EzidProvider:
    """Registers DOIs through EZID.

    Args:
        endpoint: EZID base URL (``https://ezid.cdlib.org``).
        user: EZID account.
        password: its password.
        shoulder: ``10.NNNN/SHOULDER`` new DOIs are minted on (``10.5072/FK2`` for tests).
        test: the endpoint is a test system (``--test``; also assumed for the test shoulder).
    """

    name = "ezid"

    def __init__(self, endpoint: str, user: str, password: str, *, shoulder: str, test: bool = False,
                 session: requests.Session | None = None) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._test = test
        self.user = user
        self._password = password
        self.shoulder = shoulder
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = "ecr-oci/0.1 (doi)"

    @property
    def test(self) -> bool:
        return self._test or self.shoulder.upper().startswith("10.5072/FK")

    def _body(self, attributes: dict[str, Any], doi: str | None) -> bytes:
        return anvl({
            "_profile": "datacite",
            "_target": str(attributes.get("url", "")),
            "_status": "public" if attributes.get("event") in ("publish", "register") else "reserved",
            "datacite": datacite_xml(attributes, doi),
        })

    def register(self, attributes: dict[str, Any]) -> Registration:
        """Mint on the shoulder, or update the reserved DOI ``attributes["doi"]``.

        Raises:
            AuthError: EZID answered 401/403.
            DoiProviderError: EZID refused or failed.
        """
        if attributes.get("doi"):
            return self.update(str(attributes["doi"]), attributes)
        return self._send("POST", f"/shoulder/doi:{quote(self.shoulder, safe='/')}",
                          self._body(attributes, None), attributes)

    def update(self, doi: str, attributes: dict[str, Any]) -> Registration:
        """Replace the metadata, target and status of ``doi``.

        Raises:
            AuthError: EZID answered 401/403.
            DoiProviderError: EZID refused or failed.
        """
        return self._send("POST", f"/id/doi:{quote(doi, safe='/')}", self._body(attributes, doi), attributes)

    def _send(self, method: str, path: str, body: bytes, attributes: dict[str, Any]) -> Registration:
        try:
            resp = self.session.request(method, self.endpoint + path, data=body, auth=(self.user, self._password),
                                        headers={"Content-Type": ANVL, "Accept": "text/plain"}, timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise DoiProviderError(f"cannot reach EZID at {self.endpoint}: {exc.__class__.__name__}") from None
        text = resp.text.strip()
        if resp.status_code in (401, 403):
            raise AuthError(f"EZID at {self.endpoint} refused the credentials of {self.user}: {text[:200]}",
                            status=resp.status_code)
        match = _SUCCESS.search(text)
        if resp.status_code not in (200, 201) or not match:
            raise DoiProviderError(f"EZID refused the DOI ({method} {path} -> {resp.status_code}): {text[:300]}",
                                   status=resp.status_code)
        public = attributes.get("event") in ("publish", "register")
        return Registration(doi=match.group(1), url=str(attributes.get("url", "")),
                            state="findable" if public else "draft", provider=self.name,
                            endpoint=self.endpoint, test=self.test)
