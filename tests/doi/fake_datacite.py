"""A local stand-in for the DataCite REST API that enforces its documented request shape.

Written from DataCite's "Creating DOIs with the REST API" guide, independent of the
project's code: ``POST /dois`` (and ``PUT /dois/{doi}``) only, ``Content-Type:
application/vnd.api+json``, HTTP Basic auth with the repository id and password
(401 otherwise), a JSON:API body whose ``data.type`` is ``dois``, attributes of the
shape DataCite documents (:mod:`tests.doi.datacite_shape`, written by hand from
DataCite's documentation, not from this project's schema file) with the mandatory
properties of a findable DOI, a prefix the repository owns (422 with JSON:API
``errors`` otherwise).
Answers 201 with the DOI as DataCite does. Every request is kept in ``requests``.
A test can queue ``refusals`` (status, content type, body): each answers the next
request as given, for the refusals DataCite documents that these rules cannot
provoke (a DOI already taken, 403 for a repository without the permission, 5xx).
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.doi.datacite_shape import shape_problems

JSON_API = "application/vnd.api+json"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 0

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeDataCite:
    """The fake API; ``url`` is its base URL once started."""

    user: str = "ECR.TEST"
    password: str = "secret"
    prefix: str = "10.5072"
    requests: list[Seen] = field(default_factory=list)
    dois: dict[str, dict[str, Any]] = field(default_factory=dict)
    refusals: list[tuple[int, str, str]] = field(default_factory=list)
    url: str = ""
    _server: ThreadingHTTPServer | None = None

    def start(self) -> FakeDataCite:
        fake = self
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _answer(self, seen: Seen, status: int, document: dict[str, Any]) -> None:
                seen.status = status
                data = json.dumps(document).encode()
                self.send_response(status)
                self.send_header("Content-Type", JSON_API)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, seen: Seen, status: int, title: str, source: str | None = None) -> None:
                error: dict[str, Any] = {"status": str(status), "title": title}
                if source:
                    error["source"] = source
                self._answer(seen, status, {"errors": [error]})

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                seen = Seen(self.command, self.path, dict(self.headers.items()), self.rfile.read(length))
                fake.requests.append(seen)
                if fake.refusals:
                    status, content_type, text = fake.refusals.pop(0)
                    seen.status = status
                    data = text.encode()
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                put_doi = self.path[len("/dois/"):] if self.path.startswith("/dois/") else None
                if not ((self.command == "POST" and self.path == "/dois") or (self.command == "PUT" and put_doi)):
                    self._error(seen, 404, "The resource you are looking for doesn't exist.")
                    return
                expected = "Basic " + base64.b64encode(f"{fake.user}:{fake.password}".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    self._error(seen, 401, "Bad credentials.")
                    return
                if (self.headers.get("Content-Type") or "").split(";")[0].strip() != JSON_API:
                    self._error(seen, 415, f"Content-Type must be {JSON_API}")
                    return
                try:
                    body = json.loads(seen.body)
                    data = body["data"]
                    attributes = data["attributes"]
                except (ValueError, KeyError, TypeError):
                    self._error(seen, 400, "You need to provide a payload following the JSONAPI spec")
                    return
                if data.get("type") != "dois" or not isinstance(attributes, dict):
                    self._error(seen, 422, "Type must be dois", "type")
                    return
                problems = shape_problems(attributes)
                doi = put_doi or attributes.get("doi")
                prefix = doi.split("/", 1)[0] if doi else attributes.get("prefix")
                if prefix != fake.prefix:
                    problems.append(("prefix", f"prefix {prefix} is not associated with repository {fake.user}"))
                if problems:
                    errors = [{"status": "422", "source": s, "title": t} for s, t in problems]
                    seen.status = 422
                    self._answer(seen, 422, {"errors": errors})
                    return
                doi = (doi or f"{prefix}/{secrets.token_hex(4)}-{secrets.token_hex(2)}").lower()
                state = "findable" if attributes.get("event") == "publish" else \
                    "registered" if attributes.get("event") == "register" else "draft"
                stored = {k: v for k, v in attributes.items() if k != "event"}
                stored |= {"doi": doi, "prefix": prefix, "suffix": doi.split("/", 1)[1], "state": state}
                existed = doi in fake.dois
                fake.dois[doi] = stored
                status = 200 if (put_doi and existed) else 201
                self._answer(seen, status, {"data": {"id": doi, "type": "dois", "attributes": stored}})

            def do_POST(self) -> None:
                self._handle()

            def do_PUT(self) -> None:
                self._handle()

            def do_GET(self) -> None:
                self._handle()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def registrations(self) -> list[Seen]:
        return [s for s in self.requests if s.status in (200, 201)]
