"""Exposition parsing, bundle selection and window summaries, on hand-written scrapes."""

from __future__ import annotations

import pytest

from ecr_oci.profile import EmptyWindowError, ProfileError, ScrapeError
from ecr_oci.profile.metrics import Snapshot, parse_exposition, read_convention, summarize

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
LE = ("0.05", "0.1", "+Inf")


def histogram_text(bundle: str, buckets: tuple[int, int, int], total: float, frames: int, errors: int = 0) -> str:
    lines = ["# TYPE ecr_inference_seconds histogram"]
    lines += [
        f'ecr_inference_seconds_bucket{{bundle="{bundle}",le="{le}"}} {n}' for le, n in zip(LE, buckets, strict=True)
    ]
    lines += [
        f'ecr_inference_seconds_count{{bundle="{bundle}"}} {buckets[-1]}',
        f'ecr_inference_seconds_sum{{bundle="{bundle}"}} {total}',
        "# TYPE ecr_frames_total counter",
        f'ecr_frames_total{{bundle="{bundle}"}} {frames}',
        "# TYPE ecr_errors_total counter",
        f'ecr_errors_total{{bundle="{bundle}"}} {errors}',
    ]
    return "\n".join(lines) + "\n"


PROCESS = (
    "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {cpu}\n"
    "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {rss}\n"
)


def scrape(t: float, *texts: str, cpu: float = 10.0, rss: float = 1e8) -> Snapshot:
    return parse_exposition("".join(texts) + PROCESS.format(cpu=cpu, rss=rss), t)


def test_histogram_window_summary() -> None:
    first = scrape(0.0, histogram_text(A, (10, 20, 20), 1.0, 20), cpu=10.0, rss=1e8)
    last = scrape(10.0, histogram_text(A, (20, 40, 40), 2.5, 40, errors=2), cpu=15.0, rss=2e8)
    metrics = summarize([read_convention(first, A), read_convention(last, A)])
    # Increases: 10 in (0, 0.05], 10 in (0.05, 0.1]: p50 = 0.05, p95 = 0.05 + 0.05 * 9/10.
    assert metrics.sample_count == 20
    assert metrics.latency_seconds.p50 == pytest.approx(0.05)
    assert metrics.latency_seconds.p95 == pytest.approx(0.095)
    assert metrics.latency_seconds.mean == pytest.approx(1.5 / 20)
    assert metrics.latency_seconds.method == "histogram" and metrics.latency_seconds.max is None
    assert metrics.throughput_per_second == pytest.approx(2.0)
    assert metrics.cpu_cores == pytest.approx(0.5)
    assert metrics.peak_rss_bytes == 200_000_000
    assert metrics.error_count == 2
    assert metrics.gpu_utilization is None and metrics.gpu_power_watts is None


def test_counter_reset_inside_the_window() -> None:
    readings = [
        read_convention(scrape(0.0, histogram_text(A, (10, 20, 20), 1.0, 20)), A),
        read_convention(scrape(5.0, histogram_text(A, (15, 30, 30), 1.5, 30)), A),
        # The plugin restarted: everything counts from zero again.
        read_convention(scrape(10.0, histogram_text(A, (5, 10, 10), 0.5, 10)), A),
    ]
    metrics = summarize(readings)
    assert metrics.sample_count == 20  # 10 before the restart, 10 after
    assert metrics.throughput_per_second == pytest.approx(2.0)
    assert metrics.latency_seconds.p50 == pytest.approx(0.05)


def test_only_the_named_bundle_counts() -> None:
    first = scrape(0.0, histogram_text(A, (10, 20, 20), 1.0, 20), histogram_text(B, (0, 0, 0), 0, 0))
    last = scrape(10.0, histogram_text(A, (20, 40, 40), 2.5, 40), histogram_text(B, (0, 0, 500), 900, 500))
    assert summarize([read_convention(first, A), read_convention(last, A)]).sample_count == 20
    assert summarize([read_convention(first, B), read_convention(last, B)]).sample_count == 500
    with pytest.raises(ProfileError, match="several bundles"):
        read_convention(last)


def test_empty_windows_are_clear_errors() -> None:
    same = read_convention(scrape(0.0, histogram_text(A, (10, 20, 20), 1.0, 20)), A)
    later = read_convention(scrape(5.0, histogram_text(A, (10, 20, 20), 1.0, 20)), A)
    with pytest.raises(EmptyWindowError, match="no inference observed"):
        summarize([same, later])
    with pytest.raises(EmptyWindowError, match="at least two scrapes"):
        summarize([same])
    with pytest.raises(ProfileError, match="no ecr_inference_seconds metric"):
        summarize([read_convention(scrape(0.0), A), read_convention(scrape(1.0), A)])


def test_throughput_falls_back_to_the_latency_count() -> None:
    text = histogram_text(A, (10, 20, 20), 1.0, 0).split("# TYPE ecr_frames_total")[0]
    later = histogram_text(A, (20, 40, 40), 2.0, 0).split("# TYPE ecr_frames_total")[0]
    metrics = summarize([read_convention(scrape(0.0, text), A), read_convention(scrape(4.0, later), A)])
    assert metrics.throughput_per_second == pytest.approx(5.0)
    assert metrics.error_count == 0


def summary_text(count: int, quantiles: dict[str, float]) -> str:
    """A summary as client_golang exports it (prometheus_client's has no quantiles)."""
    lines = ["# TYPE ecr_inference_seconds summary"]
    lines += [f'ecr_inference_seconds{{bundle="{A}",quantile="{q}"}} {v}' for q, v in quantiles.items()]
    lines += [
        f'ecr_inference_seconds_sum{{bundle="{A}"}} {count * 0.03}',
        f'ecr_inference_seconds_count{{bundle="{A}"}} {count}',
    ]
    return "\n".join(lines) + "\n"


def test_summary_quantiles_are_the_plugins_own() -> None:
    quantiles = {"0.5": 0.02, "0.95": 0.05, "0.99": 0.08, "1": 0.12}
    first = read_convention(scrape(0.0, summary_text(100, quantiles)), A)
    last = read_convention(scrape(10.0, summary_text(300, quantiles)), A)
    latency = summarize([first, last]).latency_seconds
    assert (latency.p50, latency.p95, latency.p99, latency.max) == (0.02, 0.05, 0.08, 0.12)
    assert latency.method == "summary"
    assert latency.mean == pytest.approx(0.03)


def test_summary_without_quantiles_asks_for_a_histogram() -> None:
    first = read_convention(scrape(0.0, summary_text(100, {})), A)
    last = read_convention(scrape(10.0, summary_text(300, {})), A)
    with pytest.raises(ProfileError, match="export a histogram"):
        summarize([first, last])


def test_gpu_gauges_are_averaged_over_time_and_series() -> None:
    def gpu(util0: float, util1: float, watts: float) -> str:
        return (
            "# TYPE ecr_gpu_utilization_ratio gauge\n"
            f'ecr_gpu_utilization_ratio{{bundle="{A}",gpu="0"}} {util0}\n'
            f'ecr_gpu_utilization_ratio{{bundle="{A}",gpu="1"}} {util1}\n'
            f'# TYPE ecr_gpu_power_watts gauge\necr_gpu_power_watts{{bundle="{A}"}} {watts}\n'
        )

    first = read_convention(scrape(0.0, histogram_text(A, (10, 20, 20), 1.0, 20), gpu(0.2, 0.4, 5)), A)
    last = read_convention(scrape(10.0, histogram_text(A, (20, 40, 40), 2.0, 40), gpu(0.6, 0.8, 7)), A)
    metrics = summarize([first, last])
    assert metrics.gpu_utilization == pytest.approx(0.5)
    assert metrics.gpu_power_watts == pytest.approx(6.0)


def test_unparsable_exposition_is_a_scrape_error() -> None:
    with pytest.raises(ScrapeError, match="cannot parse"):
        parse_exposition('ecr_frames_total{bundle="x" 1\n', 0.0)


def test_bucket_without_le_is_a_clear_error() -> None:
    text = f'# TYPE ecr_inference_seconds histogram\necr_inference_seconds_bucket{{bundle="{A}"}} 3\n'
    with pytest.raises(ProfileError, match="bucket without le"):
        read_convention(parse_exposition(text, 0.0), A)
