"""Turn Prometheus exposition text into the convention metrics of one bundle.

A :class:`Snapshot` is one scrape; :func:`read_convention` extracts a bundle's
:class:`Reading` from it, and :func:`summarize` turns readings (first to last
scrape of a window) into a :class:`~ecr_oci.profile.summary.MetricsSummary`:
counter increases across resets, rates over the elapsed time, histogram
quantiles interpolated from bucket increases exactly like PromQL
``histogram_quantile``, or the plugin's own quantiles for summaries.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from ecr_oci.errors import ValidationError
from ecr_oci.profile import convention as c
from ecr_oci.profile.errors import EmptyWindowError, ProfileError, ScrapeError
from ecr_oci.profile.quantile import bucket_quantile, counter_increase
from ecr_oci.profile.summary import Latency, MetricsSummary

_LATENCY_SAMPLES = frozenset({c.LATENCY, c.LATENCY + "_bucket", c.LATENCY + "_count", c.LATENCY + "_sum"})
_PLUGIN_SAMPLES = _LATENCY_SAMPLES | {c.FRAMES, c.ERRORS, c.GPU_UTILIZATION, c.GPU_POWER}
_PROCESS_SAMPLES = frozenset({c.CPU_SECONDS, c.RSS_BYTES})


@dataclass(frozen=True)
class Sample:
    """One exposition sample: sample name (with _bucket/_total suffix), labels, value."""

    name: str
    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class Snapshot:
    """Every sample of one scrape, taken at *timestamp* (Unix seconds)."""

    timestamp: float
    samples: tuple[Sample, ...]


@dataclass(frozen=True)
class HistogramState:
    """Cumulative histogram of one scrape, summed over series like ``sum by (le)``."""

    buckets: Mapping[float, float]  # upper bound (le) -> cumulative count
    count: float
    sum: float


@dataclass(frozen=True)
class SummaryState:
    """Summary of one scrape: the plugin's own quantiles plus count and sum."""

    quantiles: Mapping[float, float]
    count: float
    sum: float


LatencyState = HistogramState | SummaryState


@dataclass(frozen=True)
class Reading:
    """The convention metrics of one bundle in one scrape (None: not exported)."""

    timestamp: float
    latency: LatencyState | None
    frames: float | None
    errors: float | None
    cpu_seconds: float | None
    rss_bytes: float | None
    gpu_utilization: float | None  # mean over the bundle's GPU series
    gpu_power_watts: float | None  # sum over the bundle's GPU series


def parse_exposition(text: str, timestamp: float) -> Snapshot:
    """Parse Prometheus text exposition into a snapshot.

    Args:
        text: the body of a ``/metrics`` response (text format 0.0.4).
        timestamp: when it was scraped, Unix seconds.

    Raises:
        ScrapeError: the text is not valid exposition format.
    """
    try:
        samples = tuple(
            Sample(s.name, dict(s.labels), float(s.value))
            for family in text_string_to_metric_families(text)
            for s in family.samples
        )
    except (ValueError, TypeError, IndexError) as exc:
        raise ScrapeError(f"cannot parse metrics exposition: {exc}") from exc
    return Snapshot(timestamp, samples)


def select_samples(snapshot: Snapshot, bundle: str | None = None) -> tuple[Sample, ...]:
    """Return the convention samples of *bundle* (process samples are kept as is).

    Args:
        snapshot: one scrape.
        bundle: the bundle digest to keep; None accepts a target exporting one bundle.

    Raises:
        ProfileError: *bundle* is None and the plugin metrics name several bundles.
    """
    plugin = [s for s in snapshot.samples if s.name in _PLUGIN_SAMPLES]
    if bundle is None:
        seen = sorted({s.labels.get(c.BUNDLE_LABEL, "") for s in plugin})
        if len(seen) > 1:
            raise ProfileError(f"metrics of several bundles are exported ({', '.join(seen)}); name one")
    else:
        plugin = [s for s in plugin if s.labels.get(c.BUNDLE_LABEL) == bundle]
    process = [s for s in snapshot.samples if s.name in _PROCESS_SAMPLES]
    return tuple(plugin + process)


def read_convention(snapshot: Snapshot, bundle: str | None = None) -> Reading:
    """Extract the convention metrics of *bundle* from one scrape.

    Args:
        snapshot: one scrape.
        bundle: the bundle digest; None accepts a target exporting one bundle.

    Raises:
        ProfileError: several bundles and none named, or malformed latency labels.
    """
    by_name: dict[str, list[Sample]] = {}
    for sample in select_samples(snapshot, bundle):
        by_name.setdefault(sample.name, []).append(sample)

    def total(name: str) -> float | None:
        found = by_name.get(name)
        return None if not found else math.fsum(s.value for s in found)

    gpu = by_name.get(c.GPU_UTILIZATION)
    try:
        latency = _latency_state(by_name)
    except (KeyError, ValueError) as exc:
        raise ProfileError(f"{c.LATENCY} has a bucket without le or a bad quantile label: {exc}") from exc
    return Reading(
        timestamp=snapshot.timestamp,
        latency=latency,
        frames=total(c.FRAMES),
        errors=total(c.ERRORS),
        cpu_seconds=total(c.CPU_SECONDS),
        rss_bytes=total(c.RSS_BYTES),
        gpu_utilization=None if not gpu else math.fsum(s.value for s in gpu) / len(gpu),
        gpu_power_watts=total(c.GPU_POWER),
    )


def _latency_state(by_name: Mapping[str, list[Sample]]) -> LatencyState | None:
    count = math.fsum(s.value for s in by_name.get(c.LATENCY + "_count", []))
    total = math.fsum(s.value for s in by_name.get(c.LATENCY + "_sum", []))
    if c.LATENCY + "_bucket" in by_name:
        buckets: dict[float, float] = {}
        for s in by_name[c.LATENCY + "_bucket"]:
            le = float(s.labels["le"])
            buckets[le] = buckets.get(le, 0.0) + s.value
        return HistogramState(buckets, count, total)
    if c.LATENCY in by_name or c.LATENCY + "_count" in by_name:
        quantiles: dict[float, float] = {}
        for s in by_name.get(c.LATENCY, []):
            q = float(s.labels["quantile"])
            # Quantiles of distinct series cannot be merged; the worst one is reported.
            quantiles[q] = max(quantiles.get(q, -math.inf), s.value)
        return SummaryState(quantiles, count, total)
    return None


def summarize(readings: Sequence[Reading]) -> MetricsSummary:
    """Summarise a window from its readings in time order (at least first and last).

    Args:
        readings: one per scrape, oldest first.

    Raises:
        EmptyWindowError: fewer than two readings with latency, or no inference in between.
        ProfileError: the latency metric is missing, changes type, or cannot give quantiles.
    """
    states = [r.latency for r in readings if r.latency is not None]
    if not states:
        raise ProfileError(f"no {c.LATENCY} metric for this bundle; see annotations-spec/v1/profile.md")
    if len(states) < 2 or readings[-1].timestamp <= readings[0].timestamp:
        raise EmptyWindowError("a window needs at least two scrapes, some time apart, of the latency metric")
    count, total, buckets = _latency_increase(states)
    if count <= 0:
        raise EmptyWindowError(f"no inference observed in the window ({c.LATENCY}_count did not grow)")
    latency = _latency(states[-1], count, total, buckets)
    frames = _rate(readings, lambda r: r.frames)
    if frames is None:
        # Without an item counter, each latency observation counts as one item.
        frames = count / (readings[-1].timestamp - readings[0].timestamp)
    errors = [r.errors for r in readings if r.errors is not None]
    rss = [r.rss_bytes for r in readings if r.rss_bytes is not None]
    return MetricsSummary(
        latency_seconds=latency,
        throughput_per_second=frames,
        cpu_cores=_rate(readings, lambda r: r.cpu_seconds),
        peak_rss_bytes=int(max(rss)) if rss else None,
        error_count=round(counter_increase(errors)),
        sample_count=round(count),
        gpu_utilization=_mean(r.gpu_utilization for r in readings),
        gpu_power_watts=_mean(r.gpu_power_watts for r in readings),
    )


def _latency_increase(states: Sequence[LatencyState]) -> tuple[float, float, dict[float, float]]:
    """Return (count, sum, bucket) increases; a drop anywhere resets the whole histogram."""
    kinds = {type(s) for s in states}
    if len(kinds) > 1:
        raise ProfileError(f"{c.LATENCY} changed between histogram and summary inside the window")
    count = total = 0.0
    buckets: dict[float, float] = {}
    for previous, current in itertools.pairwise(states):
        reset = current.count < previous.count
        if isinstance(previous, HistogramState) and isinstance(current, HistogramState):
            reset = reset or any(current.buckets.get(le, 0.0) < v for le, v in previous.buckets.items())
            for le, value in current.buckets.items():
                buckets[le] = buckets.get(le, 0.0) + (value if reset else value - previous.buckets.get(le, 0.0))
        count += current.count if reset else current.count - previous.count
        total += current.sum if reset else current.sum - previous.sum
    return count, total, buckets


def _latency(last: LatencyState, count: float, total: float, buckets: Mapping[float, float]) -> Latency:
    if isinstance(last, HistogramState):
        p50, p95, p99 = (bucket_quantile(q, buckets.items()) for q in c.QUANTILES)
        if math.isnan(p50):
            raise ProfileError(f"{c.LATENCY} histogram has no +Inf bucket or fewer than two buckets")
        return Latency(p50, p95, p99, total / count, None, "histogram")
    values = []
    for q in c.QUANTILES:
        value = last.quantiles.get(q, math.nan)
        if math.isnan(value):
            raise ProfileError(f"summary {c.LATENCY} has no quantile {q}; export a histogram instead")
        values.append(value)
    return Latency(values[0], values[1], values[2], total / count, last.quantiles.get(1.0), "summary")


def _rate(readings: Sequence[Reading], value: Callable[[Reading], float | None]) -> float | None:
    points = [(r.timestamp, v) for r in readings if (v := value(r)) is not None]
    if len(points) < 2 or points[-1][0] <= points[0][0]:
        return None
    return counter_increase([v for _, v in points]) / (points[-1][0] - points[0][0])


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return math.fsum(present) / len(present) if present else None


_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_SUFFIXES = ("", "_bucket", "_count", "_sum")


def map_latency_metric(snapshot: Snapshot, metric: str, bundle: str) -> Snapshot:
    """A plugin's own latency metric read as the convention's (``--latency-metric``).

    Samples of ``metric`` (histogram or summary, in seconds) are renamed to
    ``ecr_inference_seconds``; those without a ``bundle`` label get ``bundle`` (the
    reference that was scraped names the bundle). The convention's own latency samples
    are dropped, so one run cannot mix two sources.

    Raises:
        ValidationError: ``metric`` is not a Prometheus metric name.
    """
    if not _METRIC_NAME.match(metric):
        raise ValidationError(f"not a metric name: {metric!r}", field="latency-metric")
    renamed = {metric + suffix: c.LATENCY + suffix for suffix in _SUFFIXES}
    samples = []
    for sample in snapshot.samples:
        if sample.name in renamed:
            labels = dict(sample.labels)
            labels.setdefault(c.BUNDLE_LABEL, bundle)
            samples.append(Sample(renamed[sample.name], labels, sample.value))
        elif sample.name not in _LATENCY_SAMPLES:
            samples.append(sample)
    return Snapshot(snapshot.timestamp, tuple(samples))
