"""``ecr login | logout | ls | tags``: the registry itself."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from ecr_oci.bundle.remote import is_artifact_tag
from ecr_oci.cli.common import Insecure, PasswordStdin, PlainHttp, Username, err, fail, handle_errors, make_client, out
from ecr_oci.registry.auth import Credentials, remove_credentials, store_credentials
from ecr_oci.registry.client import RegistryClient
from ecr_oci.registry.reference import parse_reference


@handle_errors
def login(
    registry: Annotated[str, typer.Argument(help="HOST[:PORT]")],
    username: Username = None,
    password_stdin: PasswordStdin = False,
    plain_http: PlainHttp = None,
    insecure: Insecure = False,
) -> None:
    """Check credentials against REGISTRY and store them where docker, oras and ecr look."""
    if not username:
        username = typer.prompt("Username")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True)
    creds = Credentials(username, password)
    client = RegistryClient(registry, credentials=creds, plain_http=plain_http, verify_tls=not insecure)
    client.ping()
    path = store_credentials(registry, creds)
    err.print(f"Login succeeded (credentials saved in {path})")


@handle_errors
def logout(registry: Annotated[str, typer.Argument(help="HOST[:PORT]")]) -> None:
    """Forget stored credentials for REGISTRY."""
    if not remove_credentials(registry):
        raise fail(f"not logged in to {registry}", 1)
    err.print(f"Removed credentials for {registry}")


@handle_errors
def ls(
    registry: Annotated[str, typer.Argument(help="HOST[:PORT], or HOST[:PORT]/PREFIX to list only under PREFIX.")],
    plain_http: PlainHttp = None,
    insecure: Insecure = False,
    username: Username = None,
    password_stdin: PasswordStdin = False,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON list.")] = False,
) -> None:
    """List the repositories you can see."""
    host, _, prefix = registry.partition("/")
    client = make_client(host, plain_http=plain_http, insecure=insecure, username=username,
                         password_stdin=password_stdin)
    repos = [repo for repo in client.catalog()
             if not prefix or repo == prefix or repo.startswith(prefix.rstrip("/") + "/")]
    if as_json:
        print(json.dumps(repos, indent=2))
        return
    for repo in repos:
        out.print(repo)


@handle_errors
def tags(
    repository: Annotated[str, typer.Argument(help="HOST[:PORT]/REPOSITORY")],
    plain_http: PlainHttp = None,
    insecure: Insecure = False,
    username: Username = None,
    password_stdin: PasswordStdin = False,
    all_tags: Annotated[bool, typer.Option(
        "--all", "-a", help="Also the sha256-... tags of signatures, attestations and referrer indexes.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON list.")] = False,
) -> None:
    """List a repository's version tags (signature and attestation tags with --all)."""
    ref = parse_reference(repository, default_tag=None)
    client = make_client(ref.registry, plain_http=plain_http, insecure=insecure, username=username,
                         password_stdin=password_stdin)
    found = [tag for tag in client.tags(ref.repository) if all_tags or not is_artifact_tag(tag)]
    if as_json:
        print(json.dumps(found, indent=2))
        return
    for tag in found:
        out.print(tag)
