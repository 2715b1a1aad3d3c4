"""A connection that ends mid-request is a fact to log in one line, not an error.

A client that goes away (Ctrl-C, a dropped link): without this, Starlette's
``ClientDisconnect`` raised while a request body is being streamed to the registry
reaches uvicorn, which logs a 60-line traceback per interrupted upload.

A registry that goes away while an answer streams from it through the gateway (a
fronted registry restarted or killed): the status and headers are already sent, so the
only honest answer left is to close the client's connection short, as the registry's
own would have been closed. The stream raises :class:`UpstreamBroke` after logging
what broke; this middleware ends the request there (uvicorn then closes the connection
and notes, in one line, that the response was not completed).
"""

from __future__ import annotations

import logging

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("ecr.gateway")


class UpstreamBroke(Exception):
    """The registry's answer broke off after the gateway began relaying it (already logged)."""


class ClientDisconnects:
    """ASGI middleware: a client disconnect, or a registry's answer broken off mid-stream,
    is one log line instead of a traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            if scope["type"] == "http":
                client = scope.get("client") or ("?", 0)
                log.info("client %s:%s disconnected during %s %s", client[0], client[1], scope.get("method"),
                         scope.get("path"))
        except UpstreamBroke:
            return
