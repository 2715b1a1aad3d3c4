"""``ecr doi mint | show``: DataCite DOIs for bundles, recorded as referrers."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from ecr_oci.bundle.remote import fetch_bundle
from ecr_oci.cli.common import (
    Insecure,
    PasswordStdin,
    PlainHttp,
    Username,
    connect,
    err,
    handle_errors,
    make_client,
    out,
)
from ecr_oci.doi.config import load_config
from ecr_oci.doi.mint import mint_doi, prepare
from ecr_oci.doi.record import find_records
from ecr_oci.errors import NotFoundError
from ecr_oci.registry.reference import parse_reference

Ref = Annotated[str, typer.Argument(help="HOST[:PORT]/REPOSITORY[:TAG|@DIGEST]")]

app = typer.Typer(
    help="DOIs for bundles: DataCite metadata from the annotations, registered through the DataCite REST API "
    "and recorded on a referrer (the bundle stays immutable).",
    no_args_is_help=True,
)


@app.command("mint")
@handle_errors
def mint(
    reference: Ref,
    prefix: Annotated[str | None, typer.Option(
        help="DOI prefix, e.g. 10.5072; for EZID a shoulder, e.g. 10.5072/FK2 (else ECR_DOI_PREFIX).")] = None,
    provider: Annotated[str | None, typer.Option(
        help="datacite (REST API, default) or ezid (else ECR_DOI_PROVIDER).")] = None,
    endpoint: Annotated[str | None, typer.Option(
        help="Provider API base URL (else ECR_DOI_ENDPOINT; default https://api.datacite.org).")] = None,
    test: Annotated[bool, typer.Option(
        "--test", help="Use DataCite's test system https://api.test.datacite.org; with --endpoint, that "
        "endpoint, recorded as a test system.")] = False,
    draft: Annotated[bool, typer.Option("--draft", help="Register a draft DOI (no 'publish' event).")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Mint even if the bundle already has a DOI, or is not public.")] = False,
    publisher: Annotated[str | None, typer.Option(
        help="DataCite publisher (else ECR_DOI_PUBLISHER; default 'Edge Code Repository').")] = None,
    url: Annotated[str | None, typer.Option(
        "--url", help="Landing page URL or template ({registry} {repository} {digest} {tag} {name} {version}); "
        "default: the registry URL of the bundle index.")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the validated DataCite metadata; register nothing.")] = False,
    plain_http: PlainHttp = None,
    insecure: Insecure = False,
    username: Username = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Register a DOI for a bundle and record it on a DOI referrer; prints the DOI.

    DataCite metadata (schema 4.x) is built from the bundle's annotations and checked
    against annotations-spec/v1/schemas/datacite-4.schema.json; invalid metadata (no
    authors, no license, ...) is refused before any request. Credentials: ECR_DOI_USER
    (DataCite repository id) and ECR_DOI_PASSWORD, or the config file ($ECR_DOI_CONFIG,
    default ~/.config/ecr/doi.toml). A bundle that already has a DOI is left alone
    (its DOI is printed) unless --force; only bundles an anonymous client can pull get
    a DOI unless --force.
    """
    ref = parse_reference(reference)
    config = load_config(provider=provider, prefix=prefix, endpoint=endpoint, test=True if test else None,
                         publisher=publisher, url=url)
    client = make_client(ref.registry, plain_http=plain_http, insecure=insecure,
                         username=username, password_stdin=password_stdin)
    if dry_run:
        attributes = prepare(client, fetch_bundle(client, ref), config, draft=draft)
        print(json.dumps({"data": {"type": "dois", "attributes": attributes}}, indent=2, sort_keys=True))
        return
    outcome = mint_doi(client, ref, config, draft=draft, force=force)
    record = outcome.record
    if outcome.created:
        mode = " (test system)" if record.test else ""
        err.print(f"registered DOI {record.doi} ({record.state}){mode} with {record.provider} for "
                  f"{outcome.reference.pinned()} -> {record.url}; recorded in referrer {outcome.referrer}",
                  markup=False)
    else:
        err.print(f"{outcome.reference.pinned()} already has DOI {record.doi} (registered {record.registered}); "
                  "nothing done (use --force to mint another)", markup=False)
    out.print(record.doi, markup=False)


@app.command("show")
@handle_errors
def show(
    reference: Ref,
    as_json: Annotated[bool, typer.Option("--json", help="Print the DOI record(s) as JSON.")] = False,
    plain_http: PlainHttp = None,
    insecure: Insecure = False,
    username: Username = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Print the DOI recorded for a bundle (the newest one; --json lists all records).

    Exits 6 when the bundle has no DOI record.
    """
    ref, client = connect(reference, plain_http=plain_http, insecure=insecure,
                          username=username, password_stdin=password_stdin)
    bundle = fetch_bundle(client, ref)
    records = find_records(client, ref.repository, bundle.digest)
    if not records:
        raise NotFoundError(f"{bundle.reference.pinned()} has no DOI record (mint one with `ecr doi mint`)")
    if as_json:
        print(json.dumps({"reference": bundle.reference.pinned(), "doi": records[0].doi,
                          "records": [r.to_dict() for r in records]}, indent=2, sort_keys=True))
        return
    out.print(records[0].doi, markup=False)
    newest = records[0]
    err.print(f"{newest.state}, {newest.provider}{' test system' if newest.test else ''}, registered "
              f"{newest.registered}, resolves to {newest.url}", markup=False)

