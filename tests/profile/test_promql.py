"""PromQL strings, and how the API client turns bad answers into clear errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
import requests

from ecr_oci.profile import PrometheusClient, PrometheusError, PrometheusQueryError, PrometheusUnavailableError
from ecr_oci.profile.promql import ProfileQueries, duration, matchers, running
from tests.profile.support import PrometheusServer

BUNDLE = "sha256:" + "ab" * 32
AT = datetime(2025, 1, 1, tzinfo=UTC)


def test_exact_queries_for_a_bundle_node_and_window() -> None:
    q = ProfileQueries(BUNDLE, "W0A1", 300)
    sel = f'{{bundle="{BUNDLE}",node="W0A1"}}'
    assert q.histogram_quantile(0.95) == (
        f"histogram_quantile(0.95, sum by (le) (increase(ecr_inference_seconds_bucket{sel}[300s])))"
    )
    assert q.summary_quantile(0.5) == (
        f'max(last_over_time(ecr_inference_seconds{{bundle="{BUNDLE}",node="W0A1",quantile="0.5"}}[300s]))'
    )
    assert q.rate("ecr_frames_total") == f"sum(rate(ecr_frames_total{sel}[300s]))"
    assert q.raw("ecr_errors_total") == f"ecr_errors_total{sel}[300s]"
    assert q.cpu_cores() == (
        'sum(rate(process_cpu_seconds_total{node="W0A1"}[300s])'
        f" and on (job, instance) last_over_time(ecr_inference_seconds_count{sel}[300s]))"
    )
    plugin, process = q.series_selectors()
    assert plugin == f'{{__name__=~"ecr_.+",bundle="{BUNDLE}",node="W0A1"}}'
    assert process.startswith('{__name__=~"process_cpu_seconds_total|process_resident_memory_bytes",node="W0A1"}')


def test_durations_and_escaping() -> None:
    assert duration(300) == "300s"
    assert duration(1.5) == "1500ms"
    assert duration(299.9999) == "300s"
    assert matchers('we"ird\\node') == '{node="we\\"ird\\\\node"}'
    assert running(3600) == (
        'group by (bundle, node) (last_over_time(ecr_inference_seconds_count{bundle=~"sha256:[a-f0-9]{64}"}[3600s]))'
    )


JSON = "application/json"
ANSWERS: dict[str, tuple[int, str, bytes]] = {
    "/html500/api/v1/query": (500, "text/html", b"<h1>proxy error</h1>"),
    "/html200/api/v1/query": (200, "text/html", b"<h1>hello</h1>"),
    "/overload/api/v1/query": (503, JSON, b'{"status":"error","errorType":"timeout","error":"query timed out"}'),
    "/nodata/api/v1/query": (200, JSON, b'{"status":"success"}'),
}


class _Canned(BaseHTTPRequestHandler):
    """Answers each path with a canned (status, content type, body)."""

    def do_GET(self) -> None:
        status, kind, body = ANSWERS.get(self.path.split("?")[0], (404, "text/plain", b"no"))
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def canned() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Canned)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.mark.parametrize(
    ("prefix", "error", "message"),
    [
        ("/html500", PrometheusUnavailableError, "answered HTTP 500"),
        ("/html200", PrometheusError, "is not a Prometheus API"),
        ("/overload", PrometheusQueryError, "timeout: query timed out"),
        ("/nodata", PrometheusError, "without data"),
    ],
)
def test_bad_answers_are_clear_errors(canned: str, prefix: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        PrometheusClient(canned + prefix, timeout=2).query_vector("up", AT)


@pytest.fixture(scope="module")
def real_prometheus(prometheus_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus with nothing to scrape: its query parser and answer shapes are real."""
    server = PrometheusServer(tmp_path_factory.mktemp("promql"), [])
    yield server.url
    server.stop()


def test_every_generated_query_parses_in_a_real_prometheus(real_prometheus: str) -> None:
    """The exact strings above are what this code writes; Prometheus' own parser is the
    independent judge that they are PromQL (an empty answer is fine, an error is not)."""
    q = ProfileQueries(BUNDLE, 'we"ird\\node', 300)
    instant = [q.histogram_quantile(0.95), q.summary_quantile(0.5), q.rate("ecr_frames_total"), q.cpu_cores(),
               running(3600)]
    for promql in instant:
        answer = requests.get(f"{real_prometheus}/api/v1/query", params={"query": promql, "time": AT.timestamp()},
                              timeout=10).json()
        assert answer["status"] == "success", (promql, answer)
        assert answer["data"]["resultType"] == "vector"
    raw = requests.get(f"{real_prometheus}/api/v1/query", params={"query": q.raw("ecr_errors_total")},
                       timeout=10).json()
    assert raw["status"] == "success" and raw["data"]["resultType"] == "matrix"
    for selector in q.series_selectors():  # used as range queries for the raw layer
        series = requests.get(f"{real_prometheus}/api/v1/query_range", timeout=10, params={
            "query": selector, "start": AT.timestamp() - 300, "end": AT.timestamp(), "step": "15s"}).json()
        assert series["status"] == "success", (selector, series)
        assert series["data"]["resultType"] == "matrix"


def test_a_range_answer_where_an_instant_vector_is_expected(real_prometheus: str) -> None:
    """What a real Prometheus answers to a range selector on /api/v1/query is a matrix."""
    with pytest.raises(PrometheusError, match="expected an instant vector"):
        PrometheusClient(real_prometheus, timeout=5).query_vector("vector(1)[1m:10s]", AT)
    with pytest.raises(PrometheusQueryError, match="bad_data"):
        PrometheusClient(real_prometheus, timeout=5).query_vector("sum(", AT)


def test_timeout_is_unavailable() -> None:
    import socket

    # A listening socket that never accepts: the connection hangs until the timeout.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(0)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(PrometheusUnavailableError, match="did not answer within"):
            PrometheusClient(url, timeout=0.3).query_vector("up", AT)
