"""Real components for the profile tests: a prometheus_client exporter driven by a
fake workload with known latencies, and a real Prometheus server process."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import requests
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest

from ecr_oci.profile import Hardware, ProfileContext, ProfileResult, Workload
from ecr_oci.profile.summary import Stage
from tests.support import die_with_parent

BUNDLE = "sha256:" + "ab" * 32
OTHER_BUNDLE = "sha256:" + "cd" * 32
NODE = "W0TEST"

# 100 latencies spread evenly over 0..100 ms: the true p50 is 50 ms, p95 95 ms, p99 99 ms.
LATENCIES = tuple((i + 0.5) / 1000 for i in range(100))
TRUE_P50, TRUE_P95, TRUE_P99 = 0.050, 0.095, 0.099
BUCKETS = (0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.1, 0.25, 1.0)
BUCKET_WIDTH = 0.01
OTHER_LATENCY = 2.0  # beyond the last finite bucket: its quantiles land in +Inf
ERROR_EVERY = 50  # every 50th item fails
GPU_UTILIZATION, GPU_POWER = 0.25, 7.5
TICK = 0.01  # the workload handles ITEMS_PER_TICK items every TICK seconds
ITEMS_PER_TICK = 2


@dataclass(frozen=True)
class Served:
    """What an exporter endpoint served at one scrape (read under the workload lock)."""

    time: float
    items: int
    errors: int


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Exporter:
    """A plugin stand-in: real prometheus_client metrics, a paced workload, two /metrics servers.

    Each consumer (direct scrape, Prometheus) gets its own server so the counts each one
    was served are known exactly.
    """

    bundle: str = BUNDLE
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    items: int = 0
    errors: int = 0
    served: dict[str, list[Served]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _servers: list[WSGIServer] = field(default_factory=list)

    def __post_init__(self) -> None:
        ProcessCollector(registry=self.registry)
        labels = ["bundle"]
        reg = self.registry
        self.latency = Histogram("ecr_inference_seconds", "Inference latency.", labels, buckets=BUCKETS, registry=reg)
        self.frames = Counter("ecr_frames_total", "Items processed.", labels, registry=reg)
        self.failures = Counter("ecr_errors_total", "Items failed.", labels, registry=reg)
        Gauge("ecr_gpu_utilization_ratio", "GPU busy.", labels, registry=reg).labels(self.bundle).set(GPU_UTILIZATION)
        Gauge("ecr_gpu_power_watts", "GPU power.", labels, registry=reg).labels(self.bundle).set(GPU_POWER)

    def start_workload(self) -> None:
        """Handle items at a steady pace, cycling through LATENCIES; the other bundle too."""

        def run() -> None:
            i = 0
            # Bounded by the stop event, checked every tick.
            while not self._stop.wait(TICK):
                with self._lock:
                    for _ in range(ITEMS_PER_TICK):
                        self.latency.labels(self.bundle).observe(LATENCIES[i % len(LATENCIES)])
                        self.frames.labels(self.bundle).inc()
                        i += 1
                        self.items += 1
                        if self.items % ERROR_EVERY == 0:
                            self.failures.labels(self.bundle).inc()
                            self.errors += 1
                    self.latency.labels(OTHER_BUNDLE).observe(OTHER_LATENCY)
                    self.frames.labels(OTHER_BUNDLE).inc()

        self._spawn(run)

    def serve(self, consumer: str) -> str:
        """Start a /metrics server for *consumer* on a free loopback port; return its URL."""
        self.served[consumer] = []

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            with self._lock:
                body = generate_latest(self.registry)
                self.served[consumer].append(Served(time.time(), self.items, self.errors))
            start_response("200 OK", [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")])
            return [body]

        server = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
        self._servers.append(server)
        self._spawn(server.serve_forever)
        return f"http://127.0.0.1:{server.server_port}/metrics"

    def stop(self) -> None:
        self._stop.set()
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _spawn(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        self._threads.append(thread)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PrometheusServer:
    """A real Prometheus process scraping *targets* every second, with a `node` target label."""

    def __init__(self, workdir: Path, targets: list[str], node: str = NODE, *,
                 nodes: dict[str, str] | None = None, port: int | None = None) -> None:
        """Scrape *targets* labelled ``node``, or each target of *nodes* with its own node id."""
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = workdir / "prometheus.yml"
        by_target = nodes or dict.fromkeys(targets, node)
        static = "".join(
            f"      - targets: ['{t}']\n        labels:\n          node: {n}\n" for t, n in by_target.items()
        )
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: plugin\n    static_configs:\n"
            + (static or "      []\n")
        )
        self.log = workdir / "prometheus.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    "prometheus",
                    f"--config.file={config}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log.read_text()[-2000:]}")
            try:
                if requests.get(self.url + "/-/ready", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"prometheus not ready after {timeout}s: {self.log.read_text()[-2000:]}")

    def wait_for(self, promql: str, at_least: float, timeout: float = 20.0) -> None:
        """Poll until the single value of *promql* reaches *at_least* (bounded by *timeout*)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = requests.get(self.url + "/api/v1/query", params={"query": promql}, timeout=2).json()
            result = answer["data"]["result"]
            if result and float(result[0]["value"][1]) >= at_least:
                return
            time.sleep(0.2)
        raise RuntimeError(f"{promql} did not reach {at_least} within {timeout}s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


SCRAPE_INTERVAL = 0.5
SCRAPE_DURATION = 4.0


@dataclass(frozen=True)
class Live:
    """One profiled run: the exporter, the Prometheus that scraped it, the direct scrape."""

    exporter: Exporter
    prometheus: PrometheusServer
    direct_endpoint: str
    direct_served: list[Served]  # what the direct scrape was served, scrape by scrape
    scraped: ProfileResult
    context: ProfileContext


def make_context(stage: Stage = "vw") -> ProfileContext:
    return ProfileContext(
        bundle=BUNDLE,
        node=NODE,
        stage=stage,
        hardware=Hardware(model="test machine", arch="amd64", memory_bytes=8 << 30),
        workload=Workload(description="fixed latencies cycling 0-100 ms, ~200 items/s"),
    )
