"""End-to-end: a real exporter with known latencies, scraped directly and by a real Prometheus."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest

from ecr_oci.profile import (
    ProfileError,
    PrometheusClient,
    PrometheusQueryError,
    PrometheusUnavailableError,
    RunningBundle,
    ScrapeError,
    ScrapeSource,
    Window,
    decode_series,
    profile_from_snapshots,
    profile_prometheus,
    profile_scrape,
    running_bundles,
)
from ecr_oci.profile.metrics import read_convention, summarize
from ecr_oci.profile.quantile import bucket_quantile
from ecr_oci.profile.series import snapshots_from_series
from tests.profile.support import (
    BUCKET_WIDTH,
    BUNDLE,
    ERROR_EVERY,
    GPU_POWER,
    GPU_UTILIZATION,
    ITEMS_PER_TICK,
    NODE,
    OTHER_BUNDLE,
    SCRAPE_DURATION,
    SCRAPE_INTERVAL,
    TICK,
    TRUE_P50,
    TRUE_P95,
    TRUE_P99,
    Live,
    PrometheusServer,
    Served,
    free_port,
    make_context,
)

SCHEMAS = Path(__file__).resolve().parents[2] / "annotations-spec" / "v1" / "schemas"


def _served_rate(served: list[Served]) -> float:
    return (served[-1].items - served[0].items) / (served[-1].time - served[0].time)


def _prometheus_window(live: Live) -> tuple[Window, list[float]]:
    """A window whose edges fall half an interval away from Prometheus' scrapes.

    Counting the samples a window holds is then immune to the few milliseconds
    between Prometheus' sample timestamp and the moment our exporter served it.
    """
    client = PrometheusClient(live.prometheus.url)
    end = datetime.fromtimestamp(live.scraped.summary.window.end.timestamp() + 1.0, UTC)
    (series,) = client.query_matrix(f'ecr_inference_seconds_count{{bundle="{BUNDLE}"}}[30s]', end)
    times = [t for t, _ in series.points][-6:]
    return Window.from_timestamps(times[0] - 0.5, times[-1] + 0.5), times


def _served_at(served: list[Served], sample_time: float) -> Served:
    # Prometheus stamps a sample at the scrape start; the exporter serves it just after.
    return min((s for s in served if s.time >= sample_time - 0.05), key=lambda s: s.time)


def test_scrape_path_matches_driven_workload(live: Live) -> None:
    summary = live.scraped.summary
    served = live.direct_served
    latency = summary.metrics.latency_seconds
    # Every scrape of the bounded loop, and every item between first and last, exactly.
    assert isinstance(summary.source, ScrapeSource)
    assert summary.source.scrape_count == len(served) == round(SCRAPE_DURATION / SCRAPE_INTERVAL) + 1
    assert summary.metrics.sample_count == served[-1].items - served[0].items
    assert summary.metrics.error_count == served[-1].errors - served[0].errors
    assert summary.metrics.error_count == pytest.approx(summary.metrics.sample_count / ERROR_EVERY, abs=1)
    assert latency.method == "histogram" and latency.max is None
    assert abs(latency.p50 - TRUE_P50) <= BUCKET_WIDTH
    assert abs(latency.p95 - TRUE_P95) <= BUCKET_WIDTH
    assert abs(latency.p99 - TRUE_P99) <= BUCKET_WIDTH
    assert latency.mean == pytest.approx(0.05, abs=0.005)
    assert summary.metrics.throughput_per_second == pytest.approx(_served_rate(served), rel=0.02)
    assert summary.metrics.throughput_per_second == pytest.approx(ITEMS_PER_TICK / TICK, rel=0.35)
    assert summary.metrics.gpu_utilization == GPU_UTILIZATION
    assert summary.metrics.gpu_power_watts == GPU_POWER
    assert summary.metrics.peak_rss_bytes and summary.metrics.peak_rss_bytes > 10 << 20
    assert summary.metrics.cpu_cores is not None and 0 < summary.metrics.cpu_cores < 4
    assert summary.window.seconds == pytest.approx(SCRAPE_DURATION, abs=0.3)


def test_scrape_layers_are_valid_and_replayable(live: Live) -> None:
    result = live.scraped
    document = result.summary_layer()
    # Checked without the library's helpers: the published schema through jsonschema itself,
    # the canonical form by hand, and the measured values the layer must carry.
    parsed = json.loads(document)
    schema = json.loads((SCHEMAS / "profile.schema.json").read_text())
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
                                    ).validate(parsed)
    assert document == json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert parsed["bundle"] == BUNDLE and parsed["node"] == NODE
    latency = result.summary.metrics.latency_seconds
    assert abs(parsed["metrics"]["latency_seconds"]["p95"] - TRUE_P95) <= BUCKET_WIDTH
    assert parsed["metrics"]["latency_seconds"]["p95"] == pytest.approx(latency.p95, abs=1e-6)  # 7 digits kept
    assert parsed["source"]["scrape_count"] == result.summary.source.scrape_count  # type: ignore[union-attr]
    series = decode_series(result.series_layer())
    assert isinstance(result.summary.source, ScrapeSource)
    assert all(len(s.points) == result.summary.source.scrape_count for s in series if s.name.startswith("ecr_"))
    assert {s.labels.get("bundle") for s in series if s.name.startswith("ecr_")} == {BUNDLE}
    # The raw layer holds everything needed to recompute the summary, byte for byte.
    snapshots = snapshots_from_series(series)
    replayed = profile_from_snapshots(snapshots, live.context, endpoint=live.direct_endpoint, interval=SCRAPE_INTERVAL)
    assert replayed.summary_layer() == document


def test_prometheus_path_matches_driven_workload(live: Live) -> None:
    window, times = _prometheus_window(live)
    client = PrometheusClient(live.prometheus.url)
    result = profile_prometheus(client, make_context("node"), window)
    summary = result.summary
    latency = summary.metrics.latency_seconds
    served = live.exporter.served["prometheus"]
    first, last = _served_at(served, times[0]), _served_at(served, times[-1])
    assert summary.metrics.sample_count == last.items - first.items
    assert summary.metrics.error_count == last.errors - first.errors
    assert latency.method == "histogram"
    assert abs(latency.p50 - TRUE_P50) <= BUCKET_WIDTH
    assert abs(latency.p95 - TRUE_P95) <= BUCKET_WIDTH
    assert abs(latency.p99 - TRUE_P99) <= BUCKET_WIDTH
    # Both paths see the same stationary workload through the same buckets.
    scraped = live.scraped.summary.metrics
    assert latency.p50 == pytest.approx(scraped.latency_seconds.p50, abs=BUCKET_WIDTH / 2)
    assert latency.p95 == pytest.approx(scraped.latency_seconds.p95, abs=BUCKET_WIDTH / 2)
    assert summary.metrics.throughput_per_second == pytest.approx(scraped.throughput_per_second, rel=0.1)
    assert summary.metrics.gpu_utilization == GPU_UTILIZATION
    assert summary.metrics.gpu_power_watts == GPU_POWER
    assert summary.metrics.cpu_cores is not None and summary.metrics.peak_rss_bytes
    assert summary.source.kind == "prometheus" and summary.source.interval_seconds == 1.0
    assert summary.source.url == live.prometheus.url
    bundle_node = f'{{bundle="{BUNDLE}",node="{NODE}"}}'
    assert summary.source.queries["latency_p95"] == (
        f"histogram_quantile(0.95, sum by (le) (increase(ecr_inference_seconds_bucket{bundle_node}[{len(times)}s])))"
    )
    assert set(summary.source.queries) >= {"latency_p50", "sample_count", "cpu_cores", "gpu_power_watts"}


def test_prometheus_query_range_series_give_the_same_quantiles(live: Live) -> None:
    window, _ = _prometheus_window(live)
    result = profile_prometheus(PrometheusClient(live.prometheus.url), make_context("node"), window)
    assert {s.name for s in result.series} >= {
        "ecr_inference_seconds_bucket",
        "ecr_frames_total",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
    }
    assert all(s.labels["node"] == NODE for s in result.series)
    readings = [read_convention(s, BUNDLE) for s in snapshots_from_series(result.series)]
    from_range = summarize(readings).latency_seconds
    assert abs(from_range.p50 - TRUE_P50) <= BUCKET_WIDTH
    assert abs(from_range.p95 - TRUE_P95) <= BUCKET_WIDTH


def test_prometheus_profile_is_idempotent(live: Live) -> None:
    window, _ = _prometheus_window(live)
    client = PrometheusClient(live.prometheus.url)
    first = profile_prometheus(client, make_context("node"), window)
    second = profile_prometheus(client, make_context("node"), window)
    assert first.summary_layer() == second.summary_layer()
    assert first.series_layer() == second.series_layer()


def test_bucket_quantile_equals_promql_histogram_quantile(live: Live) -> None:
    """Our interpolation against Prometheus' own, on the same buckets (incl. the +Inf case)."""
    client = PrometheusClient(live.prometheus.url)
    at = live.scraped.summary.window.end
    for bundle in (BUNDLE, OTHER_BUNDLE):
        buckets_query = f'sum by (le) (increase(ecr_inference_seconds_bucket{{bundle="{bundle}"}}[3s]))'
        buckets = [(float(s.labels["le"]), s.value) for s in client.query_vector(buckets_query, at)]
        for q in (0.0, 0.1, 0.5, 0.95, 0.99, 0.999, 1.0):
            (theirs,) = client.query_vector(f"histogram_quantile({q}, {buckets_query})", at)
            ours = bucket_quantile(q, buckets)
            assert ours == pytest.approx(theirs.value, rel=1e-12, nan_ok=True), (bundle, q)
    # The other bundle's 2 s latencies are beyond the last finite bucket (1 s).
    assert bucket_quantile(0.5, buckets) == 1.0


def test_running_bundles_lists_both_bundles_on_the_node(live: Live) -> None:
    window, _ = _prometheus_window(live)
    found = running_bundles(PrometheusClient(live.prometheus.url), window.start, window.end)
    assert found == sorted([RunningBundle(BUNDLE, NODE), RunningBundle(OTHER_BUNDLE, NODE)])


def test_prometheus_rejects_a_bad_query_clearly(live: Live) -> None:
    client = PrometheusClient(live.prometheus.url)
    with pytest.raises(PrometheusQueryError, match="bad_data") as caught:
        client.query_vector("sum(", live.scraped.summary.window.end)
    assert caught.value.error_type == "bad_data"


def test_stopped_prometheus_is_a_clear_error(prometheus_binary: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    server = PrometheusServer(tmp_path_factory.mktemp("stopped"), [])
    client = PrometheusClient(server.url, timeout=2)
    now = datetime.now(UTC)
    try:
        assert running_bundles(client, datetime.fromtimestamp(now.timestamp() - 60, UTC), now) == []
    finally:
        server.stop()
    with pytest.raises(PrometheusUnavailableError, match=r"not reachable: \[Errno 111\] Connection refused"):
        running_bundles(client, datetime.fromtimestamp(now.timestamp() - 60, UTC), now)
    window = Window.from_timestamps(now.timestamp() - 60, now.timestamp())
    with pytest.raises(PrometheusUnavailableError):
        profile_prometheus(client, make_context("node"), window)


def test_scraping_a_stopped_exporter_is_a_clear_error() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}/metrics"
    with pytest.raises(ScrapeError, match="cannot scrape"):
        profile_scrape(endpoint, make_context(), interval=0.1, duration=0.2, timeout=1)


def test_scrape_of_unknown_bundle_names_the_bundles_seen(live: Live) -> None:
    unknown = replace(make_context(), bundle="sha256:" + "ef" * 32)
    with pytest.raises(ProfileError, match=OTHER_BUNDLE):
        profile_scrape(live.exporter.serve("unknown-bundle"), unknown, interval=0.1, duration=0.1)


def test_window_math_is_consistent(live: Live) -> None:
    # The direct-scrape window runs from the first to the last scrape's mid-request time.
    served = live.direct_served
    window = live.scraped.summary.window
    assert math.isclose(window.start.timestamp(), served[0].time, abs_tol=0.05)
    assert math.isclose(window.end.timestamp(), served[-1].time, abs_tol=0.05)
