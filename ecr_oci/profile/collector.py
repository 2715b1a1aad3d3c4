"""Automatic profiles: notice bundles running on nodes (their metrics in Prometheus carry
the bundle digest) and attach one profile per bundle, node and window.

Windows are aligned to the collection interval (``[k·T, (k+1)·T)``), so every gateway
instance, and every retry, computes the same window and therefore the same profile
digest: attaching is idempotent and nothing is ever attached twice, with no state of
the collector's own to lose. Prometheus being down is logged and retried next cycle.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ecr_oci import mediatypes as mt
from ecr_oci.bundle.remote import fetch_bundle
from ecr_oci.errors import EcrError, RegistryError
from ecr_oci.profile.attach import attach_profile
from ecr_oci.profile.errors import EmptyWindowError, PrometheusError
from ecr_oci.profile.hardware import detect_hardware
from ecr_oci.profile.promapi import PrometheusClient
from ecr_oci.profile.prometheus import profile_prometheus, profile_resources, running_bundles
from ecr_oci.profile.promql import matchers
from ecr_oci.profile.result import ProfileContext
from ecr_oci.profile.summary import Hardware, Window, Workload
from ecr_oci.registry.client import RegistryClient
from ecr_oci.registry.reference import Reference

log = logging.getLogger("ecr.collector")

# digest -> the repositories holding that bundle index (one bundle, pushed reproducibly,
# can live in several); empty when unknown or not visible
Locator = Callable[[str], list[str]]
# node id -> hardware of that node (an inventory); None falls back to "unknown"
HardwareOf = Callable[[str], Hardware | None]


def aligned_window(now: datetime, interval: timedelta) -> Window:
    """The last complete interval-aligned window before ``now``."""
    step = interval.total_seconds()
    end = math.floor(now.timestamp() / step) * step
    return Window.from_timestamps(end - step, end)


class CatalogLocator:
    """Find a bundle's repository by walking the registry's catalog and tags (cached).

    A gateway with a state store answers this from its index instead; this is the
    fallback for a plain registry.
    """

    def __init__(self, client: RegistryClient) -> None:
        self._client = client
        self._known: dict[str, set[str]] = {}

    def __call__(self, digest: str) -> list[str]:
        if digest not in self._known:
            self._known = {}
            for repo in self._client.catalog():
                try:
                    tags = self._client.tags(repo)
                except RegistryError:
                    continue  # listed for its blobs but without tags (NAME_UNKNOWN), or not readable
                for tag in tags:
                    if tag.startswith("sha256-"):
                        continue  # referrers/signature tags, never bundles
                    found = self._client.head_manifest(repo, tag)
                    if found:
                        self._known.setdefault(found, set()).add(repo)
        return sorted(self._known.get(digest, ()))


@dataclass
class CycleReport:
    """What one collection cycle did."""

    window: Window | None = None
    attached: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "bundle@node: why"
    error: str | None = None


class Collector:
    """Attach profiles for every (bundle, node) Prometheus saw in the last window.

    Args:
        prometheus: the fleet Prometheus.
        client: the registry (through the gateway, with a collector identity).
        locate: digest -> repository.
        interval: window length and cycle period.
        hardware_of: node inventory; unknown nodes get a placeholder hardware record.
    """

    def __init__(
        self,
        prometheus: PrometheusClient,
        client: RegistryClient,
        locate: Locator,
        *,
        interval: timedelta = timedelta(minutes=5),
        hardware_of: HardwareOf | None = None,
    ) -> None:
        self.prometheus = prometheus
        self.client = client
        self.locate = locate
        self.interval = interval
        self.hardware_of = hardware_of or (lambda node: None)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self, now: datetime | None = None) -> CycleReport:
        """One cycle; never raises for Prometheus or registry trouble (it reports it)."""
        window = aligned_window(now or datetime.now(UTC), self.interval)
        report = CycleReport(window=window)
        try:
            pairs = running_bundles(self.prometheus, window.start, window.end)
        except PrometheusError as exc:
            report.error = str(exc)
            log.warning("collector: %s; retrying next cycle", exc)
            return report
        for pair in pairs:
            key = f"{pair.bundle}@{pair.node}"
            try:
                digests = self._attach(pair.bundle, pair.node, window, pair.instrumented)
            except EmptyWindowError as exc:
                report.skipped.append(f"{key}: {exc}")
                continue
            except EcrError as exc:
                log.warning("collector: %s on %s: %s", pair.bundle, pair.node, exc)
                report.skipped.append(f"{key}: {exc}")
                continue
            if digests:
                report.attached += digests
            else:
                report.skipped.append(f"{key}: not in this registry")
        return report

    def _attach(self, bundle_digest: str, node: str, window: Window, instrumented: bool = True) -> list[str]:
        """Profile one (bundle, node) once, attach it in every repository holding the bundle."""
        repos = self.locate(bundle_digest)
        if not repos:
            log.info("collector: bundle %s (node %s) is not in this registry", bundle_digest, node)
            return []
        hardware = self.hardware_of(node) or prometheus_hardware(self.prometheus, node, window)
        context = ProfileContext(bundle=bundle_digest, node=node, stage="node", hardware=hardware,
                                 workload=Workload(description="automatic collection from Prometheus"))
        # A plugin without a latency metric still gets CPU and memory (ecr node-exporter).
        result = (profile_prometheus if instrumented else profile_resources)(self.prometheus, context, window)
        attached = []
        for repo in repos:
            bundle = fetch_bundle(self.client, Reference(self.client.registry, repo, digest=bundle_digest))
            if bundle.index.get("artifactType") == mt.BUNDLE_ARTIFACT_TYPE:
                attached.append(attach_profile(self.client, bundle, result))
        return attached

    def start(self) -> None:
        """Run cycles in a background thread until :meth:`stop`."""
        if self._thread:
            return

        def loop() -> None:
            # The first window completes at the next boundary (and the service is up by then).
            self._stop.wait(self._until_next_window())
            while not self._stop.is_set():
                try:
                    report = self.run_once()
                    if report.attached:
                        log.info("collector: attached %d profiles for %s", len(report.attached), report.window)
                except Exception:  # a collector bug must not take the gateway down
                    log.exception("collector cycle failed")
                self._stop.wait(self._until_next_window())

        self._thread = threading.Thread(target=loop, name="ecr-collector", daemon=True)
        self._thread.start()

    def _until_next_window(self) -> float:
        step = self.interval.total_seconds()
        now = datetime.now(UTC).timestamp()
        return max(0.5, (math.floor(now / step) + 1) * step - now + 1.0)

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)
            self._thread = None


_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}


def prometheus_hardware(client: PrometheusClient, node: str, window: Window) -> Hardware:
    """What node_exporter (``node_uname_info``, ``node_memory_MemTotal_bytes``) says about a
    node, as Waggle nodes export it; ``unknown`` fields where it says nothing."""
    selector = matchers(node)
    model, arch, memory = "unknown", "unknown", None
    try:
        for sample in client.query_vector(f"node_uname_info{selector}", window.end):
            machine = sample.labels.get("machine", "")
            arch = _ARCH.get(machine, machine or arch)
            model = sample.labels.get("nodename") or model
        for sample in client.query_vector(f"node_memory_MemTotal_bytes{selector}", window.end):
            memory = int(sample.value) or None
    except PrometheusError:
        pass
    return Hardware(model=model, arch=arch, memory_bytes=memory)


def local_hardware(node: str) -> Hardware | None:
    """Hardware of this machine, for a collector running beside a single VW node."""
    del node
    return detect_hardware()
