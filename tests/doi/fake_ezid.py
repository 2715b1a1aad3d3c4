"""A local stand-in for EZID's API: ANVL bodies carrying DataCite XML, written from EZID's API docs.

A test can queue ``refusals`` (status, ``error: ...`` text): each answers the next request.
"""

from __future__ import annotations

import base64
import secrets
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

KERNEL4 = "{http://datacite.org/schema/kernel-4}"
REQUIRED = ("identifier", "creators/{ns}creator/{ns}creatorName", "titles/{ns}title", "publisher",
            "publicationYear", "resourceType")


def parse_anvl(text: str) -> dict[str, str]:
    pairs = {}
    for line in text.splitlines():
        if line.strip():
            name, _, value = line.partition(":")
            pairs[unquote(name.strip())] = unquote(value.strip())
    return pairs


@dataclass
class FakeEzid:
    user: str = "apitest"
    password: str = "apitest"
    shoulder: str = "10.5072/FK2"
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    ids: dict[str, dict[str, str]] = field(default_factory=dict)
    refusals: list[tuple[int, str]] = field(default_factory=list)
    url: str = ""
    _server: ThreadingHTTPServer | None = None

    def start(self) -> FakeEzid:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, status: int, text: str) -> None:
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                pairs = parse_anvl(body)
                fake.requests.append((self.command, self.path, pairs))
                if fake.refusals:
                    self._reply(*fake.refusals.pop(0))
                    return
                expected = "Basic " + base64.b64encode(f"{fake.user}:{fake.password}".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    self._reply(401, "error: unauthorized")
                    return
                if not (self.headers.get("Content-Type") or "").startswith("text/plain"):
                    self._reply(400, "error: bad request - unsupported content type")
                    return
                if pairs.get("_profile") != "datacite" or pairs.get("_status") not in ("public", "reserved"):
                    self._reply(400, "error: bad request - _profile/_status")
                    return
                try:
                    root = ET.fromstring(pairs["datacite"])
                except (KeyError, ET.ParseError):
                    self._reply(400, "error: bad request - datacite XML missing or malformed")
                    return
                missing = [p for p in REQUIRED if root.find(KERNEL4 + p.format(ns=KERNEL4)) is None]
                if root.tag != KERNEL4 + "resource" or missing:
                    self._reply(400, f"error: bad request - element 'resource' missing {missing}")
                    return
                if self.path == f"/shoulder/doi:{fake.shoulder}":
                    doi = f"{fake.shoulder}{secrets.token_hex(3).upper()}"
                elif self.path.startswith("/id/doi:") and self.path[8:] in fake.ids:
                    doi = self.path[8:]
                else:
                    self._reply(400, "error: bad request - no such identifier or shoulder")
                    return
                fake.ids[doi] = pairs
                self._reply(201 if self.path.startswith("/shoulder/") else 200,
                            f"success: doi:{doi} | ark:/b5072/{doi.split('/', 1)[1].lower()}")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
