"""bucket_quantile follows PromQL histogram_quantile; counter_increase handles resets."""

from __future__ import annotations

import math

import pytest

from ecr_oci.profile.quantile import bucket_quantile, counter_increase

INF = math.inf
# 10 observations <= 0.1, 20 more <= 0.2, 10 more above.
BUCKETS = [(0.1, 10.0), (0.2, 30.0), (INF, 40.0)]


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (0.0, 0.0),  # rank 0 in the first bucket: its lower bound, 0
        (0.1, 0.04),  # rank 4 of 10 in [0, 0.1]
        (0.25, 0.1),  # exactly the first bucket's count
        (0.5, 0.15),  # rank 20: 10 into the 20 of (0.1, 0.2]
        (0.75, 0.2),  # rank 30: the top of (0.1, 0.2]
        (0.95, 0.2),  # rank 38 is in +Inf: the highest finite bound
        (1.0, 0.2),
    ],
)
def test_linear_interpolation_like_promql(q: float, expected: float) -> None:
    assert bucket_quantile(q, BUCKETS) == pytest.approx(expected)


def test_bucket_order_and_duplicates_do_not_matter() -> None:
    # Two series' buckets with the same le are added, as `sum by (le)` would.
    split = [(INF, 25.0), (0.2, 20.0), (0.1, 6.0), (0.1, 4.0), (0.2, 10.0), (INF, 15.0)]
    assert bucket_quantile(0.5, split) == pytest.approx(0.15)


def test_non_monotonic_counts_are_flattened() -> None:
    # 0.2 claims fewer than 0.1: PromQL raises it to 10 (the envelope).
    assert bucket_quantile(0.2, [(0.1, 10.0), (0.2, 8.0), (INF, 20.0)]) == pytest.approx(0.04)


@pytest.mark.parametrize(
    "buckets",
    [
        [(0.1, 10.0), (0.2, 30.0)],  # no +Inf bucket
        [(INF, 10.0)],  # fewer than two buckets
        [(0.1, 0.0), (INF, 0.0)],  # no observation
        [],
    ],
)
def test_no_answer_is_nan(buckets: list[tuple[float, float]]) -> None:
    assert math.isnan(bucket_quantile(0.5, buckets))


def test_out_of_range_quantiles() -> None:
    assert bucket_quantile(-0.1, BUCKETS) == -INF
    assert bucket_quantile(1.1, BUCKETS) == INF
    assert math.isnan(bucket_quantile(math.nan, BUCKETS))


def test_non_positive_first_bucket_returns_its_bound() -> None:
    assert bucket_quantile(0.1, [(-1.0, 5.0), (0.0, 6.0), (INF, 10.0)]) == -1.0


def test_counter_increase_across_resets() -> None:
    assert counter_increase([]) == 0
    assert counter_increase([5.0]) == 0
    assert counter_increase([100.0, 150.0, 180.0]) == 80
    # 100 -> 150 (+50), restart, 30 (+30), 45 (+15)
    assert counter_increase([100.0, 150.0, 30.0, 45.0]) == 95
