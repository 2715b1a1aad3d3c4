"""`ecr node-exporter`: an uninstrumented plugin (a busybox loop, no metrics of its own) run
under podman gets CPU and memory series labelled with its bundle, scraped by a real
Prometheus; the bundle is found from the image digest through the deployment's feed; the
gateway's collector attaches a resources-only profile by itself, which the feed shows."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from ecr_oci.deploy.fetcher import build_fetcher_layout
from tests.conftest import BASE_METADATA, write_bundle
from tests.gateway.support import PASSWORDS, GatewayProcess
from tests.nodes.conftest import ecr
from tests.profile.support import PrometheusServer
from tests.support import die_with_parent, free_port, run, wait_http

PODMAN = ["podman", "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file"]
REPO = "alice/busy-loop"
pytestmark = pytest.mark.slow


@pytest.fixture
def cgw(tmp_path: Path) -> Iterator[tuple[GatewayProcess, int]]:
    """A gateway collecting profiles every 3 s from a Prometheus (started later) on a known port."""
    prom_port = free_port()
    (tmp_path / "gw").mkdir()
    gateway = GatewayProcess(tmp_path / "gw" / "data", extra_args=[
        "--collect-prometheus", f"http://127.0.0.1:{prom_port}", "--collect-interval", "3s"])
    gateway.start()
    for user, password in PASSWORDS.items():
        gateway.admin().add_user(user, password)
    yield gateway, prom_port
    gateway.stop()


@pytest.fixture
def busy_bundle(cgw: tuple[GatewayProcess, int], tmp_path: Path, tiny_layout: Path) -> Iterator[tuple[str, str]]:
    """A bundle whose amd64 image is a busybox CPU loop, approved for deployment `exp`; (bundle, image)."""
    gw = cgw[0]
    layout = tmp_path / "oci"
    build_fetcher_layout(layout, tmp_path, tag="amd64")
    run(["umoci", "config", "--no-history", "--image", f"{layout}:amd64", "--clear=config.entrypoint",
         "--config.entrypoint", "/bin/sh", "--config.entrypoint", "-c",
         "--config.entrypoint", "while :; do :; done"])
    root = write_bundle(tmp_path / "b", tiny_layout, {**BASE_METADATA, "name": "busy-loop", "images": [
        {"platform": "linux/amd64", "from": f"oci:{layout}:amd64"}]})
    pushed = ecr(gw, "alice", "push", "--quiet", str(root), f"{gw.host}/{REPO}:0.1.0")
    assert pushed.returncode == 0, pushed.stderr
    bundle = pushed.stdout.strip().rsplit("@", 1)[1]
    gw.admin("alice").set_visibility(REPO, "protected")
    added = ecr(gw, "admin", "admin", "node", "add", "VW02", "--deployment", "exp", "--platform", "linux/amd64")
    assert added.returncode == 0, added.stderr
    gw.nodes["VW02"] = added.stdout.strip()
    assert ecr(gw, "admin", "stage", "set", f"{gw.host}/{REPO}:0.1.0", "approved", "--deployment", "exp"
               ).returncode == 0
    feed = requests.get(f"{gw.url}/api/v1/deployments/exp/feed", auth=("VW02", gw.nodes["VW02"]), timeout=30)
    [entry] = feed.json()["bundles"]
    yield bundle, entry["platforms"][0]["digest"]


def test_uninstrumented_plugin_gets_a_cpu_and_memory_profile_through_prometheus(
    cgw: tuple[GatewayProcess, int], busy_bundle: tuple[str, str], tmp_path: Path
) -> None:
    gw, prom_port = cgw
    bundle, image_digest = busy_bundle
    image = f"{gw.host}/{REPO}@{image_digest}"
    token = base64.b64encode(f"VW02:{gw.nodes['VW02']}".encode()).decode()
    Path(os.environ["REGISTRY_AUTH_FILE"]).write_text(json.dumps({"auths": {gw.host: {"auth": token}}}))
    name = f"busy-{os.getpid()}"
    # no ECR_BUNDLE_DIGEST: the exporter must find the bundle from the image digest (feed)
    started = subprocess.run([*PODMAN, "--runtime", "runc", "run", "-d", "--name", name, "--tls-verify=false",
                              "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                              "--memory", "64m", image], capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, started.stderr
    port = free_port()
    env = {**os.environ, "ECR_USERNAME": "VW02", "ECR_PASSWORD": gw.nodes["VW02"]}
    exporter = subprocess.Popen(
        [sys.executable, "-c", "from ecr_oci.cli import run; run()", "node-exporter", "--node", "VW02",
         "--listen", f"127.0.0.1:{port}", "--engine", " ".join(PODMAN),
         "--feed", f"{gw.url}/api/v1/deployments/exp/feed"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    prometheus = None
    try:
        wait_http(f"http://127.0.0.1:{port}/metrics", proc=exporter)
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
        labels = f'bundle="{bundle}",container="{name}",engine="podman",node="VW02"'
        assert f"ecr_container_cpu_seconds_total{{{labels}}}" in text, text
        assert f"ecr_container_memory_working_set_bytes{{{labels}}}" in text
        assert f"ecr_container_restarts_total{{{labels}}} 0.0" in text
        (tmp_path / "prom").mkdir()
        prometheus = PrometheusServer(tmp_path / "prom", [f"127.0.0.1:{port}"], node="VW02", port=prom_port)
        query = f'rate(ecr_container_cpu_seconds_total{{bundle="{bundle}"}}[5s])'
        prometheus.wait_for(query, 0.2, timeout=40)  # a busy loop uses most of a core
        memory = _query(prometheus.url, f'ecr_container_memory_working_set_bytes{{bundle="{bundle}"}}')
        assert 0 < memory <= 64 * 2**20
        # nobody asks: the collector attaches a resources-only profile, and the feed shows it
        performance = _wait_performance(f"{gw.url}/api/v1/deployments/exp/feed", ("VW02", gw.nodes["VW02"]))
        assert performance["node"] == "VW02" and performance["latency_seconds"] == {}
        assert performance["cpu_cores"] > 0.2 and 0 < performance["peak_rss_bytes"] <= 64 * 2**20
        shown = ecr(gw, "admin", "profile", "show", f"{gw.host}/{REPO}@{bundle}", "--node", "VW02", "--json")
        doc = json.loads(shown.stdout)[0]
        assert doc["metrics"]["latency_seconds"] is None and doc["metrics"]["sample_count"] == 0
        assert "ecr_container_cpu_seconds_total" in doc["source"]["queries"]["cpu_cores"]
        listed = ecr(gw, "admin", "profile", "list", f"{gw.host}/{REPO}@{bundle}")
        assert listed.returncode == 0 and "VW02" in listed.stdout, listed.stderr
    finally:
        if prometheus:
            prometheus.stop()
        exporter.send_signal(signal.SIGTERM)
        try:
            exporter.wait(10)
        except subprocess.TimeoutExpired:
            exporter.kill()
        subprocess.run([*PODMAN, "rm", "-f", "-t", "0", name], capture_output=True, timeout=120, check=False)
        subprocess.run([*PODMAN, "rmi", image], capture_output=True, timeout=120, check=False)


def _wait_performance(feed_url: str, auth: tuple[str, str], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        bundles = requests.get(feed_url, auth=auth, timeout=30).json()["bundles"]
        if bundles and (performance := bundles[0]["nodes"][0]["performance"]):
            return dict(performance)
        time.sleep(1)
    raise AssertionError("the collector attached no profile the feed shows")


def _query(url: str, promql: str) -> float:
    result = requests.get(f"{url}/api/v1/query", params={"query": promql}, timeout=10).json()["data"]["result"]
    assert result, promql
    return float(result[0]["value"][1])

