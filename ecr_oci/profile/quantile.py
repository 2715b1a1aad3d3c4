"""Counter increases and bucket quantiles computed the way PromQL computes them."""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Sequence

# PromQL treats bucket counts this close to each other as equal (float noise).
_PRECISION = 1e-12


def counter_increase(values: Sequence[float]) -> float:
    """Return how much a counter grew over consecutive *values*, across resets.

    A value lower than its predecessor means the process restarted and the
    counter began again from zero, so the new value itself is the growth (the
    rule PromQL ``increase`` applies, without its extrapolation).

    Args:
        values: the counter's values in time order.
    """
    total = 0.0
    for previous, current in itertools.pairwise(values):
        total += current if current < previous else current - previous
    return total


def bucket_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float:
    """Return quantile *q* of cumulative histogram *buckets* like ``histogram_quantile``.

    Port of ``bucketQuantile`` in Prometheus ``promql/quantile.go``: buckets are
    sorted and coalesced, made monotonic, then the quantile is interpolated
    linearly inside the bucket holding rank ``q * count``; 0 is the lower bound
    of the first bucket, and a rank in the +Inf bucket yields the highest finite
    upper bound. NaN is returned where PromQL returns NaN (no +Inf bucket, fewer
    than two buckets, no observation), so callers can tell "no answer".

    Args:
        q: the quantile, 0..1.
        buckets: (upper bound ``le``, cumulative count) pairs, any order.
    """
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = sorted(buckets)
    if not ordered or not math.isinf(ordered[-1][0]):
        return math.nan
    bounds, counts = _coalesce(ordered)
    _correct_precision(counts)
    _ensure_monotonic(counts)
    if len(bounds) < 2 or counts[-1] == 0:
        return math.nan
    rank = q * counts[-1]
    # First bucket whose cumulative count reaches the rank, never the +Inf one.
    b = bisect.bisect_left(counts, rank, 0, len(counts) - 1)
    if b == len(bounds) - 1:
        return bounds[-2]
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start, end, count = 0.0, bounds[b], counts[b]
    if b > 0:
        start = bounds[b - 1]
        count -= counts[b - 1]
        rank -= counts[b - 1]
    if count == 0:
        # Only for q == 0 with an empty first bucket: Go's 0/0 makes PromQL answer NaN.
        return math.nan
    return start + (end - start) * (rank / count)


def _coalesce(ordered: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """Merge buckets sharing an upper bound by adding their counts."""
    bounds: list[float] = []
    counts: list[float] = []
    for bound, count in ordered:
        if bounds and bounds[-1] == bound:
            counts[-1] += count
        else:
            bounds.append(bound)
            counts.append(count)
    return bounds, counts


def _correct_precision(counts: list[float]) -> None:
    """Flatten relative differences below 1e-12 that float sums introduce."""
    previous = counts[0]
    for i in range(1, len(counts)):
        delta = abs(counts[i] - previous)
        if delta == 0:
            continue
        # A zero count after a non-zero one is no float noise (Go divides to +Inf).
        if counts[i] != 0 and delta / counts[i] <= _PRECISION:
            counts[i] = previous
        else:
            previous = counts[i]


def _ensure_monotonic(counts: list[float]) -> None:
    """Raise any count below an earlier one to it (the envelope PromQL uses)."""
    highest = counts[0]
    for i in range(1, len(counts)):
        if counts[i] > highest:
            highest = counts[i]
        elif counts[i] < highest:
            counts[i] = highest
