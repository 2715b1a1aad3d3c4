"""Acceptance: profiles measured from a real exporter (direct and via a real Prometheus)
attached to a real bundle in a real registry, listed, shown, and idempotent."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ecr_oci import mediatypes as mt
from ecr_oci.bundle.remote import fetch_bundle
from ecr_oci.profile import ProfileContext, PrometheusClient, Window, Workload, detect_hardware, profile_prometheus
from ecr_oci.profile.attach import attach_profile, list_profiles
from ecr_oci.registry.client import RegistryClient
from ecr_oci.registry.reference import parse_reference
from tests.conftest import BASE_METADATA, write_bundle
from tests.profile.support import BUCKET_WIDTH, TRUE_P50, TRUE_P95, Exporter, PrometheusServer
from tests.support import Registry

NODE = "W0A1"


@dataclass
class Setup:
    ref: str
    digest: str
    exporter: Exporter
    direct: str
    prometheus: PrometheusServer


def ecr(*args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ecr", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def setup(registry: Registry, tiny_layout: Path, tmp_path_factory: pytest.TempPathFactory,
          prometheus_binary: str) -> Iterator[Setup]:
    root = write_bundle(tmp_path_factory.mktemp("profiled") / "b", tiny_layout)
    ref = f"{registry.host}/alice/profiled:0.1.0"
    pinned = ecr("push", "--quiet", str(root), ref).stdout.strip()
    digest = pinned.split("@", 1)[1]
    exporter = Exporter(bundle=digest)
    prometheus = None
    try:
        exporter.start_workload()
        target = exporter.serve("prometheus")
        direct = exporter.serve("direct")
        prometheus = PrometheusServer(tmp_path_factory.mktemp("prom"), [target.split("/")[2]], node=NODE)
        prometheus.wait_for(f'count_over_time(ecr_inference_seconds_count{{bundle="{digest}"}}[1m])', 3)
        yield Setup(ref, digest, exporter, direct, prometheus)
    finally:
        if prometheus:
            prometheus.stop()
        exporter.stop()


def _check_latencies(doc: dict[str, object]) -> None:
    latency = doc["metrics"]["latency_seconds"]  # type: ignore[index]
    assert abs(latency["p50"] - TRUE_P50) <= BUCKET_WIDTH, latency
    assert abs(latency["p95"] - TRUE_P95) <= BUCKET_WIDTH, latency


def test_attach_by_scrape_matches_driven_latencies(setup: Setup) -> None:
    proc = ecr("profile", "attach", setup.ref, "--scrape", setup.direct, "--duration", "3s", "--interval", "0.5s",
               "--node", "vw-test", "--stage", "vw", "--json")
    doc = json.loads(proc.stdout)
    assert doc["bundle"] == setup.digest and doc["stage"] == "vw" and doc["source"]["kind"] == "scrape"
    _check_latencies(doc)
    # the workload handles 2 items every 10 ms: ~200/s (the ticker only ever runs slow)
    assert 120 <= doc["metrics"]["throughput_per_second"] <= 205
    assert "attached profile sha256:" in proc.stderr


def test_attach_from_prometheus_matches_driven_latencies(setup: Setup) -> None:
    proc = ecr("profile", "attach", setup.ref, "--prometheus", setup.prometheus.url, "--node", NODE,
               "--since", "4s", "--json")
    doc = json.loads(proc.stdout)
    assert doc["node"] == NODE and doc["source"]["kind"] == "prometheus"
    assert any(setup.digest in q for q in doc["source"]["queries"].values())
    _check_latencies(doc)


def test_same_window_gives_same_profile_no_duplicates(setup: Setup) -> None:
    client = RegistryClient(setup.ref.split("/")[0])
    bundle = fetch_bundle(client, parse_reference(setup.ref))
    end = datetime.now(UTC) - timedelta(seconds=1)
    window = Window(end - timedelta(seconds=3), end)
    context = ProfileContext(bundle=bundle.digest, node=NODE, stage="node", hardware=detect_hardware(),
                             workload=Workload(description="idempotence"))
    prom = PrometheusClient(setup.prometheus.url)
    first = attach_profile(client, bundle, profile_prometheus(prom, context, window))
    before = [p.digest for p in list_profiles(client, bundle, node=NODE)]
    time.sleep(1.0)  # more samples arrive, but the window is fixed
    second = attach_profile(client, bundle, profile_prometheus(prom, context, window))
    assert first == second
    assert first in before
    assert [p.digest for p in list_profiles(client, bundle, node=NODE)] == before


def test_profiles_visible_in_referrers_list_show_and_inspect(setup: Setup) -> None:
    ecr("profile", "attach", setup.ref, "--scrape", setup.direct, "--duration", "1s", "--interval", "0.5s",
        "--node", "vw-list", "--stage", "vw", "--no-series")
    client = RegistryClient(setup.ref.split("/")[0])
    referrers = client.referrers("alice/profiled", setup.digest, mt.PROFILE_ARTIFACT_TYPE)
    assert referrers and all(r["artifactType"] == mt.PROFILE_ARTIFACT_TYPE for r in referrers)
    listing = ecr("profile", "list", setup.ref).stdout
    assert "vw-list" in listing
    shown = json.loads(ecr("profile", "show", setup.ref, "--node", "vw-list", "--json").stdout)
    assert [d["node"] for d in shown] == ["vw-list"]
    inspected = json.loads(ecr("inspect", setup.ref, "--json").stdout)
    assert {r["digest"] for r in referrers} <= {r["digest"] for r in inspected["referrers"]}


def test_attach_with_prometheus_down_is_one_clear_error(setup: Setup) -> None:
    proc = subprocess.run(["ecr", "profile", "attach", setup.ref, "--prometheus", "http://127.0.0.1:9",
                           "--node", NODE], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 11, proc.stderr  # documented: 11 Prometheus error
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("error: ") and "127.0.0.1:9" in proc.stderr


def test_attach_for_a_node_without_data_is_a_profile_error(setup: Setup) -> None:
    """Prometheus answers, but holds nothing of this bundle on that node: exit 10, profile error."""
    proc = subprocess.run(["ecr", "profile", "attach", setup.ref, "--prometheus", setup.prometheus.url,
                           "--node", "W9Z9", "--since", "1m"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 10, proc.stderr  # documented: 10 profile error
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("error: ") and "ecr_inference_seconds" in proc.stderr
    client = RegistryClient(setup.ref.split("/")[0])
    assert "W9Z9" not in {p.summary.node for p in list_profiles(client, fetch_bundle(client,
                                                                                    parse_reference(setup.ref)))}


def test_profile_list_plots_latency_per_node(setup: Setup, tmp_path: Path) -> None:
    ecr("profile", "attach", setup.ref, "--scrape", setup.direct, "--duration", "1s", "--interval", "0.5s",
        "--node", "vw-plot", "--stage", "vw")
    png = tmp_path / "latency.png"
    proc = ecr("profile", "list", setup.ref, "--plot", str(png))
    assert f"wrote {png}" in proc.stderr
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_a_wrong_bundle_label_is_found_on_the_first_scrape(setup: Setup, registry: Registry, tiny_layout: Path,
                                                           tmp_path: Path) -> None:
    """The plugin labels its metrics with another bundle: say so at once, not after --duration."""
    root = write_bundle(tmp_path / "b", tiny_layout, {**BASE_METADATA, "name": "other-bundle"})
    other = f"{registry.host}/alice/other-bundle:0.1.0"
    ecr("push", "--quiet", str(root), other)
    started = time.monotonic()
    proc = subprocess.run(["ecr", "profile", "attach", other, "--scrape", setup.direct, "--duration", "60s",
                           "--interval", "1s", "--node", NODE], capture_output=True, text=True, timeout=120)
    assert time.monotonic() - started < 15, "waited for the whole window"
    assert proc.returncode == 10, proc.stderr
    error = proc.stderr.strip().splitlines()[-1]  # after the "scraping ... for 60s" progress line
    assert error.startswith("error: ") and setup.digest in error  # names the label the plugin does carry
    assert "Traceback" not in proc.stderr
