"""``ecr node-exporter``: CPU, memory, I/O and restarts of every running bundle container, for Prometheus."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import threading
from typing import Annotated

import typer

from ecr_oci.cli.common import err, fail, handle_errors


@handle_errors
def node_exporter(
    node: Annotated[str, typer.Option("--node", envvar="ECR_NODE", help="This node's id (label `node`).")],
    listen: Annotated[str, typer.Option("--listen", help="HOST:PORT to serve /metrics on.")] = "0.0.0.0:9101",
    feed: Annotated[str | None, typer.Option(
        "--feed", help="The deployment's feed URL: maps image digests to bundles (node credential from "
                       "ECR_USERNAME/ECR_PASSWORD).")] = None,
    engine: Annotated[list[str] | None, typer.Option(
        "--engine", help="Engine command line, e.g. 'podman --storage-driver vfs' (repeatable; default: podman "
                         "and docker, those installed).")] = None,
    refresh: Annotated[float, typer.Option("--refresh", help="Seconds between feed polls.")] = 60.0,
) -> None:
    """Export per-container metrics of running bundles (any plugin, instrumented or not)."""
    import shutil

    from prometheus_client import CollectorRegistry, start_http_server

    from ecr_oci.nodeexporter.bundles import BundleMap
    from ecr_oci.nodeexporter.exporter import NodeExporterCollector
    from ecr_oci.profile.convention import check_node

    check_node(node)
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise fail(f"--listen {listen!r}: want HOST:PORT", 2)
    engines = [shlex.split(e) for e in engine or []] or [[e] for e in ("podman", "docker") if shutil.which(e)]
    if not engines:
        raise fail("no container engine found (install podman or docker, or pass --engine)", 2)
    username, password = os.environ.get("ECR_USERNAME"), os.environ.get("ECR_PASSWORD")
    bundles = BundleMap(feed, (username, password) if username and password is not None else None, refresh)
    registry = CollectorRegistry()
    registry.register(NodeExporterCollector(node, engines, bundles))
    start_http_server(int(port), addr=host or "0.0.0.0", registry=registry)
    err.print(f"node-exporter for {node} on http://{host or '0.0.0.0'}:{port}/metrics "
              f"({', '.join(e[0] for e in engines)})")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
