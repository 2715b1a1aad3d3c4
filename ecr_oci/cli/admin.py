"""``ecr admin | repo | stage``: manage a gateway through its admin API.

Every command takes ``--server``/``ECR_SERVER`` and credentials from
``ECR_USERNAME``/``ECR_PASSWORD`` or the login stored for the server.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated

import typer

from ecr_oci.cli.common import Insecure, err, handle_errors, out
from ecr_oci.errors import AuthError, UsageError
from ecr_oci.gateway.client import GatewayAdmin
from ecr_oci.registry.auth import Credentials, lookup_credentials, not_logged_in, stored_registries
from ecr_oci.registry.reference import parse_reference

admin_app = typer.Typer(help="Users, nodes, tokens and maintenance of an ECR gateway.", no_args_is_help=True)
user_app = typer.Typer(help="User accounts.", no_args_is_help=True)
node_app = typer.Typer(help="Node (robot) accounts bound to deployments.", no_args_is_help=True)
repo_app = typer.Typer(help="Repository visibility and grants.", no_args_is_help=True)
stage_app = typer.Typer(help="Bundle stages (submitted, tested-vw, tested-node, approved, deprecated).",
                        no_args_is_help=True)
admin_app.add_typer(user_app, name="user")
admin_app.add_typer(node_app, name="node")

Server = Annotated[str | None, typer.Option("--server", envvar="ECR_SERVER", help="Gateway HOST[:PORT] or URL.")]


def _client(server: str | None, insecure: bool, fallback: str | None = None) -> GatewayAdmin:
    """A client of the gateway named by --server/ECR_SERVER, else by the command's
    reference, else by the one stored login; credentials from ECR_USERNAME and
    ECR_PASSWORD, else the stored login for that gateway."""
    server = server or fallback
    if not server:
        logins = stored_registries()
        if len(logins) != 1:
            raise UsageError("which gateway? pass --server HOST[:PORT] or set ECR_SERVER"
                             + (f" (logged in to {', '.join(logins)})" if logins else ""))
        server = logins[0]
    username, password = os.environ.get("ECR_USERNAME"), os.environ.get("ECR_PASSWORD")
    host = server.split("://", 1)[-1].rstrip("/")
    if username and password is None:
        raise UsageError("ECR_USERNAME is set but ECR_PASSWORD is not")
    creds = Credentials(username, password) if username and password is not None else lookup_credentials(host)
    if creds is None:
        raise AuthError(not_logged_in(host))
    return GatewayAdmin(server, creds, verify_tls=not insecure)


@user_app.command("add")
@handle_errors
def user_add(
    name: Annotated[str, typer.Argument(help="User name (also their namespace).")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin.")] = False,
    admin: Annotated[bool, typer.Option("--admin", help="Make the user an administrator.")] = False,
    server: Server = None,
    insecure: Insecure = False,
) -> None:
    """Create (or reset the password of) a user."""
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else typer.prompt("Password", hide_input=True)
    _client(server, insecure).add_user(name, password, admin)
    err.print(f"user {name} saved")


@user_app.command("token")
@handle_errors
def user_token(
    name: Annotated[str, typer.Argument(help="User name.")],
    label: Annotated[str, typer.Option("--label", help="What the token is for.")] = "",
    server: Server = None,
    insecure: Insecure = False,
) -> None:
    """Create an API token for a user (use it as the password); prints it once."""
    out.print(_client(server, insecure).add_token(name, label))


Platform = Annotated[str | None, typer.Option("--platform", help="OCI platform, e.g. linux/arm64.")]
Accelerator = Annotated[str | None, typer.Option("--accelerator", help="e.g. nvidia-jetson-xavier-nx.")]
Memory = Annotated[str | None, typer.Option("--memory", help="Memory for plugins, e.g. 8Gi.")]
Cpu = Annotated[str | None, typer.Option("--cpu", help="CPUs for plugins, e.g. 6.")]
Sensor = Annotated[list[str] | None, typer.Option("--sensor", help="Attached sensor, e.g. camera (repeatable).")]


def _facts(platform: str | None, accelerator: str | None, memory: str | None, cpu: str | None,
           sensors: list[str] | None) -> dict[str, object] | None:
    """Node facts from options, validated (None when no option was given)."""
    from ecr_oci.deploy.facts import validate_facts

    given = {"platform": platform, "accelerator": accelerator, "memory": memory, "cpu": cpu, "sensors": sensors}
    facts = {k: v for k, v in given.items() if v}
    return validate_facts(facts) if facts else None


@node_app.command("add")
@handle_errors
def node_add(
    name: Annotated[str, typer.Argument(help="Node name, e.g. its VSN W0A1.")],
    deployment: Annotated[list[str], typer.Option("--deployment", help="Deployment the node belongs to.")],
    platform: Platform = None,
    accelerator: Accelerator = None,
    memory: Memory = None,
    cpu: Cpu = None,
    sensor: Sensor = None,
    server: Server = None,
    insecure: Insecure = False,
) -> None:
    """Register a node (with its hardware facts); prints its credential (username = node name)."""
    facts = _facts(platform, accelerator, memory, cpu, sensor)  # checked before anything is created
    client = _client(server, insecure)
    credential = client.add_node(name, deployment)
    if facts:
        client.set_node_facts(name, facts)
    out.print(credential)


@node_app.command("facts")
@handle_errors
def node_facts(
    name: Annotated[str, typer.Argument(help="Node name.")],
    platform: Platform = None,
    accelerator: Accelerator = None,
    memory: Memory = None,
    cpu: Cpu = None,
    sensor: Sensor = None,
    server: Server = None,
    insecure: Insecure = False,
) -> None:
    """Show a node's facts (JSON), or replace them when options are given (admin or the node itself)."""
    facts = _facts(platform, accelerator, memory, cpu, sensor)
    client = _client(server, insecure)
    answer = client.set_node_facts(name, facts) if facts else client.node_facts(name)
    out.print(json.dumps(answer, indent=2), markup=False)


@admin_app.command("reindex")
@handle_errors
def reindex(server: Server = None, insecure: Insecure = False) -> None:
    """Rebuild the gateway's referrers index from the registry."""
    count = _client(server, insecure).reindex()
    err.print(f"{count} referrers indexed")


@repo_app.command("set-visibility")
@handle_errors
def set_visibility(
    repository: Annotated[str, typer.Argument(help="Repository, e.g. alice/poacher-watch.")],
    visibility: Annotated[str, typer.Argument(help="public, protected or private.")],
    server: Server = None,
    insecure: Insecure = False,
) -> None:
    """Set who may see and pull a repository."""
    _client(server, insecure).set_visibility(repository, visibility)
    err.print(f"{repository} is {visibility}")


@repo_app.command("grant")
@handle_errors
def grant(
    repository: Annotated[str, typer.Argument(help="Repository.")],
    account: Annotated[str, typer.Argument(help="User name.")],
    level: Annotated[str, typer.Argument(help="read, write or admin.")],
    server: Server = None,
    insecure: Insecure = False,
) -> None:
    """Grant a user read, write or admin on a repository."""
    _client(server, insecure).grant(repository, account, level)
    err.print(f"{account} has {level} on {repository}")


@repo_app.command("revoke")
@handle_errors
def revoke(
    repository: Annotated[str, typer.Argument(help="Repository.")],
    account: Annotated[str, typer.Argument(help="User name.")],
    server: Server = None,
    insecure: Insecure = False,
) -> None:
    """Remove a user's grant on a repository."""
    _client(server, insecure).grant(repository, account, None)
    err.print(f"{account} has no grant on {repository}")


@stage_app.command("set")
@handle_errors
def stage_set(
    reference: Annotated[str, typer.Argument(help="HOST[:PORT]/REPOSITORY:TAG or @DIGEST")],
    stage: Annotated[str, typer.Argument(help="submitted, tested-vw, tested-node, approved or deprecated.")],
    deployment: Annotated[str, typer.Option("--deployment", help="Deployment (required for approved).")] = "",
    evidence: Annotated[
        list[str] | None, typer.Option("--evidence", help="KEY=VALUE, e.g. profile=sha256:... (repeatable).")
    ] = None,
    server: Server = None,
    insecure: Insecure = False,
) -> None:
    """Record a stage transition of a bundle (with evidence) in the audit trail."""
    ref = parse_reference(reference)
    pairs = dict(e.split("=", 1) for e in evidence or [] if "=" in e)
    event = _client(server, insecure, ref.registry).set_stage(ref.repository, ref.reference, stage, deployment, pairs)
    err.print(f"{ref.repository}@{event['digest']}: {stage}" + (f" for {deployment}" if deployment else ""))


@stage_app.command("list")
@handle_errors
def stage_list(
    repository: Annotated[str, typer.Argument(help="HOST[:PORT]/REPOSITORY")],
    server: Server = None,
    insecure: Insecure = False,
) -> None:
    """Show a repository's stage audit trail (JSON)."""
    ref = parse_reference(repository, default_tag=None)
    out.print(json.dumps(_client(server, insecure, ref.registry).stages(ref.repository)["events"], indent=2))
