"""The ``ecr`` command line: every command group, assembled into one typer app.

Each command lives in a module of its own libraries (requests, cryptography,
prometheus_client, the gateway's web stack, ...); importing them all costs more than
most commands take to run. ``COMMANDS`` says which module holds each command, so
``app_for(["inspect", REF])`` builds an app holding only ``inspect`` and imports only
``ecr_oci.cli.bundle``; ``--help``, no arguments or an unknown command get the full
app (``app``), whose help and "No such command ... Did you mean" answer list them all.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from typing import Any

import typer

from ecr_oci import __version__
from ecr_oci.cli.common import EXIT_CODES_HELP

# Command name -> (module in ecr_oci.cli, attribute): a command function or a typer group.
# The order is the order of ``ecr --help`` (typer lists commands, then groups).
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("bundle", "validate"),
    "push": ("bundle", "push"),
    "pull": ("bundle", "pull"),
    "inspect": ("bundle", "inspect"),
    "ls": ("registry", "ls"),
    "tags": ("registry", "tags"),
    "login": ("registry", "login"),
    "logout": ("registry", "logout"),
    "serve": ("serve", "serve"),
    "admin": ("admin", "admin_app"),  # gateway management: ecr admin | repo | stage
    "repo": ("admin", "repo_app"),
    "stage": ("admin", "stage_app"),
    "search": ("admin", "search"),
    "signing-key": ("admin", "signing_key"),
    "keygen": ("trust", "keygen"),
    "sign": ("trust", "sign"),
    "verify": ("trust", "verify"),
    "provenance": ("trust", "provenance_app"),
    "profile": ("profile", "app"),
    "run": ("profile", "run"),
    "doi": ("doi", "app"),
    "deploy": ("deploy", "app"),
    "node-exporter": ("nodeexporter", "node_exporter"),
}


def _version(value: bool) -> None:
    if value:
        print(__version__)
        raise typer.Exit()


def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """Edge Code Repository client."""


def build_app(names: Iterable[str] | None = None) -> typer.Typer:
    """The ``ecr`` app with the commands ``names`` (all of them when None), importing only their modules."""
    wanted = set(COMMANDS if names is None else names)
    app = typer.Typer(
        name="ecr",
        help=f"Edge Code Repository: push, pull and inspect edge bundles in an OCI registry.\n\n{EXIT_CODES_HELP}",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    # A callback keeps the app a group even with one command (typer would otherwise run
    # a lone command as the app itself, and ``ecr inspect REF`` would not parse).
    app.callback()(main)
    for name, (module, attribute) in COMMANDS.items():
        if name not in wanted:
            continue
        target = getattr(importlib.import_module(f"ecr_oci.cli.{module}"), attribute)
        if isinstance(target, typer.Typer):
            app.add_typer(target, name=name)
        else:
            app.command(name)(target)
    return app


def app_for(args: Sequence[str]) -> typer.Typer:
    """The app to run ``ecr ARGS``: only the named command's when ARGS start with a command name."""
    if args and args[0] in COMMANDS:
        return build_app([args[0]])
    return _full_app()


_app: typer.Typer | None = None


def _full_app() -> typer.Typer:
    global _app
    if _app is None:
        _app = build_app()
    return _app


def __getattr__(name: str) -> Any:
    if name == "app":  # every command: help, tests, embedding
        return _full_app()
    raise AttributeError(name)
