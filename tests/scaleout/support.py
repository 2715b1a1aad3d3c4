"""Helpers for the scale-out tests: clients as processes, bundle checks, the registry tier reached directly."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from ecr_oci import mediatypes as mt
from ecr_oci.bundle.remote import fetch_bundle
from ecr_oci.gateway.tokens import SigningKey, TokenIssuer
from ecr_oci.profile import Hardware, Latency, MetricsSummary, ProfileSummary, ScrapeSource, Window, Workload
from ecr_oci.profile.attach import attach_profile
from ecr_oci.profile.result import ProfileResult
from ecr_oci.registry.client import MANIFEST_ACCEPT, RegistryClient
from ecr_oci.registry.reference import Reference
from tests.gateway.support import password_of
from tests.scaleout.stack import ScaleOut

PODMAN = ["podman", "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file"]


def run(cmd: list[str], env: dict[str, str] | None = None, stdin: str | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, env=env, input=stdin, timeout=timeout)


def ecr(stack: ScaleOut, user: str | None, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``ecr ARGS`` as ``user`` (None: anonymous) through the load balancer, trusting the test CA."""
    env = stack.client_env()
    if user:
        env |= {"ECR_USERNAME": user, "ECR_PASSWORD": password_of(user, stack.gateways[0])}
    return run(["ecr", *args], env=env, timeout=timeout)


def registry_token(stack: ScaleOut, repository: str) -> str:
    """A token the registry replicas accept (the gateways' upstream key), for reaching them directly."""
    issuer = TokenIssuer(SigningKey(stack.gateways[0].data_dir / "keys", "upstream"), issuer="ecr-gateway",
                         audience="ecr-registry", ttl=600)
    token, _ = issuer.mint("test", [{"type": "repository", "name": repository, "actions": ["pull"]}])
    return token


def manifest_at_replica(stack: ScaleOut, index: int, repository: str, reference: str) -> str | None:
    """The digest one registry replica (0 or 1) answers for ``repository:reference``, None if unknown."""
    port = stack.registries[index].port
    resp = requests.head(f"http://127.0.0.1:{port}/v2/{repository}/manifests/{reference}", timeout=30,
                         headers={"Authorization": f"Bearer {registry_token(stack, repository)}",
                                  "Accept": MANIFEST_ACCEPT})
    return resp.headers.get("Docker-Content-Digest") if resp.status_code == 200 else None


def missing_parts(client: RegistryClient, repository: str, digest: str) -> list[str]:
    """Every manifest and blob below ``digest`` that the registry cannot serve (empty: complete)."""
    missing: list[str] = []
    try:
        manifest = client.get_manifest(repository, digest)
    except Exception as exc:  # reported, not raised: the caller lists what is missing
        return [f"{digest} ({exc.__class__.__name__})"]
    document: dict[str, Any] = manifest.json()
    for child in document.get("manifests", []):
        missing += missing_parts(client, repository, child["digest"])
    for blob in [document.get("config"), *document.get("layers", [])]:
        if blob and client.blob_size(repository, blob["digest"]) != blob["size"]:
            missing.append(blob["digest"])
    return missing


def attach_test_profile(client: RegistryClient, repository: str, tag: str, node: str = "W0S1") -> str:
    """Attach a small valid profile to ``repository:tag`` (as a node's collector would); its digest."""
    bundle = fetch_bundle(client, Reference(client.registry, repository, tag, None))
    summary = ProfileSummary(
        bundle=bundle.digest, node=node, stage="node", hardware=Hardware("Jetson", "arm64", 8 << 30, "nvidia-volta"),
        window=Window(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 5, tzinfo=UTC)),
        workload=Workload("scale-out test"),
        metrics=MetricsSummary(Latency(0.1, 0.2, 0.25, 0.12, None, "histogram"), 10.0, 0.5, 123, 0, 10),
        source=ScrapeSource("http://127.0.0.1:1/metrics", 1.0, 301),
    )
    return attach_profile(client, bundle, ProfileResult(summary, ()))


def profile_digests(client: RegistryClient, repository: str, digest: str) -> list[str]:
    return [d["digest"] for d in client.referrers(repository, digest, mt.PROFILE_ARTIFACT_TYPE)]


def gateway_bytes_out(stack: ScaleOut) -> float:
    """Blob and manifest bytes both gateways sent to clients (their ``/metrics``)."""
    total = 0.0
    for gateway in stack.gateways:
        text = requests.get(f"{gateway.url}/metrics", timeout=30).text
        for line in text.splitlines():
            if line.startswith("ecr_gateway_bytes_total") and 'direction="out"' in line:
                total += float(line.rsplit(" ", 1)[1])
    return total


def read_json(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


KEY_PASSWORD = "scale-out-key-password"


def keygen(stack: ScaleOut, prefix: Path) -> tuple[Path, Path]:
    """A cosign-compatible key pair (``ecr keygen``): (private, public)."""
    made = run(["ecr", "keygen", "--output-prefix", str(prefix)], env=stack.client_env() | {
        "COSIGN_PASSWORD": KEY_PASSWORD})
    assert made.returncode == 0, made.stderr
    return prefix.with_suffix(".key"), prefix.with_suffix(".pub")


def push_signed(stack: ScaleOut, root: Path, reference: str, key: Path) -> str:
    """``ecr push --key`` as alice through the balancer; the pushed index digest."""
    env = stack.client_env() | {"ECR_USERNAME": "alice", "ECR_PASSWORD": password_of("alice", stack.gateways[0]),
                                "COSIGN_PASSWORD": KEY_PASSWORD}
    pushed = run(["ecr", "push", "--quiet", "--key", str(key), str(root), reference], env=env)
    assert pushed.returncode == 0, pushed.stderr
    return pushed.stdout.strip().rsplit("@", 1)[1]


def blob_key(digest: str) -> str:
    """The object name of a blob in Distribution's storage layout."""
    hexdigest = digest.split(":", 1)[1]
    return f"docker/registry/v2/blobs/sha256/{hexdigest[:2]}/{hexdigest}/data"
