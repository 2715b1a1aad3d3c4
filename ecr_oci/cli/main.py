"""The ``ecr`` command line: every command group, assembled into one typer app."""

from __future__ import annotations

import typer

import ecr_oci.cli.admin as admin  # gateway management: ecr admin | repo | stage
import ecr_oci.cli.serve as serve  # the gateway: ecr serve
from ecr_oci import __version__
from ecr_oci.cli import bundle, profile, registry
from ecr_oci.cli import deploy as deploy_cli
from ecr_oci.cli import doi as doi_cli
from ecr_oci.cli import nodeexporter as nodeexporter_cli
from ecr_oci.cli import trust as trust_cli
from ecr_oci.cli.common import EXIT_CODES_HELP

app = typer.Typer(
    name="ecr",
    help=f"Edge Code Repository: push, pull and inspect edge bundles in an OCI registry.\n\n{EXIT_CODES_HELP}",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(bundle.validate)
app.command()(bundle.push)
app.command()(bundle.pull)
app.command()(bundle.inspect)
app.command()(registry.ls)
app.command()(registry.tags)
app.command()(registry.login)
app.command()(registry.logout)
app.command()(serve.serve)
app.add_typer(admin.admin_app, name="admin")
app.add_typer(admin.repo_app, name="repo")
app.add_typer(admin.stage_app, name="stage")
app.command()(admin.search)
app.command("signing-key")(admin.signing_key)
app.command()(trust_cli.keygen)
app.command()(trust_cli.sign)
app.command()(trust_cli.verify)
app.add_typer(trust_cli.provenance_app, name="provenance")
app.add_typer(profile.app, name="profile")
app.command()(profile.run)
app.add_typer(doi_cli.app, name="doi")
app.add_typer(deploy_cli.app, name="deploy")
app.command("node-exporter")(nodeexporter_cli.node_exporter)


def _version(value: bool) -> None:
    if value:
        print(__version__)
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """Edge Code Repository client."""
