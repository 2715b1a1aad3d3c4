"""Raw series of a profile: the optional gzip layer next to the summary.

The layer (``application/vnd.waggle.ecr.profile.series.v1+json+gzip``) is a
Prometheus ``matrix`` result, so existing tooling reads it: ``result`` holds
``{"metric": {"__name__": ..., labels}, "values": [[unix_seconds, "value"], ...]}``.
Its bytes are deterministic (canonical JSON, gzip mtime 0), like the summary.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ecr_oci.errors import ValidationError
from ecr_oci.profile.metrics import Sample, Snapshot, select_samples
from ecr_oci.profile.summary import Window, canonical_json, format_time

SERIES_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Series:
    """The points of one sample name and label set, oldest first."""

    name: str
    labels: Mapping[str, str]  # without __name__
    points: tuple[tuple[float, float], ...]  # (Unix seconds, value)


def series_from_snapshots(snapshots: Sequence[Snapshot], bundle: str | None = None) -> tuple[Series, ...]:
    """Collect the convention samples of *bundle* from every scrape into series.

    Args:
        snapshots: scrapes, oldest first.
        bundle: the bundle digest to keep; None accepts a target exporting one bundle.

    Raises:
        ProfileError: several bundles exported and none named.
    """
    points: dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[float, float]]] = {}
    for snapshot in snapshots:
        for sample in select_samples(snapshot, bundle):
            key = (sample.name, tuple(sorted(sample.labels.items())))
            points.setdefault(key, []).append((snapshot.timestamp, sample.value))
    return tuple(Series(name, dict(labels), tuple(p)) for (name, labels), p in sorted(points.items()))


def snapshots_from_series(series: Iterable[Series]) -> list[Snapshot]:
    """Regroup series into one snapshot per timestamp (e.g. a ``query_range`` step).

    Args:
        series: any series; points sharing a timestamp form one snapshot.
    """
    by_time: dict[float, list[Sample]] = {}
    for one in series:
        for timestamp, value in one.points:
            by_time.setdefault(timestamp, []).append(Sample(one.name, one.labels, value))
    return [Snapshot(t, tuple(samples)) for t, samples in sorted(by_time.items())]


def encode_series(series: Iterable[Series], *, bundle: str, node: str, window: Window) -> bytes:
    """Return the gzip layer bytes for *series* (deterministic for equal input).

    Args:
        series: the raw series.
        bundle: bundle digest, repeated so the layer stands alone.
        node: node id.
        window: the profiled window.
    """
    ordered = sorted(series, key=lambda s: (s.name, sorted(s.labels.items())))
    result = [_matrix_item(s) for s in ordered]
    document = {
        "schemaVersion": SERIES_SCHEMA_VERSION,
        "bundle": bundle,
        "node": node,
        "window": {"start": format_time(window.start), "end": format_time(window.end)},
        "resultType": "matrix",
        "result": result,
    }
    # mtime=0 keeps the gzip header, hence the layer digest, independent of the clock.
    return gzip.compress(canonical_json(document), mtime=0)


def decode_series(blob: bytes) -> tuple[Series, ...]:
    """Read the series back from layer bytes made by :func:`encode_series`.

    Raises:
        ValidationError: not gzip, not JSON, or not a series document.
    """
    try:
        document = json.loads(gzip.decompress(blob))
        return tuple(_series(item) for item in document["result"])
    except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise ValidationError(f"not a profile series layer: {exc}") from exc


def series_from_matrix(result: Iterable[Mapping[str, Any]]) -> tuple[Series, ...]:
    """Build series from a Prometheus API ``matrix`` result.

    Raises:
        KeyError, TypeError, ValueError: the result is not a matrix.
    """
    return tuple(_series(item) for item in result)


def _matrix_item(series: Series) -> dict[str, Any]:
    metric: dict[str, str] = {"__name__": series.name, **series.labels}
    return {"metric": metric, "values": [[round(t, 3), _format_value(v)] for t, v in series.points]}


def _series(item: Mapping[str, Any]) -> Series:
    labels = dict(item["metric"])
    name = labels.pop("__name__", "")
    return Series(name, labels, tuple((float(t), float(v)) for t, v in item["values"]))


def _format_value(value: float) -> str:
    """Format like the Prometheus API: shortest round-trip text, NaN and ±Inf spelled out."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text
