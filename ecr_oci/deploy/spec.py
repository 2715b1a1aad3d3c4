"""Runnable specs for a bundle: a Kubernetes Pod (k3s on a Waggle node) or the same Pod for
``podman kube play`` (a Virtual Waggle).

The Pod runs the node's platform image pinned by digest. An init container (the
model-fetcher image, busybox + ``ecr-fetch-model``) fetches the model manifest by
digest, checks it and every model file against their digests, and writes them to an
``emptyDir`` the plugin mounts read-only at the path the bundle declares
(``model_path`` in ecr.yaml, default ``/app/model``). The plugin gets
``ECR_MODEL_DIR``, ``ECR_BUNDLE_DIGEST`` and ``METRICS_PORT``; Prometheus finds it by
the ``prometheus.io/*`` annotations. Spec: ``annotations-spec/v1/deploy.md``.

Everything here is pure: it works from the bundle index and model manifest
documents, so the CLI and the gateway's feed produce the same spec.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from ecr_oci import mediatypes as mt
from ecr_oci.bundle.annotations import metadata_from
from ecr_oci.bundle.config import Platform
from ecr_oci.errors import NotFoundError, ValidationError

DEFAULT_MODEL_PATH = "/app/model"
DEFAULT_METRICS_PORT = 9090
CREDENTIALS_SECRET = "ecr-node-credentials"  # keys: username, password (the node's credential)
PULL_SECRET = "ecr-pull"  # a kubernetes.io/dockerconfigjson secret with the same credential
FETCHER_REPOSITORY = "ecr/model-fetcher"
BUNDLE_ANNOTATION = mt.ECR_PREFIX + "bundle"
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$")
_DNS_LABEL = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True)
class ModelFile:
    digest: str
    path: str  # relative to the model directory


@dataclass(frozen=True)
class Target:
    """What a spec runs: one platform image of one bundle, and its model files.

    Attributes:
        registry: ``HOST[:PORT]`` of the ECR as the node reaches it.
        scheme: ``https`` or ``http`` (loopback and test registries).
    """

    registry: str
    scheme: str
    repository: str
    bundle: str
    name: str
    version: str
    platform: str
    image: str
    model_manifest: str | None
    model_files: tuple[ModelFile, ...]
    model_path: str
    hardware: dict[str, Any]

    @property
    def image_ref(self) -> str:
        return f"{self.registry}/{self.repository}@{self.image}"


def model_files(model_manifest: dict[str, Any]) -> tuple[ModelFile, ...]:
    """The model-role layers of a model manifest, placed relative to their common directory
    (``model/weights.bin`` and ``model/labels.txt`` land in the model path as
    ``weights.bin`` and ``labels.txt``, as ``ecr pull``/``ecr run`` place them).

    Raises:
        ValidationError: a title that is not a plain relative path (it would escape the volume).
    """
    entries: list[tuple[str, str]] = []
    for layer in model_manifest.get("layers") or []:
        annotations = layer.get("annotations") or {}
        if annotations.get(mt.ECR_LAYER_ROLE, "model") != "model" or layer.get("mediaType") != mt.MODEL_LAYER:
            continue
        title = str(annotations.get(mt.OCI_TITLE) or "")
        if not _SAFE_PATH.match(title):
            raise ValidationError(f"model file title {title!r} is not a plain relative path", field="model")
        entries.append((str(layer["digest"]), title))
    if not entries:
        return ()
    parts = [title.split("/")[:-1] for _, title in entries]
    common = 0
    while all(len(p) > common for p in parts) and len({p[common] for p in parts}) == 1:
        common += 1
    return tuple(ModelFile(digest, "/".join(title.split("/")[common:])) for digest, title in entries)


def plan(index: dict[str, Any], bundle: str, model_manifest: dict[str, Any] | None, platform: Platform, *,
         registry: str, repository: str, scheme: str = "https") -> Target:
    """Choose the image for ``platform`` and the model files of a bundle.

    Raises:
        NotFoundError: the bundle has no image for ``platform``.
        ValidationError: not a bundle index, or unusable model titles.
    """
    if index.get("artifactType") != mt.BUNDLE_ARTIFACT_TYPE:
        raise ValidationError("not an ECR bundle index")
    annotations = dict(index.get("annotations") or {})
    metadata = metadata_from(annotations)
    images = [m for m in index.get("manifests") or [] if (m.get("platform") or {}).get("os") not in (None, "unknown")]
    entry = next((m for m in images if platform.matches(m["platform"])), None)
    if entry is None and platform.architecture == "arm64":
        entry = next((m for m in images if m["platform"].get("architecture") == "arm64"
                      and m["platform"].get("variant") in (None, "v8")), None)
    if entry is None:
        have = ", ".join("/".join(str(m["platform"][k]) for k in ("os", "architecture", "variant")
                                  if m["platform"].get(k)) for m in images) or "none"
        raise NotFoundError(f"the bundle has no {platform} image (it has: {have})")
    model_entry = next((m for m in index.get("manifests") or [] if m.get("artifactType") == mt.MODEL_ARTIFACT_TYPE),
                       None)
    files = model_files(model_manifest) if model_manifest is not None else ()
    hardware = metadata.get("hardware") if isinstance(metadata.get("hardware"), dict) else {}
    return Target(
        registry=registry, scheme=scheme, repository=repository, bundle=bundle,
        name=str(metadata.get("name") or repository.rsplit("/", 1)[-1]), version=str(metadata.get("version") or ""),
        platform=str(platform), image=str(entry["digest"]),
        model_manifest=str(model_entry["digest"]) if model_entry and files else None, model_files=files,
        model_path=annotations.get(mt.ECR_MODEL_PATH) or DEFAULT_MODEL_PATH, hardware=dict(hardware or {}),
    )


def pod_name(target: Target) -> str:
    """A DNS-1123 label: the bundle name and 12 hex digits of its digest."""
    base = _DNS_LABEL.sub("-", target.name.lower()).strip("-")[:40] or "bundle"
    return f"{base}-{target.bundle.split(':')[-1][:12]}"


def _resources(hardware: dict[str, Any]) -> dict[str, Any]:
    requests = {k: str(hardware[k]) for k in ("memory", "cpu") if hardware.get(k)}
    if not requests:
        return {}
    limits = {"memory": requests["memory"]} if "memory" in requests else {}
    return {"requests": requests, **({"limits": limits} if limits else {})}


def pod(target: Target, *, fetcher_image: str, node: str | None = None, node_selector: dict[str, str] | None = None,
        metrics_port: int = DEFAULT_METRICS_PORT, kubernetes: bool = True) -> dict[str, Any]:
    """The Pod document. ``kubernetes`` False: for ``podman kube play`` (no node
    selector, no image pull secret: podman uses its own login)."""
    labels = {"app.kubernetes.io/name": pod_name(target).rsplit("-", 1)[0],
              "app.kubernetes.io/managed-by": "ecr", "org.waggle.ecr/bundle": target.bundle.split(":")[-1][:63]}
    if target.version and re.match(r"^[A-Za-z0-9._-]{1,63}$", target.version):
        labels["app.kubernetes.io/version"] = target.version
    annotations = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(metrics_port),
        "prometheus.io/path": "/metrics",
        BUNDLE_ANNOTATION: target.bundle,
        mt.ECR_PREFIX + "repository": target.repository,
        mt.ECR_PREFIX + "platform": target.platform,
    }
    if node:
        annotations[mt.ECR_PREFIX + "node"] = node
    if not kubernetes:
        # podman 4.3 refuses annotation values over 63 characters (a limit Kubernetes puts
        # on labels only); the digest still reaches the plugin as ECR_BUNDLE_DIGEST.
        annotations = {k: v for k, v in annotations.items() if len(v) <= 63}
    env = [
        {"name": "ECR_BUNDLE_DIGEST", "value": target.bundle},
        {"name": "ECR_MODEL_DIR", "value": target.model_path},
        {"name": "METRICS_PORT", "value": str(metrics_port)},
    ]
    main: dict[str, Any] = {
        "name": "plugin",
        "image": target.image_ref,
        "imagePullPolicy": "IfNotPresent",
        "env": env,
    }
    if kubernetes:  # podman publishes declared ports, which host networking refuses
        main["ports"] = [{"name": "metrics", "containerPort": metrics_port}]
    if resources := _resources(target.hardware):
        main["resources"] = resources
    # podman 4.3 applies the pod's restart policy to init containers too: with Always it
    # restarts the finished fetcher and then fails to remove it.
    spec: dict[str, Any] = {"restartPolicy": "Always" if kubernetes else "OnFailure", "containers": [main]}
    if target.model_manifest:
        main["volumeMounts"] = [{"name": "model", "mountPath": target.model_path, "readOnly": True}]
        secret = {"name": CREDENTIALS_SECRET, "optional": True}
        spec["initContainers"] = [{
            "name": "fetch-model",
            "image": fetcher_image,
            "imagePullPolicy": "IfNotPresent",
            "env": [
                {"name": "ECR_REGISTRY", "value": target.registry},
                {"name": "ECR_REGISTRY_SCHEME", "value": target.scheme},
                {"name": "ECR_REPOSITORY", "value": target.repository},
                {"name": "ECR_MODEL_MANIFEST", "value": target.model_manifest},
                {"name": "ECR_MODEL_FILES", "value": "".join(f"{f.digest} {f.path}\n" for f in target.model_files)},
                {"name": "ECR_MODEL_TARGET", "value": "/model"},
                {"name": "ECR_USERNAME", "valueFrom": {"secretKeyRef": {**secret, "key": "username"}}},
                {"name": "ECR_PASSWORD", "valueFrom": {"secretKeyRef": {**secret, "key": "password"}}},
            ],
            "volumeMounts": [{"name": "model", "mountPath": "/model"}],
        }]
        spec["volumes"] = [{"name": "model", "emptyDir": {}}]
    if kubernetes:
        spec["imagePullSecrets"] = [{"name": PULL_SECRET}]
        selector = node_selector or ({"kubernetes.io/hostname": node.lower()} if node else None)
        if selector:
            spec["nodeSelector"] = selector
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod_name(target), "labels": labels, "annotations": annotations}, "spec": spec}


def render(document: dict[str, Any], *, header: list[str] | None = None) -> str:
    """YAML with a comment header (lines are ours, never metadata: nothing to escape)."""
    # One comment line per entry, whatever the entry holds (a newline would end the comment).
    comments = "".join("# " + " ".join(line.splitlines()) + "\n" for line in header or [])
    return comments + yaml.safe_dump(document, sort_keys=False, default_flow_style=False)


def kubernetes_header(target: Target, node: str | None) -> list[str]:
    who = node or "NODE"
    return [
        f"Runs {target.repository}@{target.bundle} ({target.platform}) on {who}.",
        "Credentials (the node's ECR credential; never part of this file):",
        f"  kubectl create secret docker-registry {PULL_SECRET} --docker-server={target.registry} "
        f"--docker-username={who} --docker-password=CREDENTIAL",
        f"  kubectl create secret generic {CREDENTIALS_SECRET} --from-literal=username={who} "
        "--from-literal=password=CREDENTIAL",
        "Then: kubectl apply -f THIS-FILE",
    ]


def podman_header(target: Target, node: str | None) -> list[str]:
    who = node or "NODE"
    return [
        f"Runs {target.repository}@{target.bundle} ({target.platform}) with podman kube play.",
        "Credentials (the node's ECR credential; never part of this file):",
        f"  podman login {target.registry} -u {who}",
        f"  printf '{{\"username\":\"%s\",\"password\":\"%s\"}}' $(printf %s {who} | base64) "
        f"$(printf %s CREDENTIAL | base64) | podman secret create {CREDENTIALS_SECRET} -",
        "Then: podman kube play --network host THIS-FILE   (podman kube down THIS-FILE to stop)",
    ]


def docker_script(document: dict[str, Any], target: Target, *, network: str | None = None) -> str:
    """The same Pod as a POSIX shell script of ``docker`` commands (docker has no Pods):
    a volume, the fetcher run once into it, then the plugin with the volume read-only.

    Every value is shell-quoted: digests, paths and names are validated, but ``-e``
    values and the registry address come from the user.
    """
    import shlex

    q = shlex.quote
    name = document["metadata"]["name"]
    spec = document["spec"]
    plugin = spec["containers"][0]
    net = ["--network", network] if network else []
    lines = [
        "#!/bin/sh",
        f"# Runs {target.repository}@{target.bundle} ({target.platform}) with docker.",
        f"# Needs: docker login {target.registry} (the node's credential), and the same credential in",
        "# ECR_USERNAME / ECR_PASSWORD for the model fetch.",
        "set -eu",
    ]
    mounts: list[str] = []
    if init := spec.get("initContainers"):
        fetch = init[0]
        volume = f"{name}-model"
        env = [a for e in fetch["env"] if "value" in e for a in ("-e", f"{e['name']}={e['value']}")]
        env += ["-e", "ECR_USERNAME", "-e", "ECR_PASSWORD"]
        lines += [
            f"docker volume rm -f {q(volume)} >/dev/null 2>&1 || true",
            f"docker volume create {q(volume)} >/dev/null",
            " ".join(["docker", "run", "--rm", *net, "-v", q(f"{volume}:/model"), *map(q, env), q(fetch["image"])]),
        ]
        mounts = ["-v", q(f"{volume}:{target.model_path}:ro")]
    env = [a for e in plugin["env"] for a in ("-e", f"{e['name']}={e['value']}")]
    annotations = {**document["metadata"]["annotations"], BUNDLE_ANNOTATION: target.bundle}
    labels = [a for k, v in annotations.items() for a in ("--label", f"{k}={v}")]
    memory = (plugin.get("resources") or {}).get("limits", {}).get("memory")
    limits = ["--memory", _docker_memory(memory)] if memory else []
    lines += [
        f"docker rm -f {q(name)} >/dev/null 2>&1 || true",
        " ".join(["docker", "run", "-d", "--restart", "on-failure", "--name", q(name), *net, *mounts, *limits,
                  *map(q, env), *map(q, labels), q(plugin["image"])]),
    ]
    return "\n".join(lines) + "\n"


def _docker_memory(quantity: str) -> str:
    """A Kubernetes memory quantity as docker's ``--memory`` (bytes)."""
    from ecr_oci.deploy.facts import quantity as parse

    return str(int(parse(quantity)))
