"""``ecr admin | repo | stage``: manage a gateway through its admin API.

Every command takes ``--server``/``ECR_SERVER`` and credentials from
``ECR_USERNAME``/``ECR_PASSWORD`` or the login stored for the server.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

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


def _client(server: str | None, insecure: bool, fallback: str | None = None, *,
            anonymous: bool = False) -> GatewayAdmin:
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
    if creds is None and not anonymous:
        raise AuthError(not_logged_in(host))
    return GatewayAdmin(server, creds, verify_tls=not insecure)


Json = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _print_json(document: Any) -> None:
    print(json.dumps(document, indent=2, sort_keys=True))


def _when(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


@user_app.command("add")
@handle_errors
def user_add(
    name: Annotated[str, typer.Argument(help="User name: lowercase letters and digits, separated by . _ or -"
                                             " (it is also the user's namespace).")],
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin.")] = False,
    admin: Annotated[bool, typer.Option("--admin", help="Make the user an administrator.")] = False,
    reset_password: Annotated[bool, typer.Option(
        "--reset-password", help="The user exists: set a new password.")] = False,
    server: Server = None,
    insecure: Insecure = False,
) -> None:
    """Create a user (password: at least 8 characters), or with --reset-password set a new password."""
    client = _client(server, insecure)  # says how to log in before asking for anything
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else typer.prompt(
        "Password", hide_input=True, confirmation_prompt=True)
    client.add_user(name, password, admin, reset_password=reset_password)
    err.print(f"user {name} {'password reset' if reset_password else 'created'}")


@user_app.command("list")
@handle_errors
def user_list(server: Server = None, insecure: Insecure = False, as_json: Json = False) -> None:
    """List users (admins only)."""
    users = _client(server, insecure).accounts("user")
    if as_json:
        _print_json(users)
        return
    table = Table("user", "admin", "tokens", "grants", box=None)
    for user in users:
        table.add_row(user["name"], "yes" if user["admin"] else "", str(len(user["tokens"])),
                      ", ".join(f"{g['repository']} ({g['level']})" for g in user["grants"]))
    out.print(table)


@user_app.command("show")
@handle_errors
def user_show(name: Annotated[str, typer.Argument(help="User name.")], server: Server = None,
              insecure: Insecure = False, as_json: Json = False) -> None:
    """Show a user: admin or not, API tokens (id, label, created), grants."""
    _show_account(_client(server, insecure).account("user", name), as_json)


@user_app.command("remove")
@handle_errors
def user_remove(name: Annotated[str, typer.Argument(help="User name.")], server: Server = None,
                insecure: Insecure = False) -> None:
    """Remove a user, their API tokens and grants (their repositories stay)."""
    _client(server, insecure).remove_account("user", name)
    err.print(f"user {name} removed (tokens and grants revoked)")


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


@user_app.command("revoke-token")
@handle_errors
def user_revoke_token(
    name: Annotated[str, typer.Argument(help="User name.")],
    token_id: Annotated[str, typer.Argument(help="Token id, as `ecr admin user show` lists it.")],
    server: Server = None,
    insecure: Insecure = False,
) -> None:
    """Revoke one of a user's API tokens (it stops working at once)."""
    revoked = _client(server, insecure).revoke_token(name, token_id)
    err.print(f"token {revoked['revoked']} of {name} revoked")


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
    """Register a node (with its hardware facts) and print its credential (username = node name).

    For a node that exists this rotates: a new credential is printed, the old one
    stops working, and the node's deployments become the ones given.
    """
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


@node_app.command("list")
@handle_errors
def node_list(server: Server = None, insecure: Insecure = False, as_json: Json = False) -> None:
    """List nodes and their deployments (admins only)."""
    nodes = _client(server, insecure).accounts("node")
    if as_json:
        _print_json(nodes)
        return
    table = Table("node", "deployments", "credentials", box=None)
    for node in nodes:
        table.add_row(node["name"], ", ".join(node["deployments"]), str(len(node["tokens"])))
    out.print(table)


@node_app.command("show")
@handle_errors
def node_show(name: Annotated[str, typer.Argument(help="Node name.")], server: Server = None,
              insecure: Insecure = False, as_json: Json = False) -> None:
    """Show a node: deployments and credentials (id, created)."""
    _show_account(_client(server, insecure).account("node", name), as_json)


@node_app.command("remove")
@handle_errors
def node_remove(name: Annotated[str, typer.Argument(help="Node name.")], server: Server = None,
                insecure: Insecure = False) -> None:
    """Remove a node; its credential stops working at once."""
    _client(server, insecure).remove_account("node", name)
    err.print(f"node {name} removed (credential revoked)")


def _show_account(account: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(account)
        return
    out.print(f"{account['kind']} {account['name']}" + (" (admin)" if account.get("admin") else ""))
    if "deployments" in account:
        out.print(f"deployments: {', '.join(account['deployments']) or '-'}")
    for grant in account.get("grants", []):
        out.print(f"grant: {grant['level']} on {grant['repository']}")
    table = Table("token id", "label", "created", box=None)
    for token in account["tokens"]:
        table.add_row(token["id"], token["label"], _when(token["created"]))
    out.print(table if account["tokens"] else "no API tokens")


@admin_app.command("reindex")
@handle_errors
def reindex(server: Server = None, insecure: Insecure = False) -> None:
    """Rebuild the gateway's referrers index from the registry."""
    count = _client(server, insecure).reindex()
    err.print(f"{count} referrers indexed")


@repo_app.command("set-visibility")
@handle_errors
def set_visibility(
    repository: Annotated[str, typer.Argument(help="Repository, e.g. alice/poacher-watch (or HOST/alice/...).")],
    visibility: Annotated[str, typer.Argument(help="public, protected or private.")],
    server: Server = None,
    insecure: Insecure = False,
) -> None:
    """Set who may see and pull a repository."""
    host, repository = _repository_argument(repository)
    _client(server, insecure, host).set_visibility(repository, visibility)
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
    host, repository = _repository_argument(repository)
    _client(server, insecure, host).grant(repository, account, level)
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
    host, repository = _repository_argument(repository)
    _client(server, insecure, host).grant(repository, account, None)
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
    as_json: Json = False,
) -> None:
    """Show a repository's stage audit trail: when, which bundle, which stage, who, evidence."""
    ref = parse_reference(repository, default_tag=None)
    events = _client(server, insecure, ref.registry, anonymous=True).stages(ref.repository)["events"]
    if as_json:
        _print_json(events)
        return
    table = Table("when", "digest", "stage", "deployment", "by", "evidence", box=None)
    for event in events:
        evidence = ", ".join(f"{k}={v}" for k, v in sorted((event.get("evidence") or {}).items()))
        table.add_row(_when(event["at"]), event["digest"], event["stage"], event.get("deployment") or "",
                      event.get("actor") or "", evidence)
    out.print(table if events else f"no stage events for {ref.repository}")


def _repository_argument(text: str) -> tuple[str | None, str]:
    """``alice/x`` or ``HOST[:PORT]/alice/x``: (gateway or None, repository)."""
    first, _, rest = text.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return None, text


@repo_app.command("show")
@handle_errors
def repo_show(
    repository: Annotated[str, typer.Argument(help="NAMESPACE/NAME, or HOST[:PORT]/NAMESPACE/NAME.")],
    server: Server = None,
    insecure: Insecure = False,
    as_json: Json = False,
) -> None:
    """Show a repository's visibility, what you may do, and (if you manage it) its grants."""
    host, name = _repository_argument(repository)
    facts = _client(server, insecure, host, anonymous=True).repository(name)
    if as_json:
        _print_json(facts)
        return
    out.print(f"{facts['repository']}: {facts['visibility']}; you may {', '.join(facts['may']) or 'nothing'}")
    for account, level in (facts.get("grants") or {}).items():
        out.print(f"grant: {account} {level}")


@handle_errors
def search(
    query: Annotated[str, typer.Argument(help="Words that must each occur in a bundle's repository name, name,"
                                              " description, authors, science or keywords.")] = "",
    keyword: Annotated[str, typer.Option("--keyword", help="Only bundles with this keyword.")] = "",
    platform: Annotated[str, typer.Option("--platform", help="Only bundles with an image for os/arch.")] = "",
    stage: Annotated[str, typer.Option("--stage", help="Only bundles that reached this stage.")] = "",
    server: Server = None,
    insecure: Insecure = False,
    as_json: Json = False,
) -> None:
    """Search the bundles you may see on a gateway."""
    result = _client(server, insecure, anonymous=True).search(q=query, keyword=keyword, platform=platform,
                                                             stage=stage)
    if as_json:
        _print_json(result)
        return
    table = Table("bundle", "version", "platforms", "stages", "description", box=None)
    for bundle in result["bundles"]:
        for version in bundle["versions"]:
            meta = version["metadata"]
            stages = ", ".join(f"{s}" + (f" ({d})" if d else "") for d, s in sorted(version["stages"].items()))
            table.add_row(bundle["repository"], version["tag"], ", ".join(version["platforms"]), stages,
                          str(meta.get("description", ""))[:60])
    out.print(table if result["bundles"] else "no bundles found")


@handle_errors
def signing_key(
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to save the PEM public key.")] = Path(
        "ecr.pub"),
    server: Server = None,
    insecure: Insecure = False,
) -> None:
    """Fetch the gateway's countersigning public key (what approvals are signed with).

    Nodes then refuse unapproved bundles with `ecr pull --require-signature ecr.pub`.
    """
    pem = _client(server, insecure, anonymous=True).signing_key()
    if b"PUBLIC KEY" not in pem:
        raise UsageError("the gateway answered something that is not a PEM public key")
    output.write_bytes(pem)
    err.print(f"saved the gateway's signing key to {output}")

