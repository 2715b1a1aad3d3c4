"""Acceptance, the whole loop: a node registered with facts; a bundle approved for its
deployment appears in the feed; the spec `ecr deploy podman` prints for the node runs under a
real `podman kube play` (the init container fetches and verifies the model by digest from the
gateway with the node's credential; the example plugin reads it read-only at /app/model and
serves metrics labelled with the bundle digest); a real Prometheus scrapes it and the gateway's
collector attaches a profile nobody asked for, which the feed then shows; revoking the
approval removes the bundle from the feed and the node's next pull is refused."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.gateway.support import PASSWORDS, GatewayProcess, password_of
from tests.nodes.conftest import ecr
from tests.profile.support import PrometheusServer
from tests.support import die_with_parent, free_port, wait_http

pytestmark = pytest.mark.slow

PODMAN = ["podman", "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file",
          "--runtime", "runc"]
REPO = "alice/bird-detector"
SECRET = "ecr-node-credentials"


def podman(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PODMAN, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False)


@pytest.fixture
def podman_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """What kube play needs here (FIELD-NOTES): runc, catatonit, ulimits from a containers.conf."""
    for tool in ("podman", "runc", "catatonit"):
        if not shutil.which(tool) and not Path(f"/usr/libexec/podman/{tool}").exists():
            pytest.fail(f"{tool} is not installed: run `make deps`")
    conf = tmp_path / "containers.conf"
    conf.write_text('[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n')
    yield {**os.environ, "CONTAINERS_CONF": str(conf)}


@pytest.fixture
def loop_gw(tmp_path: Path) -> Iterator[tuple[GatewayProcess, int]]:
    """A gateway collecting profiles every 3 s from a Prometheus (started later) on a known port."""
    prom_port = free_port()
    (tmp_path / "gw").mkdir()
    gateway = GatewayProcess(tmp_path / "gw" / "data", extra_args=[
        "--collect-prometheus", f"http://127.0.0.1:{prom_port}", "--collect-interval", "3s"])
    gateway.start()
    # the stage moves on the profile's evidence, without anyone typing a command
    (gateway.data_dir / "stage-policy.json").write_text(json.dumps({"profile_triggers": {"node": "tested-node"}}))
    admin = gateway.admin()
    for user, password in PASSWORDS.items():
        admin.add_user(user, password)
    yield gateway, prom_port
    gateway.stop()


def test_the_loop_feed_spec_kube_play_metrics_profile_revocation(
    loop_gw: tuple[GatewayProcess, int], example_bundle: Path, podman_env: dict[str, str], tmp_path: Path
) -> None:
    gw, prom_port = loop_gw
    pushed = ecr(gw, "alice", "push", "--quiet", str(example_bundle), f"{gw.host}/{REPO}:1.2.0")
    assert pushed.returncode == 0, pushed.stderr
    bundle = pushed.stdout.strip().rsplit("@", 1)[1]
    gw.admin("alice").set_visibility(REPO, "protected")
    added = ecr(gw, "admin", "admin", "node", "add", "VW01", "--deployment", "lab", "--platform", "linux/amd64",
                "--memory", "2Gi", "--sensor", "camera")
    assert added.returncode == 0, added.stderr
    gw.nodes["VW01"] = added.stdout.strip()
    assert ecr(gw, "admin", "stage", "set", f"{gw.host}/{REPO}:1.2.0", "approved", "--deployment", "lab"
               ).returncode == 0
    fetcher = ecr(gw, "admin", "deploy", "fetcher", f"{gw.host}/ecr/model-fetcher:latest", "--deployment", "lab")
    assert fetcher.returncode == 0, fetcher.stderr
    feed_url = f"{gw.url}/api/v1/deployments/lab/feed"
    node_auth = ("VW01", gw.nodes["VW01"])
    [entry] = requests.get(feed_url, auth=node_auth, timeout=30).json()["bundles"]  # the fetcher is not a bundle
    assert entry["digest"] == bundle and entry["nodes"][0]["can_run"] and entry["nodes"][0]["spec"]
    assert entry["signatures"]["countersigned"]

    # the node itself generates its spec (its credential reads the bundle and the fetcher)
    port = free_port()
    spec_file = tmp_path / "pod.yaml"
    generated = ecr(gw, "VW01", "deploy", "podman", f"{gw.host}/{REPO}:1.2.0", "--node", "VW01",
                    "--metrics-port", str(port), "-e", "FRAMES=0", "-e", "FRAME_INTERVAL=0.05",
                    "-e", "METRICS_ADDR=127.0.0.1", "-o", str(spec_file))
    assert generated.returncode == 0, generated.stderr
    pod = yaml.safe_load(spec_file.read_text())
    [plugin] = pod["spec"]["containers"]
    images = json.loads(ecr(gw, "alice", "inspect", "--json", f"{gw.host}/{REPO}:1.2.0").stdout)
    assert plugin["image"].endswith("@" + _amd64_digest(images))  # pinned by digest
    assert {"name": "ECR_BUNDLE_DIGEST", "value": bundle} in plugin["env"]
    assert plugin["volumeMounts"] == [{"name": "model", "mountPath": "/app/model", "readOnly": True}]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    assert plugin["resources"] == {"requests": {"memory": "256Mi"}, "limits": {"memory": "256Mi"}}
    assert "@sha256:" in pod["spec"]["initContainers"][0]["image"]

    auth = Path(os.environ["REGISTRY_AUTH_FILE"])
    token = base64.b64encode(f"VW01:{gw.nodes['VW01']}".encode()).decode()
    auth.write_text(json.dumps({"auths": {gw.host: {"auth": token}}}))
    secret_file = tmp_path / "secret.json"
    secret_file.write_text(json.dumps({"username": base64.b64encode(b"VW01").decode(),
                                       "password": base64.b64encode(gw.nodes["VW01"].encode()).decode()}))
    podman("secret", "rm", SECRET)
    assert podman("secret", "create", SECRET, str(secret_file)).returncode == 0
    name = pod["metadata"]["name"]
    try:
        # --replace: the pod's name follows the bundle digest, which `make demo` (tests/examples)
        # plays too in the machine's one podman store; a pod it left must not fail this test
        played = podman("kube", "play", "--replace", "--network", "host", "--tls-verify=false", str(spec_file),
                        env=podman_env)
        assert played.returncode == 0, played.stderr
        metrics = _wait_metrics(port, bundle)
        assert f'ecr_inference_seconds_count{{bundle="{bundle}"}}' in metrics
        logged = podman("logs", f"{name}-plugin")
        logs = logged.stdout + logged.stderr
        weights = (example_bundle / "model" / "weights.bin").read_bytes()
        assert f"model sha256:{hashlib.sha256(weights).hexdigest()} from /app/model" in logs
        assert "frame=0 label=" in logs
        assert "Read-only file system" in podman("exec", f"{name}-plugin", "/usr/bin/python3", "-c",
                                                 "open('/app/model/x', 'w')").stderr

        # Prometheus scrapes the plugin and the node exporter; the gateway's collector attaches
        # a node profile by itself, its CPU and memory from the exporter's container series
        exporter_port = free_port()
        exporter = subprocess.Popen(
            [sys.executable, "-c", "from ecr_oci.cli import run; run()", "node-exporter", "--node", "VW01",
             "--listen", f"127.0.0.1:{exporter_port}", "--engine", " ".join(PODMAN[:7]), "--feed", feed_url],
            env={**os.environ, "ECR_USERNAME": "VW01", "ECR_PASSWORD": gw.nodes["VW01"]},
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        (tmp_path / "prom").mkdir()
        prometheus = None
        try:
            wait_http(f"http://127.0.0.1:{exporter_port}/metrics", proc=exporter)
            prometheus = PrometheusServer(tmp_path / "prom", [f"127.0.0.1:{port}", f"127.0.0.1:{exporter_port}"],
                                          node="VW01", port=prom_port)
            performance = _wait_performance(feed_url, node_auth)
            # The exporter's container series take over once Prometheus holds two samples of
            # them in a window; a first profile in the exporter's first seconds may still use
            # the plugin's own process_* series (the fallback), so wait for a later one.
            queries = _wait_profile_queries(gw, bundle, lambda q: "ecr_container_cpu_seconds_total" in q["cpu_cores"]
                                            and "ecr_container_memory_working_set_bytes" in q["peak_rss_bytes"])
        finally:
            if prometheus:
                prometheus.stop()
            exporter.terminate()
            exporter.wait(10)
        assert performance["node"] == "VW01" and performance["stage"] == "node"
        assert performance["latency_seconds"]["p50"] > 0
        assert performance["cpu_cores"] > 0 and performance["peak_rss_bytes"] > 0
        referrers = gw.call("admin", "GET", f"/v2/{REPO}/referrers/{bundle}", f"repository:{REPO}:pull").json()
        assert performance["profile"] in {m["digest"] for m in referrers["manifests"]}
        assert queries["cpu_cores"].startswith("sum(rate(ecr_container_cpu_seconds_total"), queries
        events = requests.get(f"{gw.url}/api/v1/repositories/{REPO}/stages", auth=("admin", password_of("admin", gw)),
                              timeout=30).json()["events"]
        moved = [e for e in events if e["digest"] == bundle and e["stage"] == "tested-node"]
        assert moved and moved[0]["deployment"] == "" and moved[0]["actor"].endswith("(profile)"), events
        assert moved[0]["evidence"]["profile"] in {m["digest"] for m in referrers["manifests"]}
    finally:
        podman("kube", "down", str(spec_file), env=podman_env)
        podman("pod", "rm", "-f", name)
        podman("secret", "rm", SECRET)
        podman("rmi", plugin["image"], pod["spec"]["initContainers"][0]["image"])  # vfs copies are large

    # revocation: out of the feed, and the node's next pull of the image is refused
    revoked = ecr(gw, "admin", "stage", "set", f"{gw.host}/{REPO}:1.2.0", "deprecated", "--deployment", "lab")
    assert revoked.returncode == 0, revoked.stderr
    assert requests.get(feed_url, auth=node_auth, timeout=30).json()["bundles"] == []
    refused = podman("pull", "--tls-verify=false", plugin["image"])
    assert refused.returncode != 0 and "denied" in refused.stderr.lower(), refused.stderr


def _wait_profile_queries(gw: GatewayProcess, bundle: str, wanted: Callable[[dict[str, str]], bool],
                          timeout: float = 45) -> dict[str, str]:
    """The queries of an attached profile of ``bundle`` on VW01 that ``wanted`` accepts."""
    deadline = time.monotonic() + timeout
    queries: list[dict[str, str]] = []
    while time.monotonic() < deadline:
        shown = ecr(gw, "admin", "profile", "show", f"{gw.host}/{REPO}@{bundle}", "--node", "VW01", "--json")
        if shown.returncode == 0:
            queries = [doc["source"]["queries"] for doc in json.loads(shown.stdout)]
            if found := next((q for q in queries if wanted(q)), None):
                return found
        time.sleep(1)
    raise AssertionError(f"no profile with the wanted queries: {queries}")


def _wait_performance(feed_url: str, auth: tuple[str, str], timeout: float = 60) -> dict[str, Any]:
    """The node's performance entry in the feed, once the collector has attached a profile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        bundles = requests.get(feed_url, auth=auth, timeout=30).json()["bundles"]
        if bundles and (performance := bundles[0]["nodes"][0]["performance"]):
            return dict(performance)
        time.sleep(1)
    raise AssertionError("the collector attached no profile the feed shows")


def _amd64_digest(inspected: dict[str, object]) -> str:
    for image in inspected["platforms"]:  # type: ignore[attr-defined]
        if image["platform"] == "linux/amd64":
            return str(image["digest"])
    raise AssertionError(inspected)


def _wait_metrics(port: int, bundle: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        try:
            text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            if f'bundle="{bundle}"' in text and "ecr_inference_seconds_count" in text:
                return text
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError(f"no plugin metrics on port {port}: {text[:500]}")
