"""``ecr serve``: run the gateway (and, by default, the registry behind it)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from ecr_oci.cli.common import fail


def serve(
    data_dir: Annotated[Path, typer.Option("--data-dir", help="State, keys, audit log, registry storage.")] = Path(
        "ecr-data"
    ),
    listen: Annotated[str, typer.Option("--listen", help="HOST:PORT to serve on.")] = "127.0.0.1:5000",
    registry_url: Annotated[
        str | None,
        typer.Option("--registry-url", help="Front an existing registry instead of spawning Distribution."),
    ] = None,
    default_visibility: Annotated[
        str, typer.Option("--default-visibility", help="Visibility of a repository created by its first push.")
    ] = "public",
    public_url: Annotated[
        str | None, typer.Option("--public-url", help="Address clients use (e.g. https://ecr.example.org).")
    ] = None,
    trusted_proxy: Annotated[
        list[str] | None,
        typer.Option("--trusted-proxy", help="Address of a reverse proxy whose X-Forwarded-* headers are"
                                             " believed (repeatable; e.g. 127.0.0.1 for nginx on this host)."),
    ] = None,
    collect_prometheus: Annotated[
        str | None,
        typer.Option("--collect-prometheus", envvar="ECR_COLLECT_PROMETHEUS",
                     help="Prometheus URL: attach node profiles automatically for bundles seen running there."),
    ] = None,
    collect_interval: Annotated[
        str, typer.Option("--collect-interval", help="Profile window and collection period (e.g. 5m).")
    ] = "5m",
    state_url: Annotated[
        str | None,
        typer.Option("--state-url", envvar="ECR_STATE_URL",
                     help="State store: postgresql://USER@HOST/DB shared by several gateways (password via"
                          " PGPASSWORD or ~/.pgpass), or sqlite:///PATH. Default: SQLite in DATA_DIR."),
    ] = None,
) -> None:
    """Serve the Edge Code Repository gateway (token auth, policy, manifest gate, referrers).

    The admin password is ECR_ADMIN_PASSWORD, else generated into DATA_DIR/admin-password.
    """
    from ecr_oci.cli.profile import parse_duration
    from ecr_oci.gateway import logsafe
    from ecr_oci.gateway.app import serve as run
    from ecr_oci.gateway.stores.state import STATE_URL_SCHEMES

    if default_visibility not in ("public", "protected", "private"):
        raise fail("--default-visibility must be public, protected or private", 2)
    if state_url and state_url.partition(":")[0].lower() not in STATE_URL_SCHEMES:
        raise fail("--state-url must be a postgresql://... or sqlite:///... URL", 2)
    logsafe.configure(logging.INFO)
    logging.getLogger("ecr.audit").setLevel(logging.WARNING)  # the audit file has them
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per upstream request otherwise
    try:
        run(data_dir, listen, registry_url=registry_url, default_visibility=default_visibility,  # type: ignore[arg-type]
            public_url=public_url, trusted_proxies=frozenset(trusted_proxy or ()),
            collect_prometheus=collect_prometheus,
            collect_interval=parse_duration(collect_interval), state_url=state_url or None)
    except RuntimeError as exc:
        raise fail(str(exc), 1) from None
