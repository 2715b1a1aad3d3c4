"""The profile summary document: typed model, canonical JSON and schema validation.

The document is the summary layer of a profile referrer artifact
(``application/vnd.waggle.ecr.profile.summary.v1+json``). Its JSON is canonical
(sorted keys, no whitespace, floats at 6 significant digits, no creation
time), so profiling the same node and window twice yields identical bytes, and
therefore the same blob digest in the registry.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast

from ecr_oci import spec
from ecr_oci.errors import ValidationError
from ecr_oci.profile.convention import check_bundle, check_node

SCHEMA_VERSION = 1
Stage = Literal["vw", "node"]
LatencyMethod = Literal["histogram", "summary"]
_SIGNIFICANT_DIGITS = 6


def round_float(value: float) -> float:
    """Round *value* to 6 significant digits, dropping float noise like 0.30000000000000004."""
    return float(f"{value:.{_SIGNIFICANT_DIGITS}g}")


def format_time(moment: datetime) -> str:
    """Format *moment* as RFC 3339 UTC (``Z``), with milliseconds only when non-zero."""
    moment = moment.astimezone(UTC)
    spec = "milliseconds" if moment.microsecond // 1000 else "seconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def validate_document(document: Any) -> None:
    """Check *document* against ``annotations-spec/v1/schemas/profile.schema.json``.

    Args:
        document: a parsed JSON value.

    Raises:
        ValidationError: naming the first failing field.
    """
    spec.check("profile", document, what="profile summary")


def canonical_json(document: Mapping[str, Any]) -> bytes:
    """Serialise *document* with sorted keys, compact separators and UTF-8."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8")


@dataclass(frozen=True)
class Hardware:
    """The machine the profile was measured on."""

    model: str  # e.g. "NVIDIA Jetson Xavier NX Developer Kit"
    arch: str  # OCI architecture: amd64, arm64, ...
    memory_bytes: int | None  # None when unknown (no inventory, no node_exporter metrics)
    accelerator: str | None = None  # e.g. "nvidia-volta-384"; None when CPU only


@dataclass(frozen=True)
class Workload:
    """What the plugin was doing while measured (free text plus optional details)."""

    description: str
    input: str | None = None  # e.g. a camera stream or data set name
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Window:
    """The measured time range; both ends timezone-aware."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValidationError("window times must be timezone-aware", field="window")
        if self.end <= self.start:
            raise ValidationError("window end must be after its start", field="window")

    @classmethod
    def from_timestamps(cls, start: float, end: float) -> Window:
        """Build a window from Unix timestamps (seconds).

        Raises:
            ValidationError: end is not after start.
        """
        return cls(datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC))

    @property
    def seconds(self) -> float:
        """Length of the window in seconds."""
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True)
class Latency:
    """Inference latency in seconds."""

    p50: float
    p95: float
    p99: float
    mean: float
    max: float | None  # unknown for histograms: only bucket bounds are known
    method: LatencyMethod  # where quantiles come from: bucket interpolation or plugin summary


@dataclass(frozen=True)
class MetricsSummary:
    """The summarised metrics of one bundle over one window."""

    latency_seconds: Latency | None  # None: resources only (no latency metric; ecr node-exporter)
    throughput_per_second: float
    cpu_cores: float | None  # average cores busy; None when process metrics are missing
    peak_rss_bytes: int | None
    error_count: int
    sample_count: int  # latency observations in the window
    gpu_utilization: float | None = None
    gpu_power_watts: float | None = None


@dataclass(frozen=True)
class PrometheusSource:
    """Metrics were read back from a Prometheus server with these queries."""

    url: str
    queries: Mapping[str, str]
    interval_seconds: float
    kind: Literal["prometheus"] = "prometheus"


@dataclass(frozen=True)
class ScrapeSource:
    """Metrics were scraped directly from the plugin's ``/metrics`` endpoint."""

    endpoint: str
    interval_seconds: float
    scrape_count: int
    kind: Literal["scrape"] = "scrape"


Source = PrometheusSource | ScrapeSource


@dataclass(frozen=True)
class ProfileSummary:
    """One performance profile of a bundle on a node (or Virtual Waggle)."""

    bundle: str
    node: str
    stage: Stage
    hardware: Hardware
    window: Window
    workload: Workload
    metrics: MetricsSummary
    source: Source

    def __post_init__(self) -> None:
        check_bundle(self.bundle)
        check_node(self.node)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON document (rounded, optional fields omitted)."""
        return _summary_to_dict(self)

    def to_json(self) -> bytes:
        """Return the canonical, schema-valid JSON bytes of the summary layer.

        Raises:
            ValidationError: the document does not satisfy the schema.
        """
        document = self.to_dict()
        validate_document(document)
        return canonical_json(document)

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> ProfileSummary:
        """Validate *document* against the schema and build the model from it.

        Raises:
            ValidationError: the document does not satisfy the schema.
        """
        validate_document(document)
        return _summary_from_dict(document)

    @classmethod
    def from_json(cls, data: bytes | str) -> ProfileSummary:
        """Parse and validate the summary layer's bytes.

        Raises:
            ValidationError: not JSON, or not a valid profile summary.
        """
        try:
            document = json.loads(data)
        except ValueError as exc:
            raise ValidationError(f"profile summary is not JSON: {exc}") from exc
        if not isinstance(document, dict):
            raise ValidationError("profile summary is not a JSON object")
        return cls.from_dict(cast(dict[str, Any], document))


def _summary_to_dict(summary: ProfileSummary) -> dict[str, Any]:
    hardware = summary.hardware
    workload: dict[str, Any] = {"description": summary.workload.description}
    if summary.workload.input is not None:
        workload["input"] = summary.workload.input
    if summary.workload.args:
        workload["args"] = list(summary.workload.args)
    return {
        "schemaVersion": SCHEMA_VERSION,
        "bundle": summary.bundle,
        "node": summary.node,
        "stage": summary.stage,
        "hardware": {
            "model": hardware.model,
            "arch": hardware.arch,
            "accelerator": hardware.accelerator,
            "memory_bytes": hardware.memory_bytes,
        },
        "window": {"start": format_time(summary.window.start), "end": format_time(summary.window.end)},
        "workload": workload,
        "metrics": _metrics_to_dict(summary.metrics),
        "source": _source_to_dict(summary.source),
    }


def _optional(value: float | None) -> float | None:
    return None if value is None else round_float(value)


def _metrics_to_dict(metrics: MetricsSummary) -> dict[str, Any]:
    latency = metrics.latency_seconds
    document: dict[str, Any] = {
        "latency_seconds": None if latency is None else {
            "p50": round_float(latency.p50),
            "p95": round_float(latency.p95),
            "p99": round_float(latency.p99),
            "mean": round_float(latency.mean),
            "max": _optional(latency.max),
            "method": latency.method,
        },
        "throughput_per_second": round_float(metrics.throughput_per_second),
        "cpu_cores": _optional(metrics.cpu_cores),
        "peak_rss_bytes": metrics.peak_rss_bytes,
        "error_count": metrics.error_count,
        "sample_count": metrics.sample_count,
    }
    # Optional GPU figures are left out, not null, when the plugin exports none.
    if metrics.gpu_utilization is not None:
        document["gpu_utilization"] = round_float(metrics.gpu_utilization)
    if metrics.gpu_power_watts is not None:
        document["gpu_power_watts"] = round_float(metrics.gpu_power_watts)
    return document


def _source_to_dict(source: Source) -> dict[str, Any]:
    if isinstance(source, PrometheusSource):
        return {
            "kind": source.kind,
            "url": source.url,
            "queries": dict(source.queries),
            "interval_seconds": round_float(source.interval_seconds),
        }
    return {
        "kind": source.kind,
        "endpoint": source.endpoint,
        "interval_seconds": round_float(source.interval_seconds),
        "scrape_count": source.scrape_count,
    }


def _summary_from_dict(document: Mapping[str, Any]) -> ProfileSummary:
    hardware, window, workload = document["hardware"], document["window"], document["workload"]
    metrics, latency, source = document["metrics"], document["metrics"]["latency_seconds"], document["source"]
    parsed_source: Source
    if source["kind"] == "prometheus":
        parsed_source = PrometheusSource(source["url"], dict(source["queries"]), source["interval_seconds"])
    else:
        parsed_source = ScrapeSource(source["endpoint"], source["interval_seconds"], source["scrape_count"])
    return ProfileSummary(
        bundle=document["bundle"],
        node=document["node"],
        stage=document["stage"],
        hardware=Hardware(hardware["model"], hardware["arch"], hardware["memory_bytes"], hardware["accelerator"]),
        window=Window(datetime.fromisoformat(window["start"]), datetime.fromisoformat(window["end"])),
        workload=Workload(workload["description"], workload.get("input"), tuple(workload.get("args", ()))),
        metrics=MetricsSummary(
            latency_seconds=None if latency is None else Latency(
                latency["p50"], latency["p95"], latency["p99"], latency["mean"], latency["max"], latency["method"]
            ),
            throughput_per_second=metrics["throughput_per_second"],
            cpu_cores=metrics["cpu_cores"],
            peak_rss_bytes=metrics["peak_rss_bytes"],
            error_count=metrics["error_count"],
            sample_count=metrics["sample_count"],
            gpu_utilization=metrics.get("gpu_utilization"),
            gpu_power_watts=metrics.get("gpu_power_watts"),
        ),
        source=parsed_source,
    )
