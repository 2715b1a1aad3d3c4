"""A client that goes away mid-request is normal (Ctrl-C, a dropped link): one log line.

Without this, Starlette's ``ClientDisconnect`` raised while a request body is being
streamed to the registry reaches uvicorn, which logs a 60-line traceback per
interrupted upload.
"""

from __future__ import annotations

import logging

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("ecr.gateway")


class ClientDisconnects:
    """ASGI middleware: log a client disconnect as one line instead of an error."""

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
