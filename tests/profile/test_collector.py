"""Acceptance: the automatic collector attaches profiles for two nodes on its own, never
twice for the same window, and survives Prometheus going away and coming back."""

from __future__ import annotations

import logging
import math
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ecr_oci.bundle.remote import fetch_bundle
from ecr_oci.profile import PrometheusClient
from ecr_oci.profile.attach import list_profiles
from ecr_oci.profile.collector import CatalogLocator, Collector, CycleReport
from ecr_oci.registry.client import RegistryClient
from ecr_oci.registry.reference import parse_reference
from tests.conftest import BASE_METADATA, write_bundle
from tests.profile.support import Exporter, PrometheusServer
from tests.support import Registry

INTERVAL = 4.0
NODES = ("W0A1", "W0B2")
REPOS = 2


def _after_next_boundary(margin: float = 1.5) -> datetime:
    """Sleep until a window boundary has passed and Prometheus scraped past it."""
    now = time.time()
    boundary = (math.floor(now / INTERVAL) + 1) * INTERVAL
    time.sleep(boundary + margin - now)
    return datetime.now(UTC)


def _cycle_until_both(collector: Collector) -> tuple[datetime, CycleReport]:
    """Cycles until one attaches both nodes: a window right after (re)start may hold too
    few scrapes for a node, which the collector rightly skips."""
    for _ in range(4):
        now = _after_next_boundary()
        report = collector.run_once(now)
        if len(report.attached) == 2 * REPOS:
            return now, report
    raise AssertionError(f"no window attached both nodes; last: {report}")


def test_collector_two_nodes_no_duplicates_survives_prometheus_outage(
    registry: Registry, tiny_layout: Path, tmp_path: Path, prometheus_binary: str
) -> None:
    # a bundle of its own (reproducible pushes give other tests' tiny bundles one digest),
    # pushed to two repositories: profiles go to both
    root = write_bundle(tmp_path / "b", tiny_layout, dict(BASE_METADATA, name="watched"))
    ref = f"{registry.host}/fleet/watched:0.1.0"
    for target in (ref, f"{registry.host}/mirror/watched:0.1.0"):
        pinned = subprocess.run(["ecr", "push", "-q", str(root), target], capture_output=True, text=True,
                                check=True).stdout.strip()
    digest = pinned.split("@")[1]
    exporters = [Exporter(bundle=digest) for _ in NODES]
    prometheus: PrometheusServer | None = None
    try:
        targets = {}
        for exporter, node in zip(exporters, NODES, strict=True):
            exporter.start_workload()
            targets[exporter.serve("prometheus").split("/")[2]] = node
        prom_dir = tmp_path / "prom"
        prom_dir.mkdir()
        prometheus = PrometheusServer(prom_dir, [], nodes=targets)
        prometheus.wait_for(f'count(count by (node) (ecr_inference_seconds_count{{bundle="{digest}"}}))', 2)
        client = RegistryClient(registry.host)
        collector = Collector(PrometheusClient(prometheus.url), client, CatalogLocator(client),
                              interval=timedelta(seconds=INTERVAL))
        bundle = fetch_bundle(client, parse_reference(ref))

        now, first = _cycle_until_both(collector)
        assert first.error is None, first.error
        profiles = list_profiles(client, bundle)
        # an earlier cycle may have attached one node alone (the other had too few scrapes yet)
        earlier = len([p for p in profiles if p.summary.window != first.window])
        assert sorted(p.summary.node for p in profiles if p.summary.window == first.window) == sorted(NODES)
        # never two profiles for one (node, window)
        assert len({(p.summary.node, p.summary.window) for p in profiles}) == len(profiles)
        mirror = fetch_bundle(client, parse_reference(f"{registry.host}/mirror/watched:0.1.0"))
        assert sorted(p.digest for p in list_profiles(client, mirror)) == sorted(p.digest for p in profiles)

        again = collector.run_once(now)  # same window: same digests, nothing new
        assert sorted(again.attached) == sorted(first.attached)
        assert len(list_profiles(client, bundle)) == earlier + 2

        port = prometheus.port
        prometheus.stop()
        down = collector.run_once(_after_next_boundary(0.2))
        assert down.error and "not reachable" in down.error and not down.attached

        prometheus = PrometheusServer(prom_dir, [], nodes=targets, port=port)
        prometheus.wait_for(f'count(count by (node) (ecr_inference_seconds_count{{bundle="{digest}"}}))', 2)
        _, resumed = _cycle_until_both(collector)
        after = list_profiles(client, bundle)
        assert sorted(p.summary.node for p in after if p.summary.window == resumed.window) == sorted(NODES)
        assert len({(p.summary.node, p.summary.window) for p in after}) == len(after)
    finally:
        if prometheus:
            prometheus.stop()
        for exporter in exporters:
            exporter.stop()


def test_collector_background_thread_runs_cycles_and_stops_promptly(
        registry: Registry, caplog: pytest.LogCaptureFixture) -> None:
    client = RegistryClient(registry.host)
    collector = Collector(PrometheusClient("http://127.0.0.1:9"), client, CatalogLocator(client),
                          interval=timedelta(seconds=1))
    caplog.set_level(logging.WARNING, logger="ecr.collector")
    before = {t.ident for t in threading.enumerate()}
    collector.start()
    started = [t for t in threading.enumerate() if t.ident not in before]
    assert [t.name for t in started] == ["ecr-collector"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not _cycle_logs(caplog):
        time.sleep(0.1)
    # at least one cycle ran: Prometheus (port 9, nothing there) was tried and the failure logged
    assert _cycle_logs(caplog), "no collector cycle ran within 10 s"
    stopping = time.monotonic()
    collector.stop()
    assert time.monotonic() - stopping < 2.0  # woken at once, not at the next window
    assert not started[0].is_alive()
    collector.stop()  # a second stop is harmless


def _cycle_logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.getMessage().startswith("collector:") and "retrying next cycle" in r.getMessage()]


def test_catalog_locator_skips_repositories_without_tags(registry: Registry, tiny_layout: Path,
                                                         tmp_path: Path) -> None:
    """A repository that holds only blobs is in the catalog but has no tags (NAME_UNKNOWN)."""
    client = RegistryClient(registry.host)
    client.upload_bytes("fleet/blobs-only", b"just a blob")
    root = write_bundle(tmp_path / "b", tiny_layout, dict(BASE_METADATA, name="located"))
    pinned = subprocess.run(["ecr", "push", "-q", str(root), f"{registry.host}/fleet/located:0.1.0"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert "fleet/blobs-only" in client.catalog()
    assert CatalogLocator(client)(pinned.split("@")[1]) == ["fleet/located"]
