"""Assembling and running the gateway (what ``ecr serve`` calls)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from ecr_oci.gateway.core import ISSUER, Gateway, GatewayConfig, oci_error
from ecr_oci.gateway.domain import bundle_index, feed, nodes
from ecr_oci.gateway.stores.state import StateUnavailable, Visibility
from ecr_oci.gateway.surfaces import accounts, api, web
from ecr_oci.gateway.surfaces.disconnects import ClientDisconnects
from ecr_oci.gateway.surfaces.registry import v2
from ecr_oci.gateway.surfaces.token_endpoint import token_endpoint
from ecr_oci.gateway.tokens import SigningKey
from ecr_oci.gateway.upstream import EmbeddedRegistry
from ecr_oci.profile import PrometheusClient
from ecr_oci.profile.collector import CatalogLocator, Collector

_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
log = logging.getLogger("ecr.gateway")


async def _metrics(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    return Response(gateway.metrics.render(), media_type=gateway.metrics.content_type)


async def _health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _state_unavailable(request: Request, exc: Exception) -> Response:
    """503 while the state store is down (one log line each), in the error format of the surface asked."""
    log.warning("%s %s: %s", request.method, request.url.path[:200], exc)
    message = "the gateway's state store is unavailable: retry later"
    path = request.url.path
    if path.startswith("/v2"):
        return oci_error(503, "UNAVAILABLE", message, headers={"Retry-After": "1"})
    if path.startswith(("/api/", "/auth/")):
        return JSONResponse({"error": message}, status_code=503, headers={"Retry-After": "1"})
    page = ("<!doctype html><meta charset=utf-8><title>Unavailable</title>"
            "<h1>Unavailable for a moment</h1><p>The catalog cannot be read right now. Retry shortly.</p>")
    return HTMLResponse(page, status_code=503, headers={"Retry-After": "5"})


def create_app(gateway: Gateway) -> Starlette:
    """The ASGI application serving ``/v2``, ``/auth/token``, ``/api/v1``, ``/metrics`` and the web pages."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await bundle_index.ensure_built(gateway)
        log.info("ECR gateway serving on %s (registry %s, data %s)", gateway.config.public_url
                 or f"http://{gateway.config.self_host}", gateway.config.registry_url, gateway.config.data_dir)
        yield
        await gateway.close()

    app = Starlette(
        routes=[
            Route("/v2", v2, methods=_METHODS),
            Route("/v2/{rest:path}", v2, methods=_METHODS),
            Route("/auth/token", token_endpoint, methods=["GET", "POST"]),
            Route("/metrics", _metrics),
            Route("/healthz", _health),
            *api.routes,
            *accounts.routes,  # account lifecycle, repository facts
            *nodes.routes,
            *feed.routes,
            *web.routes,
        ],
        lifespan=lifespan,
        exception_handlers={StateUnavailable: _state_unavailable},
        middleware=[Middleware(ClientDisconnects)],
    )
    app.state.gateway = gateway
    return app


def serve(
    data_dir: Path,
    listen: str,
    *,
    registry_url: str | None = None,
    default_visibility: Visibility = "public",
    public_url: str | None = None,
    collect_prometheus: str | None = None,
    collect_interval: float = 300.0,
    state_url: str | None = None,
    trusted_proxies: frozenset[str] = frozenset(),
) -> None:
    """Run the gateway until interrupted (and the embedded registry with it).

    Args:
        data_dir: state, keys, audit log, and the embedded registry's storage.
        listen: ``HOST:PORT`` to listen on.
        registry_url: front this registry instead of spawning one. It must trust
            ``<data-dir>/keys/upstream-cert.pem`` (service ``ecr-registry``, issuer
            ``ecr-gateway``) or accept anonymous requests on a private network.
        default_visibility: visibility of repositories created by a first push.
        public_url: the address clients use (for the registry's own challenge realm).
        collect_prometheus: a Prometheus to collect node profiles from, every
            ``collect_interval`` seconds (windows aligned to it), as ``ecr-system``.
        state_url: the state store (``postgresql://...`` to share it between gateways);
            None: SQLite in ``data_dir``.
        trusted_proxies: reverse proxies whose ``X-Forwarded-*`` headers are believed.

    Raises:
        RuntimeError: the embedded registry cannot start, or the state store cannot be opened.
    """
    host, _, port = listen.rpartition(":")
    # Everything the gateway and its registry create (state, audit log, keys, blobs) is
    # the service account's alone.
    os.umask(0o077)
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    embedded: EmbeddedRegistry | None = None
    collector: Collector | None = None
    if registry_url is None:
        upstream_key = SigningKey(data_dir / "keys", "upstream")
        realm = f"{public_url or 'http://' + listen}/auth/token"
        embedded = EmbeddedRegistry(data_dir, issuer=ISSUER, cert_path=upstream_key.cert_path, realm=realm)
        embedded.start()
        embedded.supervise()
        registry_url = embedded.url
    try:
        gateway = Gateway(GatewayConfig(data_dir=data_dir, registry_url=registry_url,
                                        default_visibility=default_visibility, public_url=public_url,
                                        storage_dir=embedded.storage if embedded else None,
                                        self_host=f"{host or '127.0.0.1'}:{port}", state_url=state_url,
                                        trusted_proxies=trusted_proxies))
        if where := gateway.bootstrap_admin():
            log.warning("created user 'admin' (password: %s)", where)
        config = uvicorn.Config(
            create_app(gateway),
            host=host or "127.0.0.1",
            port=int(port),
            proxy_headers=False,  # forwarded headers are read by the gateway, from trusted proxies only
            log_level="warning",
            access_log=False,
            # uvicorn's 5 s default closes idle keep-alive connections while clients (a node
            # busy on a large blob) are about to reuse them: "server disconnected without a
            # response". Distribution never closes them; 75 s is nginx's default.
            timeout_keep_alive=75,
        )
        collector = _collector(gateway, collect_prometheus, collect_interval) if collect_prometheus else None
        if collector:
            collector.start()
        # uvicorn turns SIGTERM/SIGINT into a graceful shutdown; the registry stops after.
        uvicorn.Server(config).run()
    finally:
        if collector:
            collector.stop()
        if embedded is not None:
            embedded.stop()


def _collector(gateway: Gateway, prometheus: str, interval: float) -> Collector:
    """The background profile collector, writing through this gateway as ``ecr-system``."""
    assert gateway.system is not None
    client = gateway.system.client()
    log.info("collecting profiles from %s every %.0fs", prometheus, interval)
    return Collector(PrometheusClient(prometheus), client, CatalogLocator(client),
                     interval=timedelta(seconds=interval))
