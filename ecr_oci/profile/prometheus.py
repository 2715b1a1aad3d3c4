"""Profile a bundle from the metrics a Prometheus server already scraped.

One instant query per figure, evaluated at the window's end over the window's
length (see :mod:`ecr_oci.profile.promql`); each query used is recorded in the
summary's ``source.queries``. Counts (observations, errors) are exact: they are
computed from the raw samples of the window rather than from ``increase``,
which extrapolates to the window edges.
"""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass
from datetime import datetime

from ecr_oci.profile import convention as c
from ecr_oci.profile.errors import EmptyWindowError, ProfileError
from ecr_oci.profile.promapi import PrometheusClient
from ecr_oci.profile.promql import ProfileQueries, running
from ecr_oci.profile.quantile import counter_increase
from ecr_oci.profile.result import ProfileContext, ProfileResult
from ecr_oci.profile.series import Series
from ecr_oci.profile.summary import Latency, MetricsSummary, ProfileSummary, PrometheusSource, Window

# query_range refuses more than 11,000 points per series.
_MAX_POINTS = 10_000


@dataclass(frozen=True, order=True)
class RunningBundle:
    """A bundle seen running on a node: exporting its latency metric, or (``instrumented``
    False) only in the node exporter's container series."""

    bundle: str
    node: str
    instrumented: bool = True


def running_bundles(client: PrometheusClient, start: datetime, end: datetime) -> list[RunningBundle]:
    """List the (bundle, node) pairs with latency samples between *start* and *end*.

    Targets without a ``node`` label are left out: their profiles could not say where.

    Raises:
        ValidationError: end is not after start.
        PrometheusError: Prometheus is unreachable or rejects the query.
    """
    window = _to_millis(Window(start, end))

    def pairs(metric: str) -> set[tuple[str, str]]:
        found = client.query_vector(running(window.seconds, metric), window.end)
        return {(s.labels[c.BUNDLE_LABEL], s.labels[c.NODE_LABEL]) for s in found
                if s.labels.get(c.BUNDLE_LABEL) and s.labels.get(c.NODE_LABEL)}

    instrumented = pairs(c.LATENCY + "_count")
    containers = pairs(c.CONTAINER_CPU_SECONDS) - instrumented
    return sorted([RunningBundle(b, n) for b, n in instrumented]
                  + [RunningBundle(b, n, instrumented=False) for b, n in containers])


def profile_prometheus(
    client: PrometheusClient, context: ProfileContext, window: Window, *, with_series: bool = True
) -> ProfileResult:
    """Summarise *context.bundle* on *context.node* over *window* from Prometheus.

    Args:
        client: the Prometheus holding the node's metrics.
        context: bundle, node, stage, hardware and workload of the run.
        window: the time range; truncated to milliseconds, Prometheus' resolution.
        with_series: also fetch the raw series (``query_range`` at the scrape interval).

    Raises:
        ProfileError: the bundle's latency metric is absent or unusable.
        EmptyWindowError: fewer than two scrapes or no inference in the window.
        PrometheusError: Prometheus is unreachable or rejects a query.
    """
    window = _to_millis(window)
    run = _Run(client, ProfileQueries(context.bundle, context.node, window.seconds), window.end)
    counts = run.raw("sample_count", c.LATENCY + "_count")
    if not counts:
        raise ProfileError(
            f"Prometheus has no {c.LATENCY}_count{run.q.plugin} between"
            f" {window.start.isoformat()} and {window.end.isoformat()}"
        )
    if all(len(s.points) < 2 for s in counts):
        raise EmptyWindowError("the window holds fewer than two scrapes of the latency metric")
    sample_count = round(_increase(counts))
    if sample_count == 0:
        raise EmptyWindowError(f"no inference observed in the window ({c.LATENCY}_count did not grow)")
    interval = _interval(counts)
    latency = run.latency()
    throughput = run.value("throughput_per_second", run.q.rate(c.FRAMES))
    if throughput is None:
        # Without an item counter, each latency observation counts as one item.
        throughput = run.value("throughput_per_second", run.q.rate(c.LATENCY + "_count"))
    # The node exporter sees the whole container (any language, child processes); the
    # plugin's own process_* metrics are the fallback where no exporter runs.
    cpu = run.value("cpu_cores", run.q.container_cpu_cores(), optional=True)
    if cpu is None:
        cpu = run.value("cpu_cores", run.q.cpu_cores())
    rss = run.value("peak_rss_bytes", run.q.container_peak_memory(), optional=True)
    if rss is None:
        rss = run.value("peak_rss_bytes", run.q.peak_rss())
    metrics = MetricsSummary(
        latency_seconds=latency,
        throughput_per_second=throughput or 0.0,
        cpu_cores=cpu,
        peak_rss_bytes=None if rss is None else int(rss),
        error_count=round(_increase(run.raw("error_count", c.ERRORS))),
        sample_count=sample_count,
        gpu_utilization=run.value("gpu_utilization", run.q.gauge_average(c.GPU_UTILIZATION, "avg"), optional=True),
        gpu_power_watts=run.value("gpu_power_watts", run.q.gauge_average(c.GPU_POWER, "sum"), optional=True),
    )
    summary = ProfileSummary(
        bundle=context.bundle,
        node=context.node,
        stage=context.stage,
        hardware=context.hardware,
        window=window,
        workload=context.workload,
        metrics=metrics,
        source=PrometheusSource(url=client.url, queries=dict(sorted(run.recorded.items())), interval_seconds=interval),
    )
    series = _series(client, run.q, window, interval) if with_series else ()
    return ProfileResult(summary, series)


def profile_resources(
    client: PrometheusClient, context: ProfileContext, window: Window, *, with_series: bool = True
) -> ProfileResult:
    """A resources-only profile (no latency metric): CPU and memory of the bundle's containers
    from ``ecr node-exporter`` series (``latency_seconds`` null, ``sample_count`` 0).

    Raises:
        ProfileError: no container series of the bundle on the node.
        EmptyWindowError: fewer than two scrapes of them in the window.
        PrometheusError: Prometheus is unreachable or rejects a query.
    """
    window = _to_millis(window)
    run = _Run(client, ProfileQueries(context.bundle, context.node, window.seconds), window.end)
    counters = run.raw("cpu_seconds", c.CONTAINER_CPU_SECONDS)
    if not counters:
        raise ProfileError(f"Prometheus has no {c.CONTAINER_CPU_SECONDS}{run.q.plugin} in the window")
    if all(len(s.points) < 2 for s in counters):
        raise EmptyWindowError("the window holds fewer than two scrapes of the container metrics")
    peak = run.value("peak_rss_bytes", run.q.container_peak_memory(), optional=True)
    metrics = MetricsSummary(
        latency_seconds=None, throughput_per_second=0.0,
        cpu_cores=run.value("cpu_cores", run.q.container_cpu_cores()),
        peak_rss_bytes=None if peak is None else int(peak), error_count=0, sample_count=0,
    )
    summary = ProfileSummary(
        bundle=context.bundle, node=context.node, stage=context.stage, hardware=context.hardware, window=window,
        workload=context.workload, metrics=metrics,
        source=PrometheusSource(url=client.url, queries=dict(sorted(run.recorded.items())),
                                interval_seconds=_interval(counters)),
    )
    series: tuple[Series, ...] = ()
    if with_series:
        step = max(_interval(counters), window.seconds / _MAX_POINTS)
        selector = f'{{__name__=~"ecr_container_.+",{run.q.plugin[1:]}'
        series = tuple(sorted(client.query_range(selector, window.start, window.end, step),
                              key=lambda s: (s.name, sorted(s.labels.items()))))
    return ProfileResult(summary, series)


class _Run:
    """Runs the queries of one profile and records those whose answer is used."""

    def __init__(self, client: PrometheusClient, q: ProfileQueries, at: datetime) -> None:
        self.client, self.q, self.at = client, q, at
        self.recorded: dict[str, str] = {}

    def value(self, name: str, promql: str, *, optional: bool = False) -> float | None:
        """The single value of an aggregating query; None when empty or NaN."""
        values = [s.value for s in self.client.query_vector(promql, self.at) if not math.isnan(s.value)]
        if values or not optional:
            self.recorded[name] = promql
        return values[0] if values else None

    def raw(self, name: str, sample_name: str) -> tuple[Series, ...]:
        """The raw samples of a plugin counter in the window."""
        promql = self.q.raw(sample_name)
        self.recorded[name] = promql
        return self.client.query_matrix(promql, self.at)

    def latency(self) -> Latency:
        """Quantiles from the histogram, or else from the plugin's summary."""
        found = self.client.query_vector(self.q.histogram_quantile(c.QUANTILES[0]), self.at)
        mean = self.value("latency_mean", self.q.mean_latency())
        if mean is None:
            raise ProfileError(f"no {c.LATENCY}_sum/_count increase in the window")
        if found:
            p50, p95, p99 = (self._quantile(q, self.q.histogram_quantile(q)) for q in c.QUANTILES)
            return Latency(p50, p95, p99, mean, None, "histogram")
        p50, p95, p99 = (self._quantile(q, self.q.summary_quantile(q)) for q in c.QUANTILES)
        highest = self.value("latency_max", self.q.summary_quantile(1.0), optional=True)
        return Latency(p50, p95, p99, mean, highest, "summary")

    def _quantile(self, q: float, promql: str) -> float:
        value = self.value(f"latency_p{round(q * 100)}", promql)
        if value is None:
            raise ProfileError(
                f"{c.LATENCY} gives no {q} quantile: a histogram needs an +Inf bucket, a summary this quantile"
            )
        return value


def _series(client: PrometheusClient, q: ProfileQueries, window: Window, interval: float) -> tuple[Series, ...]:
    step = max(interval, window.seconds / _MAX_POINTS)
    found = [
        s for selector in q.series_selectors() for s in client.query_range(selector, window.start, window.end, step)
    ]
    return tuple(sorted(found, key=lambda s: (s.name, sorted(s.labels.items()))))


def _increase(series: tuple[Series, ...]) -> float:
    return math.fsum(counter_increase([v for _, v in s.points]) for s in series)


def _interval(series: tuple[Series, ...]) -> float:
    """The scrape interval: median spacing of the longest series' samples."""
    longest = max(series, key=lambda s: (len(s.points), sorted(s.labels.items())))
    times = [t for t, _ in longest.points]
    return round(statistics.median(b - a for a, b in itertools.pairwise(times)), 3)


def _to_millis(window: Window) -> Window:
    """Truncate both ends to milliseconds so queries and document name the same instants."""
    return Window(
        window.start.replace(microsecond=window.start.microsecond // 1000 * 1000),
        window.end.replace(microsecond=window.end.microsecond // 1000 * 1000),
    )
