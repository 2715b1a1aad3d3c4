"""The exporter: a Prometheus collector computing every metric at scrape time.

Each scrape lists the engines' running containers, keeps those that belong to a bundle
(:class:`~ecr_oci.nodeexporter.bundles.BundleMap`), and reads their cgroup counters.
Nothing is sampled in between, so an idle exporter costs nothing and the numbers are as
fresh as the scrape.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ecr_oci.nodeexporter.bundles import BundleMap
from ecr_oci.nodeexporter.cgroups import CgroupStats, read_stats
from ecr_oci.nodeexporter.engines import Container, list_containers
from ecr_oci.profile import convention as c

log = logging.getLogger("ecr.node-exporter")
LABELS = ("bundle", "container", "engine", "node")


def gpu_readings() -> list[tuple[str, float, float | None]]:
    """(gpu index, utilization 0..1, watts) per NVIDIA GPU from ``nvidia-smi``; empty without it."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        proc = subprocess.run(["nvidia-smi", "--query-gpu=index,utilization.gpu,power.draw",
                               "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    out = []
    for line in proc.stdout.splitlines() if proc.returncode == 0 else []:
        parts = [p.strip() for p in line.split(",")]
        try:
            power = float(parts[2]) if len(parts) > 2 and parts[2] not in ("", "[N/A]") else None
            out.append((parts[0], float(parts[1]) / 100.0, power))
        except (ValueError, IndexError):
            continue
    return out


class NodeExporterCollector(Collector):
    """Metrics of every running container of a bundle on this node.

    Args:
        node: the node id (label ``node``).
        engines: engine command lines, e.g. ``[["podman"], ["docker"]]``.
        bundles: image digest -> bundle mapping.
    """

    def __init__(self, node: str, engines: list[list[str]], bundles: BundleMap,
                 stats: Callable[[int], CgroupStats | None] = read_stats) -> None:
        self.node = node
        self.engines = engines
        self.bundles = bundles
        self._stats = stats

    def containers(self) -> list[tuple[Container, str]]:
        """(container, bundle digest) for the running containers of known bundles."""
        self.bundles.poll()
        found = []
        for engine in self.engines:
            for container in list_containers(engine):
                if (bundle := self.bundles.bundle_for(container)) is not None:
                    found.append((container, bundle))
        return found

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        cpu = CounterMetricFamily(c.CONTAINER_CPU_SECONDS.removesuffix("_total"),
                                  "CPU time used by the container, seconds.", labels=LABELS)
        working_set = GaugeMetricFamily(c.CONTAINER_MEMORY_WORKING_SET,
                                        "Memory in use minus inactive file cache, bytes.", labels=LABELS)
        peak = GaugeMetricFamily(c.CONTAINER_MEMORY_PEAK, "Highest memory use since start, bytes.", labels=LABELS)
        read = CounterMetricFamily(c.CONTAINER_IO_READ.removesuffix("_total"), "Block I/O read, bytes.",
                                   labels=LABELS)
        write = CounterMetricFamily(c.CONTAINER_IO_WRITE.removesuffix("_total"), "Block I/O written, bytes.",
                                    labels=LABELS)
        restarts = CounterMetricFamily(c.CONTAINER_RESTARTS.removesuffix("_total"),
                                       "Restarts of the container by its engine.", labels=LABELS)
        for container, bundle in self.containers():
            stats = self._stats(container.pid)
            if stats is None:
                continue
            labels = [bundle, container.name, container.engine, self.node]
            cpu.add_metric(labels, stats.cpu_seconds)
            working_set.add_metric(labels, stats.memory_working_set_bytes)
            if stats.memory_peak_bytes is not None:
                peak.add_metric(labels, stats.memory_peak_bytes)
            read.add_metric(labels, stats.io_read_bytes)
            write.add_metric(labels, stats.io_write_bytes)
            restarts.add_metric(labels, container.restarts)
        yield from (cpu, working_set, peak, read, write, restarts)
        readings = gpu_readings()
        if readings:
            utilization = GaugeMetricFamily(c.NODE_GPU_UTILIZATION, "GPU utilization, 0..1.", labels=["gpu", "node"])
            power = GaugeMetricFamily(c.NODE_GPU_POWER, "GPU power draw, watts.", labels=["gpu", "node"])
            for index, ratio, watts in readings:
                utilization.add_metric([index, self.node], ratio)
                if watts is not None:
                    power.add_metric([index, self.node], watts)
            yield from (utilization, power)
