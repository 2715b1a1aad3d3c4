"""`ecr profile attach --scrape URL --latency-metric NAME`: a plugin with its own latency metric
name and no `bundle` label gets p50/p95 (the bundle is the one REF names)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Histogram, start_http_server

from ecr_oci.profile.metrics import Sample, Snapshot, map_latency_metric
from tests.support import Registry, free_port

BUNDLE = "sha256:" + "ab" * 32


def test_mapping_renames_and_labels_only_the_named_metric() -> None:
    snapshot = Snapshot(1.0, (
        Sample("plugin_inference_seconds_count", {}, 3.0),
        Sample("plugin_inference_seconds_bucket", {"le": "0.1"}, 2.0),
        Sample("plugin_inference_seconds_sum", {"bundle": "sha256:" + "cd" * 32}, 0.3),
        Sample("ecr_inference_seconds_count", {"bundle": BUNDLE}, 99.0),  # dropped: one source per run
        Sample("process_cpu_seconds_total", {}, 1.5),
    ))
    mapped = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in map_latency_metric(
        snapshot, "plugin_inference_seconds", BUNDLE).samples}
    assert mapped == {
        ("ecr_inference_seconds_count", (("bundle", BUNDLE),)): 3.0,
        ("ecr_inference_seconds_bucket", (("bundle", BUNDLE), ("le", "0.1"))): 2.0,
        ("ecr_inference_seconds_sum", (("bundle", "sha256:" + "cd" * 32),)): 0.3,  # its own label wins
        ("process_cpu_seconds_total", ()): 1.5,
    }


@pytest.fixture
def own_metric_plugin() -> Iterator[str]:
    """An exporter with `plugin_inference_seconds` (about 20 ms per item) and no bundle label."""
    registry = CollectorRegistry()
    latency = Histogram("plugin_inference_seconds", "Inference latency.", registry=registry,
                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1))
    port = free_port()
    server, _thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            latency.observe(0.02)
            stop.wait(0.01)

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    yield f"http://127.0.0.1:{port}/metrics"
    stop.set()
    server.shutdown()
    worker.join(5)


def test_profile_attach_with_the_plugins_own_latency_metric(
    registry: Registry, bundle_dir: Path, own_metric_plugin: str
) -> None:
    ref = f"{registry.host}/alice/own-metric:0.1.0"
    pushed = subprocess.run(["ecr", "push", "--quiet", str(bundle_dir), ref], capture_output=True, text=True,
                            timeout=300)
    assert pushed.returncode == 0, pushed.stderr
    without = subprocess.run(["ecr", "profile", "attach", ref, "--node", "vw-own", "--scrape", own_metric_plugin,
                              "--duration", "1s", "--interval", "0.5s"], capture_output=True, text=True, timeout=120)
    assert without.returncode != 0 and "exports no ecr_inference_seconds" in without.stderr
    time.sleep(0.2)
    attached = subprocess.run(
        ["ecr", "profile", "attach", ref, "--node", "vw-own", "--scrape", own_metric_plugin, "--duration", "2s",
         "--interval", "0.5s", "--latency-metric", "plugin_inference_seconds", "--json"],
        capture_output=True, text=True, timeout=120)
    assert attached.returncode == 0, attached.stderr
    latency = json.loads(attached.stdout)["metrics"]["latency_seconds"]
    assert 0.01 <= latency["p50"] <= 0.025 and 0.01 <= latency["p95"] <= 0.025, latency
    bad = subprocess.run(["ecr", "profile", "attach", ref, "--node", "vw-own", "--prometheus", "http://127.0.0.1:9",
                          "--latency-metric", "x"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 3 and "--latency-metric works with --scrape" in bad.stderr
