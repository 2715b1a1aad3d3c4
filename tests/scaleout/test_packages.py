"""Packages an operator deploys: the gateway's OCI image and its Kubernetes pod spec.

The image is built from Debian packages and the project's wheel (twice: same digest),
pushed by ``ecr`` like any bundle into the replicated setup, pulled back by podman
through the TLS balancer, and run by ``podman kube play`` from
``deploy/kubernetes/gateway.yaml``'s pod template, joined to the setup as a third
gateway (same PostgreSQL, registry tier and keys). ``deploy/compose/registry.yml`` is
what every other scale-out test runs (``stack.registry_config``).

What ``podman kube play`` (4.3) cannot do, and the test substitutes (documented in
deploy/README.md): Secret *volumes* (podman panics), so the ``keys`` volume becomes a
hostPath holding the same files; container ports with host networking, so the probes
name the port number; podman secrets are JSON maps of base64 values.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.gateway.support import ADMIN_PASSWORD, password_of
from tests.scaleout.ceph import ACCESS_KEY, SECRET_KEY, CephCluster
from tests.scaleout.processes import spawn
from tests.scaleout.stack import ScaleOut
from tests.scaleout.support import PODMAN, ecr, run
from tests.scaleout.tls import LocalCA
from tests.support import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BUILDER = ROOT / "deploy" / "image" / "build_gateway_image.py"
KUBE = ROOT / "deploy" / "kubernetes"
CACHE = Path(os.environ.get("ECR_GATEWAY_IMAGE_CACHE", str(ROOT / "deploy" / "image" / "build" / "cache")))
IMAGE = "alice/ecr-gateway"


def _build(out: Path) -> dict[str, str]:
    done = subprocess.run([sys.executable, str(BUILDER), "--out", str(out), "--cache", str(CACHE)],
                          capture_output=True, text=True, timeout=1200)
    if done.returncode != 0:
        pytest.fail(f"building the gateway image failed:\n{done.stdout[-1500:]}\n{done.stderr[-2500:]}")
    result: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(scope="module")
def gateway_image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The image built twice from the same inputs; (layout of the second build, its digest)."""
    work = tmp_path_factory.mktemp("gateway-image")
    first, second = _build(work / "one"), _build(work / "two")
    assert first["digest"] == second["digest"], "two builds from the same inputs differ"
    return work / "two", second["digest"]


@pytest.fixture
def podman_store() -> Iterator[list[str]]:
    """podman with its own short-lived storage (a runroot under 50 characters)."""
    base = Path(tempfile.mkdtemp(prefix="ecr-kp-", dir="/tmp"))
    conf = base / "containers.conf"
    conf.write_text('[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n')
    command = [*PODMAN, "--root", str(base / "root"), "--runroot", str(base / "rr"), "--runtime", "runc"]
    try:
        yield command
    finally:
        subprocess.run([*command, "pod", "rm", "-f", "-a"], capture_output=True, timeout=120,
                       env={**os.environ, "CONTAINERS_CONF": str(conf)})
        subprocess.run([*command, "system", "reset", "-f"], capture_output=True, timeout=120)
        shutil.rmtree(base, ignore_errors=True)


def _podman_pod_spec(stack: ScaleOut, keys: Path, port: int, image: str) -> dict[str, Any]:
    """gateway.yaml's Deployment, with only what podman 4.3 cannot play substituted."""
    deployment = next(d for d in yaml.safe_load_all((KUBE / "gateway.yaml").read_text()) if d["kind"] == "Deployment")
    deployment["spec"]["replicas"] = 1
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    container["image"] = image
    values = {"0.0.0.0:5000": f"127.0.0.1:{port}", "http://ecr-registry:5000": stack.internal_url,
              "https://ecr.example.org": stack.url}  # the addresses an operator edits
    assert set(values) <= set(container["args"])
    container["args"] = [values.get(a, a) for a in container["args"]]
    assert container.pop("ports") == [{"name": "http", "containerPort": 5000}]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
        container[probe]["httpGet"]["port"] = port
    volume = next(v for v in pod["volumes"] if v["name"] == "keys")
    assert volume.pop("secret")["secretName"] == "ecr-keys"
    volume["hostPath"] = {"path": str(keys), "type": "Directory"}
    return dict(deployment)


def test_gateway_image_pushed_by_ecr_runs_from_the_kubernetes_pod_spec(
        stack: ScaleOut, gateway_image: tuple[Path, str], podman_store: list[str], tmp_path: Path) -> None:
    layout, digest = gateway_image
    sys.path.insert(0, str(BUILDER.parent))
    import build_gateway_image

    bundle = build_gateway_image.bundle_dir(layout, tmp_path / "bundle", "0.1.0")
    pushed = ecr(stack, "alice", "push", "--quiet", str(bundle), f"{stack.host}/{IMAGE}:0.1.0")
    assert pushed.returncode == 0, pushed.stderr
    index = stack.client("eve").get_manifest(IMAGE, "0.1.0").json()
    assert digest in {m["digest"] for m in index["manifests"]}  # the built image, unchanged

    conf = Path(podman_store[podman_store.index("--root") + 1]).parent / "containers.conf"
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    image = f"{stack.host}/{IMAGE}:0.1.0"
    pulled = run([*podman_store, "pull", "--cert-dir", str(stack.pki.cert_dir()), "--creds",
                  f"eve:{password_of('eve', stack.gateways[0])}", image], env=env)
    assert pulled.returncode == 0, pulled.stderr

    # a third gateway of the setup: same keys, PostgreSQL and registry tier
    keys = tmp_path / "keys"
    shutil.copytree(stack.gateways[0].data_dir / "keys", keys)
    for path in [keys, *keys.iterdir()]:
        os.chown(path, 65534, 65534)
    port = free_port()
    config = yaml.safe_load((KUBE / "config.yaml").read_text())
    config["data"]["state-url"] = stack.state_url
    manifests = tmp_path / "play.yaml"
    manifests.write_text(yaml.safe_dump_all([config, _podman_pod_spec(stack, keys, port, image)]))
    secrets = {"postgres-password": "unused (trust authentication)", "admin-password": ADMIN_PASSWORD}
    secret_file = tmp_path / "ecr-secrets.json"
    secret_file.write_text(json.dumps({k: base64.b64encode(v.encode()).decode() for k, v in secrets.items()}))
    created = run([*podman_store, "secret", "create", "ecr-secrets", str(secret_file)], env=env)
    assert created.returncode == 0, created.stderr
    played = run([*podman_store, "kube", "play", "--network", "host", str(manifests)], env=env)
    assert played.returncode == 0, played.stderr

    url = f"http://127.0.0.1:{port}"

    def logs() -> str:
        shown = run([*podman_store, "logs", "ecr-gateway-pod-0-gateway"], env=env)
        text = shown.stdout + shown.stderr
        errors = [line for line in text.splitlines() if "Error" in line or "error" in line]
        return "\n".join(errors[-10:]) + "\n" + text[-1000:]

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            time.sleep(0.5)
    else:
        pytest.fail(f"the pod's gateway did not answer /healthz:\n{logs()}")
    # it serves the setup's users and content
    token = requests.get(f"{url}/auth/token", params={"service": "ecr", "scope": f"repository:{IMAGE}:pull"},
                         auth=("eve", password_of("eve", stack.gateways[0])), timeout=30)
    assert token.status_code == 200, logs()
    tags = requests.get(f"{url}/v2/{IMAGE}/tags/list", timeout=30,
                        headers={"Authorization": f"Bearer {token.json()['token']}"})
    assert tags.status_code == 200 and "0.1.0" in tags.json()["tags"], logs()
    user = run([*podman_store, "inspect", "--format", "{{.Config.User}}", "ecr-gateway-pod-0-gateway"], env=env)
    assert user.stdout.strip() == "65534:65534"  # the pod spec's runAsUser/runAsGroup


def test_compose_trial_object_store_script_serves_s3_and_stops_cleanly(pki: LocalCA, tmp_path: Path) -> None:
    """deploy/compose/ceph-trial.sh (the compose file's trial object store), run on this host with its
    own ports (the session's cluster keeps the default monitor ports): S3 over TLS, then a clean stop."""
    mon_ports, rgw_port = f"{free_port()} {free_port()}", free_port()
    root = tmp_path / "ceph"
    env = {**os.environ, "CEPH_TRIAL_ROOT": str(root), "MON_PORTS": mon_ports, "RGW_ENDPOINT": f"127.0.0.1:{rgw_port}",
           "TLS_CERT": str(pki.cert), "TLS_KEY": str(pki.key), "S3_ACCESS_KEY": ACCESS_KEY, "S3_SECRET_KEY": SECRET_KEY}
    log = tmp_path / "ceph-trial.log"
    script = spawn(["bash", str(ROOT / "deploy" / "compose" / "ceph-trial.sh")], log, env=env, sig=signal.SIGTERM)
    try:
        deadline = time.monotonic() + 90
        while "object store ready" not in log.read_text(errors="replace"):
            assert script.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")[-2000:]
            time.sleep(0.2)
        cluster = CephCluster(root=root, rgw_port=rgw_port, scheme="https", host="localhost")
        cluster.create_bucket("trial", ca_file=pki.ca)
        sigv4 = ["curl", "-sS", "-f", "--cacert", str(pki.ca), "--aws-sigv4", "aws:amz:us-east-1:s3",
                 "--user", f"{ACCESS_KEY}:{SECRET_KEY}", "-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"]
        url = f"{cluster.endpoint}/trial/hello"
        assert run([*sigv4, "-X", "PUT", "--data-binary", "hello from the trial store", url]).returncode == 0
        assert run([*sigv4, url]).stdout == "hello from the trial store"
    finally:
        script.terminate()
        script.wait(60)
    leftovers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline(p).find(str(root)) >= 0]
    assert leftovers == [], "daemons outlived the script"


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
