"""DataCite REST API provider (JSON:API).

Requests follow DataCite's "Creating DOIs with the REST API" guide: ``POST
{endpoint}/dois`` with ``Content-Type: application/vnd.api+json``, HTTP Basic auth
with the repository id and password, body ``{"data": {"type": "dois", "attributes":
{...}}}``; ``"event": "publish"`` makes the DOI findable, no event leaves a draft.
Updates are ``PUT {endpoint}/dois/{doi}``. The test system is
``https://api.test.datacite.org``; production is ``https://api.datacite.org``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests

from ecr_oci.doi.config import DATACITE_TEST_ENDPOINT
from ecr_oci.doi.errors import DoiProviderError
from ecr_oci.doi.provider import Registration
from ecr_oci.errors import AuthError

JSON_API = "application/vnd.api+json"
TIMEOUT = (10, 60)


def _errors_text(resp: requests.Response) -> str:
    """JSON:API ``errors`` as one line (``source: title; ...``), else the HTTP status."""
    try:
        errors = resp.json().get("errors") or []
    except (ValueError, AttributeError):
        errors = []
    parts = []
    for error in errors if isinstance(errors, list) else []:
        if not isinstance(error, dict):
            continue
        title = str(error.get("title") or error.get("detail") or "").strip()
        source = error.get("source")
        if isinstance(source, dict):
            source = source.get("pointer") or source.get("parameter")
        parts.append(f"{source}: {title}" if source else title)
    return "; ".join(p for p in parts if p) or f"HTTP {resp.status_code} {resp.reason}"


class DataCiteProvider:
    """Registers DOIs through the DataCite REST API.

    Args:
        endpoint: API base URL (``https://api.datacite.org`` or the test API).
        user: DataCite repository id (e.g. ``ORG.REPO``).
        password: the repository password.
        test: the endpoint is a test system (``--test``; also assumed for DataCite's test API).
        session: an HTTP session to reuse (tests inject one).
    """

    name = "datacite"

    def __init__(self, endpoint: str, user: str, password: str, *, test: bool = False,
                 session: requests.Session | None = None) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._test = test
        self.user = user
        self._password = password
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = "ecr-oci/0.1 (doi)"

    @property
    def test(self) -> bool:
        return self._test or self.endpoint == DATACITE_TEST_ENDPOINT or ".test." in self.endpoint

    def register(self, attributes: dict[str, Any]) -> Registration:
        """``PUT /dois/{doi}`` when ``attributes`` names a DOI (a reserved one), else ``POST /dois``.

        Raises:
            AuthError: 401/403 from DataCite.
            DoiProviderError: any other refusal (422 carries DataCite's reasons) or no answer.
        """
        doi = attributes.get("doi")
        if doi:
            return self.update(str(doi), attributes)
        body = {"data": {"type": "dois", "attributes": attributes}}
        return self._send("POST", f"{self.endpoint}/dois", body, expect=(201,))

    def update(self, doi: str, attributes: dict[str, Any]) -> Registration:
        """``PUT /dois/{doi}`` with the new attributes.

        Raises:
            AuthError: 401/403 from DataCite.
            DoiProviderError: no such DOI, a refusal, or no answer.
        """
        body = {"data": {"id": doi, "type": "dois", "attributes": {**attributes, "doi": doi}}}
        return self._send("PUT", f"{self.endpoint}/dois/{quote(doi, safe='/')}", body, expect=(200, 201))

    def _send(self, method: str, url: str, body: dict[str, Any], *, expect: tuple[int, ...]) -> Registration:
        try:
            resp = self.session.request(
                method, url, json=body, auth=(self.user, self._password), timeout=TIMEOUT,
                headers={"Content-Type": JSON_API, "Accept": JSON_API},
            )
        except requests.RequestException as exc:
            raise DoiProviderError(f"cannot reach DataCite at {self.endpoint}: {exc.__class__.__name__}") from None
        if resp.status_code in (401, 403):
            raise AuthError(
                f"DataCite at {self.endpoint} refused the credentials of repository {self.user}: {_errors_text(resp)}",
                status=resp.status_code,
            )
        if resp.status_code not in expect:
            raise DoiProviderError(
                f"DataCite refused the DOI ({method} {url.removeprefix(self.endpoint)} -> {resp.status_code}): "
                f"{_errors_text(resp)}",
                status=resp.status_code,
            )
        try:
            data = resp.json()["data"]
            attrs = data.get("attributes") or {}
            doi = str(attrs.get("doi") or data["id"])
        except (ValueError, KeyError, TypeError, AttributeError):
            raise DoiProviderError(f"DataCite answered {resp.status_code} without a DOI in a JSON:API body") from None
        sent = body["data"]["attributes"]
        return Registration(
            doi=doi,
            url=str(attrs.get("url") or sent.get("url") or ""),
            state=str(attrs.get("state") or ("findable" if sent.get("event") == "publish" else "draft")),
            provider=self.name,
            endpoint=self.endpoint,
            test=self.test,
        )
