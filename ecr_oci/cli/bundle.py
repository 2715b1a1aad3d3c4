"""``ecr validate | push | pull | inspect``: bundles in and out of a registry."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from ecr_oci import mediatypes as mt
from ecr_oci.bundle.config import Platform, load_config
from ecr_oci.bundle.describe import gateway_facts, image_size, label_referrer
from ecr_oci.bundle.remote import fetch_bundle, platform_text
from ecr_oci.cli.common import (
    Insecure,
    PasswordStdin,
    PlainHttp,
    Quiet,
    Username,
    connect,
    err,
    handle_errors,
    human_size,
    make_client,
    out,
    styled,
)
from ecr_oci.doi.record import find_records
from ecr_oci.registry.reference import parse_reference

if TYPE_CHECKING:
    from ecr_oci.transfer.push import PushReport

# Building, pushing and pulling (and rich.progress) are imported by the commands that
# use them: `ecr inspect` starts without them (start-up time, issue 10).

BundleDir = Annotated[
    Path, typer.Argument(help="Bundle directory holding ecr.yaml (or sage.yaml), or the file itself.")
]
Ref = Annotated[str, typer.Argument(help="HOST[:PORT]/REPOSITORY[:TAG|@DIGEST]")]


@handle_errors
def validate(path: BundleDir = Path("."), build: Annotated[bool, typer.Option(
        "--build/--no-build", help="Also open every image source and hash every file.")] = True) -> None:
    """Check a bundle's metadata and inputs without contacting a registry."""
    from ecr_oci.bundle.model import build_bundle

    config = load_config(path)
    if build:
        with tempfile.TemporaryDirectory(prefix="ecr-") as scratch:
            bundle = build_bundle(config, Path(scratch))
        out.print(f"{config.name} {config.version}: valid ({len(bundle.images)} images, digest {bundle.digest})")
    else:
        out.print(f"{config.name} {config.version}: metadata valid")


@handle_errors
def push(
    path: BundleDir,
    reference: Ref,
    plain_http: PlainHttp = None,
    insecure: Insecure = False,
    username: Username = None,
    password_stdin: PasswordStdin = False,
    quiet: Quiet = False,
    parallel: Annotated[int, typer.Option(min=1, max=16, help="Blobs transferred at once.")] = 4,
    key: Annotated[Path | None, typer.Option(
        "--key", envvar="ECR_SIGNING_KEY",
        help="Sign the bundle (cosign format) and attach a signed SLSA provenance statement with this key.")] = None,
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Say for each blob whether it was uploaded, resumed, mounted or already present.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was pushed as JSON (implies --quiet).")] = False,
) -> None:
    """Build a bundle from PATH and push it; prints the reference pinned by digest.

    The tag defaults to the bundle version. Blobs the registry holds are skipped,
    blobs in another repository of the same registry are mounted, the rest are
    uploaded in resumable chunks. The version tag is written last. With --key the
    bundle is signed and its provenance (in-toto/SLSA v1, DSSE) attached as a referrer.
    """
    from ecr_oci.bundle.config import input_files
    from ecr_oci.bundle.model import build_bundle
    from ecr_oci.cli import early
    from ecr_oci.transfer.progress import TransferProgress
    from ecr_oci.transfer.push import UploadsAhead, push_bundle

    config = load_config(path)
    target = parse_reference(reference, default_tag=None)
    if target.digest:
        raise typer.BadParameter("push to a tag, not a digest", param_hint="REFERENCE")
    signing_key = _load_signing_key(key) if key else None  # a wrong password fails before any upload
    # New large files go up while they are hashed, as the rest of the bundle is built
    # (started before the command line was parsed when that was surely safe: cli/early.py);
    # a build that fails stops them (nothing is tagged; the sessions resume next time).
    ahead = early.claim(config.root, target.registry, target.repository, plain_http=plain_http,
                        insecure=insecure, username=username, parallel=parallel)
    if ahead:
        client, progress = ahead.client, ahead.progress
    else:
        client = make_client(target.registry, plain_http=plain_http, insecure=insecure,
                             username=username, password_stdin=password_stdin)
        progress = TransferProgress(not (quiet or as_json))
        ahead = UploadsAhead(client, target.repository, progress, parallel=parallel)
    with tempfile.TemporaryDirectory(prefix="ecr-") as scratch, progress:
        try:
            ahead.start(input_files(config), config.root)
            bundle = build_bundle(config, Path(scratch), ahead.digest_of, on_image=ahead.push_blobs_of)
            report = push_bundle(bundle, client, target, progress=progress, parallel=parallel, ahead=ahead)
        finally:
            ahead.close()
        titles = {b.digest: b.annotations.get(mt.OCI_TITLE, "") for b in bundle.blobs()}
    if verbose:
        for digest, action in _blob_actions(report).items():
            err.print(f"{action:<28} {digest} {titles.get(digest, '')}".rstrip())
    resumed = f", {len(report.resumed)} resumed" if report.resumed else ""
    err.print(
        f"pushed {config.name} {config.version}: {len(report.uploaded)} blobs uploaded "
        f"({human_size(report.bytes_uploaded)}{resumed}), {len(report.mounted)} mounted, "
        f"{len(report.skipped)} already present"
    )
    if signing_key is not None:
        materials = [
            {"uri": entry.source, "digest": {"sha256": image.digest.split(":", 1)[1]}, "name": str(entry.platform)}
            for entry, image in zip(config.images, bundle.images, strict=True)
        ]
        _sign_and_attest(client, report.reference, signing_key, materials, config.data.get("build", {}).get("recipe"))
    if as_json:
        print(json.dumps({
            "reference": report.reference.pinned(),
            "tag": report.reference.tag,
            "digest": bundle.digest,
            "bytesUploaded": report.bytes_uploaded,
            "blobs": [{"digest": d, "title": titles.get(d, ""), "action": a}
                      for d, a in _blob_actions(report).items()],
        }, indent=2))
        return
    out.print(report.reference.pinned())


def _blob_actions(report: PushReport) -> dict[str, str]:
    """digest -> uploaded | resumed | mounted from REPO | already present."""
    actions = {d: "already present" for d in report.skipped}
    actions |= {d: f"mounted from {report.sources.get(d, '?')}" for d in report.mounted}
    actions |= {d: "resumed" if d in report.resumed else "uploaded" for d in report.uploaded}
    return actions


def _load_signing_key(path: Path) -> Any:
    from ecr_oci.cli.trust import cosign_password
    from ecr_oci.trust.keys import load_private_key

    return load_private_key(path, lambda: cosign_password(confirm=False))


def _sign_and_attest(client: Any, pushed: Any, key: Any, materials: list[dict[str, Any]], recipe: str | None) -> None:
    """Sign the pushed index and attach its signed provenance statement."""
    from ecr_oci.trust.provenance import attach_provenance, build_statement
    from ecr_oci.trust.sign import sign_native

    signed = sign_native(client, pushed.with_tag(pushed.tag), key)
    remote = fetch_bundle(client, pushed)
    statement = build_statement(remote, materials=materials, build_command=recipe.split() if recipe else None)
    attached = attach_provenance(client, remote.reference, key, statement)
    err.print(f"signed ({signed.referrer}) and attached provenance ({attached.referrer})")


@handle_errors
def pull(
    reference: Ref,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Directory to write into (new or empty; default ./NAME-TAG).")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Pull into a directory holding other files (a previously pulled bundle is replaced).")
    ] = False,
    platform: Annotated[str | None, typer.Option(help="os/arch or os/arch/variant; default: this machine's.")] = None,
    model_only: Annotated[bool, typer.Option("--model-only", help="Only the model/data files.")] = False,
    plain_http: PlainHttp = None,
    insecure: Insecure = False,
    username: Username = None,
    password_stdin: PasswordStdin = False,
    quiet: Quiet = False,
    require_signature: Annotated[Path | None, typer.Option(
        "--require-signature", metavar="PUBKEY",
        help="Refuse (exit 9) unless the bundle is signed by this public key; checked before any download.")] = None,
) -> None:
    """Fetch one platform's image (as an OCI layout in OUT/image) and the model files.

    Only the chosen platform's blobs are downloaded; every blob is verified against
    its digest and written only once complete.
    """
    from ecr_oci.transfer.progress import TransferProgress
    from ecr_oci.transfer.pull import pull_bundle

    ref = parse_reference(reference)
    chosen = None if model_only else Platform.parse(platform or host_platform())
    if output is None:  # a new directory named after what is pulled, never the current one
        label = ref.digest[7:19] if ref.digest else ref.tag
        output = Path(f"{ref.repository.rsplit('/', 1)[-1]}-{label}")
    client = make_client(ref.registry, plain_http=plain_http, insecure=insecure,
                         username=username, password_stdin=password_stdin)
    if require_signature is not None:
        from ecr_oci.trust.keys import key_id, load_public_key
        from ecr_oci.trust.verify import verify_reference

        key = load_public_key(require_signature)
        verified = verify_reference(client, ref, key, key_name=require_signature.name)
        ref = verified.reference  # pinned: a moved tag cannot swap content
        err.print(f"verified: {ref.pinned()} is signed by {require_signature.name} ({key_id(key)},"
                  f" {verified.signature.source}); pulling exactly that digest")
    report = pull_bundle(client, ref, output, platform=chosen, model_only=model_only,
                         progress=TransferProgress(not quiet), force=force)
    err.print(f"pulled {len(report.files)} blobs ({human_size(report.bytes_downloaded)}) into {output}")
    out.print(report.bundle.reference.pinned())


def host_platform() -> str:
    import platform as _platform

    machine = _platform.machine().lower()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm/v7", "i686": "386"}.get(machine, machine)
    return f"linux/{arch}"


@handle_errors
def inspect(
    reference: Ref,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    plain_http: PlainHttp = None,
    insecure: Insecure = False,
    username: Username = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Show a bundle: metadata, platforms, model files and referrers."""
    ref, client = connect(reference, plain_http=plain_http, insecure=insecure,
                          username=username, password_stdin=password_stdin)
    bundle = fetch_bundle(client, ref)
    model_entry = bundle.model_entry()
    files: list[dict[str, Any]] = []
    if model_entry:
        model = client.get_manifest(ref.repository, model_entry["digest"]).json()
        files = [
            {
                "title": (layer.get("annotations") or {}).get(mt.OCI_TITLE, ""),
                "role": (layer.get("annotations") or {}).get(mt.ECR_LAYER_ROLE, ""),
                "mediaType": layer["mediaType"],
                "digest": layer["digest"],
                "size": layer["size"],
            }
            for layer in model.get("layers", [])
        ]
    referrers = client.referrers(ref.repository, bundle.digest)
    doi_records = find_records(client, ref.repository, bundle.digest, referrers)
    document = {
        "reference": bundle.reference.pinned(),
        "digest": bundle.digest,
        "bundle": bundle.is_bundle,
        "artifactType": bundle.index.get("artifactType"),
        "metadata": bundle.metadata,
        "platforms": [
            {"platform": platform_text(e["platform"]), "digest": e["digest"],
             "size": image_size(client, ref.repository, e)}  # manifest + config + layers
            for e in bundle.images()
        ],
        "files": files,
        "referrers": [
            {"artifactType": r.get("artifactType"), "digest": r["digest"], "annotations": r.get("annotations", {}),
             "label": label_referrer(client, ref.repository, r)}
            for r in referrers
        ],
        "doi": doi_records[0].doi if doi_records else None,  # newest DOI record referrer (ecr doi mint)
        "gateway": gateway_facts(client, ref.repository, bundle.digest),  # None: a plain registry
    }
    if as_json:
        print(json.dumps(document, indent=2, sort_keys=True))
        return
    _print_inspect(document)


def _print_inspect(doc: dict[str, Any]) -> None:
    meta = doc["metadata"]
    out.print(styled((str(meta.get("name", "?")), "bold"), f" {meta.get('version', '')}  {doc['reference']}"))
    if not doc["bundle"]:
        out.print(styled(("note: this index is not an ECR bundle (no ECR artifactType)", "yellow")))
    summary = Table(show_header=False, box=None, pad_edge=False)
    if gateway := doc.get("gateway"):
        stages = ", ".join(f"{stage} ({where})" if where else stage
                           for where, stage in sorted(gateway["stages"].items()))
        summary.add_row("visibility", f"{gateway['visibility']} (you may {', '.join(gateway['may']) or 'nothing'})")
        summary.add_row("stage", stages or "none recorded")
    for key in ("description", "authors", "license", "homepage", "documentation", "source", "revision", "created",
                "keywords", "inputs", "outputs", "runtime", "hardware", "doi"):
        if key in meta:
            value = meta[key]
            summary.add_row(key, value if isinstance(value, str) else json.dumps(value))
    if doc.get("doi") and doc["doi"] != meta.get("doi"):
        summary.add_row("doi", f"{doc['doi']} (DOI record referrer)")
    out.print(summary)
    platforms = Table("platform", "manifest", "size", title="images")
    for p in doc["platforms"]:
        platforms.add_row(p["platform"], p["digest"], human_size(p["size"]))
    out.print(platforms)
    if doc["files"]:
        files = Table("file", "role", "size", "digest", title="model and data")
        for f in doc["files"]:
            files.add_row(f["title"], f["role"], human_size(f["size"]), f["digest"])
        out.print(files)
    if doc["referrers"]:
        refs = Table("what", "digest", "artifactType", title="referrers")
        for r in doc["referrers"]:
            refs.add_row(r["label"], r["digest"], r["artifactType"] or "")
        out.print(refs)
