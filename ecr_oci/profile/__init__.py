"""Performance profiles of ECR bundles, from plugin Prometheus metrics.

Two ways to measure one bundle on one node over a time window:

* :func:`profile_scrape` scrapes the plugin's ``/metrics`` directly;
* :func:`profile_prometheus` queries a Prometheus that scraped it.

Both return a :class:`ProfileResult`: the canonical summary document (the
profile referrer's summary layer) and the raw series (its optional gzip layer).
The metric convention is ``annotations-spec/v1/profile.md``.
"""

from __future__ import annotations

from ecr_oci.profile.errors import (
    EmptyWindowError,
    ProfileError,
    PrometheusError,
    PrometheusQueryError,
    PrometheusUnavailableError,
    ScrapeError,
)
from ecr_oci.profile.hardware import detect_hardware
from ecr_oci.profile.promapi import PrometheusClient
from ecr_oci.profile.prometheus import RunningBundle, profile_prometheus, running_bundles
from ecr_oci.profile.result import ProfileContext, ProfileResult
from ecr_oci.profile.scrape import profile_from_snapshots, profile_scrape
from ecr_oci.profile.series import Series, decode_series, encode_series
from ecr_oci.profile.summary import (
    Hardware,
    Latency,
    MetricsSummary,
    ProfileSummary,
    PrometheusSource,
    ScrapeSource,
    Window,
    Workload,
    validate_document,
)

__all__ = [
    "EmptyWindowError",
    "Hardware",
    "Latency",
    "MetricsSummary",
    "ProfileContext",
    "ProfileError",
    "ProfileResult",
    "ProfileSummary",
    "PrometheusClient",
    "PrometheusError",
    "PrometheusQueryError",
    "PrometheusSource",
    "PrometheusUnavailableError",
    "RunningBundle",
    "ScrapeError",
    "ScrapeSource",
    "Series",
    "Window",
    "Workload",
    "decode_series",
    "detect_hardware",
    "encode_series",
    "profile_from_snapshots",
    "profile_prometheus",
    "profile_scrape",
    "running_bundles",
    "validate_document",
]
