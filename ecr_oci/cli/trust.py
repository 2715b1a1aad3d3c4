"""``ecr keygen | sign | verify | provenance``: cosign-compatible signatures and provenance on bundles."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

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
from ecr_oci.errors import SignatureError
from ecr_oci.registry.reference import Reference, parse_reference
from ecr_oci.trust import simplesigning as ss
from ecr_oci.trust.keys import KeyFileError, is_encrypted, load_private_key, load_public_key, write_key_pair
from ecr_oci.trust.provenance import (
    DEFAULT_BUILDER,
    attach_provenance,
    attestation_tag,
    build_statement,
    find_provenance,
    verify_provenance,
)
from ecr_oci.trust.sign import SignResult, find_cosign, sign_native, sign_recursive, sign_with_cosign
from ecr_oci.trust.verify import verify_reference

Ref = Annotated[str, typer.Argument(help="HOST[:PORT]/REPOSITORY[:TAG|@DIGEST]")]


def cosign_password(*, confirm: bool) -> bytes:
    """``COSIGN_PASSWORD`` (may be empty), else a prompt on the terminal.

    Raises:
        KeyFileError: no variable and no terminal to ask on.
    """
    value = os.environ.get("COSIGN_PASSWORD")
    if value is not None:
        return value.encode()
    if not sys.stdin.isatty():
        raise KeyFileError("the key password is needed: set COSIGN_PASSWORD (no terminal to ask on)")
    text: str = typer.prompt("Password for the private key", default="", show_default=False,
                             hide_input=True, confirmation_prompt=confirm)
    return text.encode()


def _annotations(values: list[str] | None) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in values or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--annotation")
        pairs[name] = value
    return pairs


@handle_errors
def keygen(
    output_prefix: Annotated[Path, typer.Option("--output-prefix", help="Writes PREFIX.key and PREFIX.pub.")] = Path(
        "cosign"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Generate a cosign-compatible ECDSA P-256 key pair.

    PREFIX.key is cosign's ENCRYPTED SIGSTORE PRIVATE KEY (scrypt + NaCl secretbox),
    encrypted with COSIGN_PASSWORD (asked for when unset; may be empty); PREFIX.pub is
    a PEM public key. Both work with `cosign sign --key` / `cosign verify --key`.
    """
    private_path, public_path = write_key_pair(output_prefix, cosign_password(confirm=True), force=force)
    err.print(f"private key written to {private_path}; public key written to {public_path}")


@handle_errors
def sign(
    reference: Ref,
    key: Annotated[Path, typer.Option("--key", help="Private key: cosign encrypted PEM, or plain EC P-256 PEM.")],
    annotation: Annotated[list[str] | None, typer.Option(
        "--annotation", "-a", help="KEY=VALUE added to the payload's optional claims (repeatable).")] = None,
    native: Annotated[bool, typer.Option("--native", help="Do not use cosign even if it is on PATH.")] = False,
    recursive: Annotated[bool, typer.Option(
        "--recursive", help="Also sign every manifest the index lists (platform images, model manifest).")] = False,
    plain_http: PlainHttp = None,
    insecure: Insecure = False,
    username: Username = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Sign the bundle index REFERENCE resolves to (cosign format, no transparency log).

    A tag is resolved first and the digest is what gets signed. Uses `cosign sign` when
    cosign is on PATH (or $ECR_COSIGN), else signs natively in the same format. The
    signature goes to the cosign tag sha256-<hex>.sig and is attached as an OCI
    referrer. With --recursive each manifest of the index is signed too (needed where
    the registry checks a signature on every manifest pulled, e.g. Harbor's cosign
    content trust). Prints the signed reference, pinned by digest.
    """
    ref = parse_reference(reference)
    claims = _annotations(annotation)
    cosign = None if native else find_cosign()
    password: bytes | None = None

    def ask() -> bytes:
        nonlocal password
        if password is None:
            password = cosign_password(confirm=False)
        return password

    private = load_private_key(key, ask)
    client = make_client(ref.registry, plain_http=plain_http, insecure=insecure,
                         username=username, password_stdin=password_stdin)
    if cosign:
        # cosign needs a password for its key file; a plain PEM key is re-wrapped with
        # COSIGN_PASSWORD, or an empty one, without asking.
        wrap = ask() if is_encrypted(key.read_bytes()) else os.environ.get("COSIGN_PASSWORD", "").encode()

        def sign_one(target: Reference) -> SignResult:
            return sign_with_cosign(client, target, key, private, wrap, cosign=cosign, annotations=claims)
    else:
        def sign_one(target: Reference) -> SignResult:
            return sign_native(client, target, private, annotations=claims)

    results = sign_recursive(client, ref, sign_one) if recursive else [sign_one(ref)]
    for i, result in enumerate(results):
        what = f" (tag {ref.tag})" if i == 0 and ref.tag and not ref.digest else ""
        state = "signed" if result.added else "already signed by this key"
        err.print(
            f"{state} with {result.tool}: {result.reference.pinned()}{what}; signature in tag "
            f"{ss.signature_tag(result.reference.digest or '')} and referrer {result.referrer}"
        )
    out.print(results[0].reference.pinned())


@handle_errors
def verify(
    reference: Ref,
    key: Annotated[Path, typer.Option("--key", help="The signer's PEM public key (cosign.pub).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the verified payload as JSON.")] = False,
    provenance: Annotated[bool, typer.Option(
        "--provenance", help="Also require a SLSA provenance statement signed by KEY.")] = False,
    plain_http: PlainHttp = None,
    insecure: Insecure = False,
    username: Username = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Exit 0 only if a signature by KEY names exactly the digest REFERENCE resolves to.

    The signed payload must also name this registry/repository. Signatures are read
    from the cosign tag and from the referrers. Failure exits 9 with one line saying
    why: no signatures, bad signature, payload for another digest, or tag re-pointed.
    With --provenance, a SLSA provenance statement signed by KEY must name the digest too.
    """
    ref = parse_reference(reference)
    public = load_public_key(key)
    client = make_client(ref.registry, plain_http=plain_http, insecure=insecure,
                         username=username, password_stdin=password_stdin)
    result = verify_reference(client, ref, public, key_name=key.name)
    statement = None
    if provenance:
        _, statement, _ = verify_provenance(client, result.reference, public, key.name)
    if as_json:
        document = {
            "provenance": statement,
            "reference": result.reference.pinned(),
            "digest": result.digest,
            "source": result.signature.source,
            "checked": result.checked,
            "payload": ss.parse_claims(result.signature.payload),
        }
        print(json.dumps(document, indent=2, sort_keys=True))
        return
    also = " with signed provenance" if statement else ""
    err.print(f"verified: {result.reference.pinned()} signed by {key.name}{also} ({result.signature.source})")
    out.print(result.reference.pinned())


# --- provenance ------------------------------------------------------------------------
provenance_app = typer.Typer(
    help="SLSA v1 provenance (in-toto Statement in a signed DSSE envelope) attached to a bundle.",
    no_args_is_help=True,
)


@provenance_app.command("attach")
@handle_errors
def provenance_attach(
    reference: Ref,
    key: Annotated[Path, typer.Option("--key", help="Private key: cosign encrypted PEM, or plain EC P-256 PEM.")],
    builder_id: Annotated[str, typer.Option("--builder-id", help="URI of the builder.")] = DEFAULT_BUILDER,
    build_command: Annotated[str | None, typer.Option(
        "--build-command", help="The command that built the bundle (split on spaces).")] = None,
    material: Annotated[list[str] | None, typer.Option(
        "--material", help="URI@sha256:HEX of an input (e.g. a base image); repeatable.")] = None,
    plain_http: PlainHttp = None,
    insecure: Insecure = False,
    username: Username = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Build the provenance statement of a pushed bundle, sign it and attach it.

    Source, revision, recipe, build args and toolchain come from the bundle's
    annotations; the images and the model manifest are recorded as byproducts.
    """
    ref = parse_reference(reference)
    private = load_private_key(key, lambda: cosign_password(confirm=False))
    client = make_client(ref.registry, plain_http=plain_http, insecure=insecure,
                         username=username, password_stdin=password_stdin)
    bundle = fetch_bundle(client, ref)
    materials = [_material(m) for m in material or []]
    statement = build_statement(bundle, builder_id=builder_id, materials=materials,
                                build_command=build_command.split() if build_command else None)
    attached = attach_provenance(client, bundle.reference, private, statement)
    also = f", tag {attestation_tag(bundle.digest)}" if attached.attestation_manifest else ""
    err.print(f"provenance attached to {bundle.reference.pinned()}: referrer {attached.referrer}{also}")
    out.print(bundle.reference.pinned())


def _material(text: str) -> dict[str, object]:
    uri, sep, digest = text.rpartition("@")
    if not sep or not digest.startswith("sha256:") or len(digest) != 71:
        raise typer.BadParameter(f"expected URI@sha256:HEX, got {text!r}", param_hint="--material")
    return {"uri": uri, "digest": {"sha256": digest[7:]}}


@provenance_app.command("show")
@handle_errors
def provenance_show(
    reference: Ref,
    key: Annotated[Path | None, typer.Option(
        "--key", help="Require a DSSE signature by this public key (exit 9 otherwise).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the statement as JSON.")] = False,
    plain_http: PlainHttp = None,
    insecure: Insecure = False,
    username: Username = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Show a bundle's provenance; with --key, only a statement signed by that key."""
    ref, client = connect(reference, plain_http=plain_http, insecure=insecure,
                          username=username, password_stdin=password_stdin)
    if key is not None:
        pinned, statement, found = verify_provenance(client, ref, load_public_key(key), key.name)
        status = f"signature verified with {key.name} ({found.source})"
    else:
        digest = client.get_manifest(ref.repository, ref.reference).digest
        pinned = ref.with_digest(digest)
        items = [(f, f.statement()) for f in find_provenance(client, ref.repository, digest)]
        usable = [(f, s) for f, s in items if s is not None]
        if not usable:
            raise SignatureError(f"{pinned.pinned()} has no provenance attestation")
        found, statement = usable[0]
        status = f"signature NOT checked (give --key) ({found.source})"
    if as_json:
        print(json.dumps(statement, indent=2, sort_keys=True))
        return
    _print_provenance(pinned.pinned(), statement, status)


def _print_provenance(pinned: str, statement: dict[str, Any], status: str) -> None:
    predicate = statement.get("predicate") or {}
    definition = predicate.get("buildDefinition") or {}
    run = predicate.get("runDetails") or {}
    external = definition.get("externalParameters") or {}
    metadata = run.get("metadata") or {}
    rows: list[tuple[str, str]] = [
        ("bundle", pinned),
        ("status", status),
        ("predicate", str(statement.get("predicateType", ""))),
        ("builder", str((run.get("builder") or {}).get("id", ""))),
        ("build type", str(definition.get("buildType", ""))),
    ]
    source = external.get("source") or {}
    if source:
        rows.append(("source", " ".join(str(source[k]) for k in ("url", "revision") if source.get(k))))
    for label, name in (("recipe", "recipe"), ("build command", "buildCommand"), ("build args", "buildArgs")):
        if name in external:
            value = external[name]
            rows.append((label, " ".join(value) if isinstance(value, list) else
                         value if isinstance(value, str) else json.dumps(value)))
    toolchain = (definition.get("internalParameters") or {}).get("toolchain")
    if toolchain:
        rows.append(("toolchain", json.dumps(toolchain, sort_keys=True)))
    if metadata:
        rows.append(("built", f"{metadata.get('startedOn', '?')} .. {metadata.get('finishedOn', '?')}"))
    for dep in definition.get("resolvedDependencies") or []:
        digests = " ".join(f"{k}:{v}" for k, v in (dep.get("digest") or {}).items())
        rows.append(("material", f"{dep.get('uri', dep.get('name', ''))} {digests}".strip()))
    for product in run.get("byproducts") or []:
        rows.append(("product", f"{product.get('name', '')} {product.get('uri', '')}"))
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        out.print(f"{label:<{width}}  {value}", markup=False)
