"""``ecr deploy k8s|podman|fetcher``: specs that run a bundle on a node, and the image they use.

``ecr deploy k8s REF --node W0A1`` asks the gateway for the node's facts (its
platform) and prints a Pod for that node; ``ecr deploy podman REF`` prints the same
Pod for ``podman kube play`` on this machine (a Virtual Waggle). The model-fetcher
image the init container runs is published once per ECR with ``ecr deploy fetcher``.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from ecr_oci.bundle.config import Platform
from ecr_oci.bundle.remote import fetch_bundle
from ecr_oci.cli.common import Insecure, PasswordStdin, PlainHttp, Username, connect, err, fail, handle_errors, out
from ecr_oci.deploy import spec
from ecr_oci.deploy.fetcher import build_fetcher_layout
from ecr_oci.errors import EcrError, SourceError
from ecr_oci.gateway.client import GatewayAdmin
from ecr_oci.registry.auth import Credentials, lookup_credentials
from ecr_oci.registry.client import RegistryClient
from ecr_oci.registry.reference import Reference, parse_reference

app = typer.Typer(help="Runnable specs for a bundle (Kubernetes, podman kube play) and the model-fetcher image.",
                  no_args_is_help=True)

Ref = Annotated[str, typer.Argument(help="HOST[:PORT]/REPOSITORY:TAG or @DIGEST of a bundle.")]
Fetcher = Annotated[str | None, typer.Option(
    "--fetcher-image", help=f"Init container image (default: REGISTRY/{spec.FETCHER_REPOSITORY}:latest, pinned).")]
MetricsPort = Annotated[int, typer.Option("--metrics-port", min=1, max=65535, help="Plugin metrics port.")]
Env = Annotated[list[str] | None, typer.Option("--env", "-e", help="Extra KEY=VALUE for the plugin (repeatable).")]
Output = Annotated[Path | None, typer.Option("--output", "-o", help="Write the spec here instead of stdout.")]


def _target(client: RegistryClient, ref: Reference, platform: Platform) -> spec.Target:
    bundle = fetch_bundle(client, ref)
    model_entry = bundle.model_entry()
    model = client.get_manifest(ref.repository, model_entry["digest"]).json() if model_entry else None
    scheme = "https" if client.base_url.startswith("https:") else "http"
    return spec.plan(bundle.index, bundle.digest, model, platform, registry=ref.registry,
                     repository=ref.repository, scheme=scheme)


def _fetcher(client: RegistryClient, ref: Reference, chosen: str | None) -> str:
    """The fetcher image, pinned by digest when the registry has it."""
    if chosen and "@" in chosen:
        return chosen
    name = chosen or f"{ref.registry}/{spec.FETCHER_REPOSITORY}:latest"
    try:
        target = parse_reference(name)
        digest = client.head_manifest(target.repository, target.reference) if target.registry == ref.registry \
            else None
    except EcrError:
        digest = None
    if digest is None:
        err.print(f"warning: {name} not found: publish it with `ecr deploy fetcher {name}`")
        return name
    return f"{target.registry}/{target.repository}@{digest}"


def _add_env(document: dict[str, object], env: list[str] | None) -> None:
    pairs = []
    for item in env or []:
        key, sep, value = item.partition("=")
        if not sep or not key.replace("_", "").isalnum():
            raise fail(f"--env {item!r}: want KEY=VALUE", 2)
        pairs.append({"name": key, "value": value})
    container = document["spec"]["containers"][0]  # type: ignore[index]
    container["env"] += pairs


def _checked_node(node: str | None) -> str | None:
    """A node id from the command line (it lands in labels, selectors and comments)."""
    from ecr_oci.profile.convention import check_node

    return check_node(node) if node is not None else None


def _emit(text: str, output: Path | None) -> None:
    if output:
        output.write_text(text)
        err.print(f"spec written to {output}")
    else:
        out.print(text, end="", markup=False, highlight=False)


def _node_platform(server: str, node: str, insecure: bool) -> Platform:
    username, password = os.environ.get("ECR_USERNAME"), os.environ.get("ECR_PASSWORD")
    host = server.split("://", 1)[-1].rstrip("/")
    creds = Credentials(username, password) if username and password is not None else lookup_credentials(host)
    facts = GatewayAdmin(server, creds, verify_tls=not insecure).node_facts(node).get("facts")
    if not facts:
        raise fail(f"node {node} has no recorded platform: pass --platform or record its facts", 2)
    return Platform.parse(str(facts["platform"]))


@app.command("k8s")
@handle_errors
def k8s(
    reference: Ref,
    node: Annotated[str, typer.Option("--node", help="Node to run on (its platform comes from its facts).")],
    platform: Annotated[str | None, typer.Option("--platform", help="Override the node's platform.")] = None,
    node_selector: Annotated[list[str] | None, typer.Option(
        "--node-selector", help="KEY=VALUE (default kubernetes.io/hostname=NODE).")] = None,
    fetcher_image: Fetcher = None,
    metrics_port: MetricsPort = spec.DEFAULT_METRICS_PORT,
    env: Env = None,
    output: Output = None,
    server: Annotated[str | None, typer.Option("--server", envvar="ECR_SERVER",
                                               help="Gateway (default: REF host).")] = None,
    plain_http: PlainHttp = None,
    insecure: Insecure = False,
    username: Username = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Print a Kubernetes Pod that runs a bundle on a Waggle node (k3s)."""
    _checked_node(node)
    ref, client = connect(reference, plain_http=plain_http, insecure=insecure, username=username,
                          password_stdin=password_stdin)
    chosen = Platform.parse(platform) if platform else _node_platform(server or client.base_url, node, insecure)
    target = _target(client, ref, chosen)
    selector = dict(s.split("=", 1) for s in node_selector or [] if "=" in s) or None
    document = spec.pod(target, fetcher_image=_fetcher(client, ref, fetcher_image), node=node,
                        node_selector=selector, metrics_port=metrics_port)
    _add_env(document, env)
    _emit(spec.render(document, header=spec.kubernetes_header(target, node)), output)


def _local_pod(reference: str, platform: str | None, node: str | None, fetcher_image: str | None,
               metrics_port: int, env: list[str] | None, plain_http: bool | None, insecure: bool,
               username: str | None, password_stdin: bool) -> tuple[Any, dict[str, Any]]:
    """The Pod document for this machine (a Virtual Waggle), shared by ``podman`` and ``docker``."""
    _checked_node(node)
    from ecr_oci.cli.bundle import host_platform

    ref, client = connect(reference, plain_http=plain_http, insecure=insecure, username=username,
                          password_stdin=password_stdin)
    target = _target(client, ref, Platform.parse(platform or host_platform()))
    document = spec.pod(target, fetcher_image=_fetcher(client, ref, fetcher_image), node=node,
                        metrics_port=metrics_port, kubernetes=False)
    _add_env(document, env)
    return target, document


@app.command("podman")
@handle_errors
def podman(
    reference: Ref,
    platform: Annotated[str | None, typer.Option("--platform", help="Default: this machine's.")] = None,
    node: Annotated[str | None, typer.Option("--node", help="Name of this Virtual Waggle (annotation only).")] = None,
    fetcher_image: Fetcher = None,
    metrics_port: MetricsPort = spec.DEFAULT_METRICS_PORT,
    env: Env = None,
    output: Output = None,
    plain_http: PlainHttp = None,
    insecure: Insecure = False,
    username: Username = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Print a Pod for `podman kube play` that runs a bundle on this machine (a Virtual Waggle)."""
    target, document = _local_pod(reference, platform, node, fetcher_image, metrics_port, env,
                                  plain_http, insecure, username, password_stdin)
    _emit(spec.render(document, header=spec.podman_header(target, node)), output)


@app.command("docker")
@handle_errors
def docker(
    reference: Ref,
    platform: Annotated[str | None, typer.Option("--platform", help="Default: this machine's.")] = None,
    node: Annotated[str | None, typer.Option("--node", help="Name of this node (label only).")] = None,
    network: Annotated[str | None, typer.Option("--network", help="docker run --network (e.g. host).")] = None,
    fetcher_image: Fetcher = None,
    metrics_port: MetricsPort = spec.DEFAULT_METRICS_PORT,
    env: Env = None,
    output: Output = None,
    plain_http: PlainHttp = None,
    insecure: Insecure = False,
    username: Username = None,
    password_stdin: PasswordStdin = False,
) -> None:
    """Print a shell script of docker commands that runs a bundle like the Pod does (docker has no Pods)."""
    target, document = _local_pod(reference, platform, node, fetcher_image, metrics_port, env,
                                  plain_http, insecure, username, password_stdin)
    _emit(spec.docker_script(document, target, network=network), output)


@app.command("fetcher")
@handle_errors
def fetcher(
    reference: Annotated[str, typer.Argument(help=f"Where to push it, e.g. HOST/{spec.FETCHER_REPOSITORY}:latest.")],
    busybox: Annotated[Path, typer.Option("--busybox", help="A static busybox for --arch.")] = Path("/bin/busybox"),
    arch: Annotated[str, typer.Option("--arch", help="Architecture of that busybox.")] = "amd64",
    deployment: Annotated[list[str] | None, typer.Option(
        "--deployment", help="Approve it for this deployment, so its nodes may pull it (repeatable).")] = None,
    plain_http: PlainHttp = None,
) -> None:
    """Build the model-fetcher image (busybox + ecr-fetch-model) and push it with skopeo.

    Nodes pull approved content only: approve the fetcher for each deployment (--deployment).
    """
    ref = parse_reference(reference)
    if not ref.tag:
        raise fail("give a tag to push to (e.g. :latest)", 2)
    with tempfile.TemporaryDirectory(prefix="ecr-fetcher-") as tmp:
        layout = Path(tmp) / "oci"
        build_fetcher_layout(layout, Path(tmp), busybox=busybox, architecture=arch)
        tls = "false" if (plain_http if plain_http is not None else RegistryClient(ref.registry).base_url
                          .startswith("http:")) else "true"
        cmd = ["skopeo", "copy", "-q", f"--dest-tls-verify={tls}", f"oci:{layout}:latest",
               f"docker://{ref.registry}/{ref.repository}:{ref.tag}"]
        creds = lookup_credentials(ref.registry)
        if os.environ.get("ECR_USERNAME") and os.environ.get("ECR_PASSWORD") is not None:
            creds = Credentials(os.environ["ECR_USERNAME"], os.environ["ECR_PASSWORD"])
        if creds is not None:  # an auth file, not --dest-creds: a password on a command line is public
            auth = Path(tmp) / "auth.json"
            token = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
            auth.write_text(json.dumps({"auths": {ref.registry: {"auth": token}}}))
            auth.chmod(0o600)
            cmd.insert(3, f"--dest-authfile={auth}")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SourceError(f"skopeo copy failed: {proc.stderr.strip()[-300:]}")
    client = RegistryClient(ref.registry, credentials=creds, plain_http=plain_http)
    digest = client.head_manifest(ref.repository, ref.tag or "")
    if deployment:
        admin = GatewayAdmin(ref.registry, creds)
        for name in deployment:
            admin.set_stage(ref.repository, digest or ref.tag or "", "approved", name)
            err.print(f"approved for {name}")
    out.print(f"{ref.registry}/{ref.repository}@{digest}" if digest else reference)
