"""Profile a plugin by scraping its ``/metrics`` endpoint directly (no Prometheus).

Used on a Virtual Waggle or any machine without a Prometheus: scrape every
*interval* for *duration*, keep every scrape as raw series, and summarise the
window between the first and the last scrape.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import requests

from ecr_oci.errors import ValidationError
from ecr_oci.profile import convention as c
from ecr_oci.profile.errors import ProfileError, ScrapeError
from ecr_oci.profile.metrics import Snapshot, map_latency_metric, parse_exposition, read_convention, summarize
from ecr_oci.profile.result import ProfileContext, ProfileResult
from ecr_oci.profile.series import series_from_snapshots
from ecr_oci.profile.summary import ProfileSummary, ScrapeSource, Window

# Ask for the classic text format: the parser we use does not read OpenMetrics.
_ACCEPT = "text/plain;version=0.0.4;q=1.0, */*;q=0.1"


def scrape_once(endpoint: str, *, session: requests.Session | None = None, timeout: float = 5.0) -> Snapshot:
    """Scrape *endpoint* once; the snapshot time is the middle of the request, in ms.

    Args:
        endpoint: the ``http(s)://host:port/metrics`` URL.
        session: a requests session to reuse connections; a new request otherwise.
        timeout: seconds to wait for the answer.

    Raises:
        ScrapeError: unreachable, non-200 answer, or unparsable text.
    """
    http = session or requests
    before = time.time()
    try:
        response = http.get(endpoint, headers={"Accept": _ACCEPT}, timeout=timeout)
    except requests.RequestException as exc:
        raise ScrapeError(f"cannot scrape {endpoint}: {exc}") from exc
    after = time.time()
    if response.status_code != 200:
        raise ScrapeError(f"scraping {endpoint} answered HTTP {response.status_code}")
    # Millisecond timestamps, as Prometheus keeps them: the raw layer then holds the
    # exact times, and replaying it reproduces the summary.
    return parse_exposition(response.text, round((before + after) / 2, 3))


def collect(
    endpoint: str,
    *,
    interval: float,
    duration: float,
    session: requests.Session | None = None,
    timeout: float = 5.0,
    check_first: Callable[[Snapshot], None] | None = None,
) -> list[Snapshot]:
    """Scrape *endpoint* at 0, interval, 2·interval, ... up to *duration* seconds.

    That is ``floor(duration / interval) + 1`` scrapes, paced on a monotonic clock;
    a scrape slower than *interval* delays the next one instead of bunching.

    Args:
        endpoint: the ``/metrics`` URL.
        interval: seconds between scrape starts, > 0.
        duration: seconds from first to last scrape, >= interval.
        session: a requests session; one is made (and closed) otherwise.
        timeout: per-scrape timeout in seconds (at most *interval* is sensible).
        check_first: called with the first scrape; raising there ends the run at once
            instead of after *duration*.

    Raises:
        ValidationError: interval or duration out of range.
        ScrapeError: any scrape failed (a profile with holes would mislead).
    """
    if not (interval > 0 and math.isfinite(duration) and duration >= interval):
        raise ValidationError(f"need 0 < interval <= duration, got {interval} and {duration}", field="interval")
    count = math.floor(duration / interval + 1e-9) + 1
    own = session is None
    http = session or requests.Session()
    snapshots: list[Snapshot] = []
    try:
        start = time.monotonic()
        for i in range(count):
            delay = start + i * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            snapshots.append(scrape_once(endpoint, session=http, timeout=timeout))
            if i == 0 and check_first is not None:
                check_first(snapshots[0])
    finally:
        if own:
            http.close()
    return snapshots


def profile_from_snapshots(
    snapshots: Sequence[Snapshot], context: ProfileContext, *, endpoint: str, interval: float
) -> ProfileResult:
    """Summarise scrapes already taken (oldest first) into a profile.

    Args:
        snapshots: the scrapes of the window, first to last.
        context: bundle, node, stage, hardware and workload of the run.
        endpoint: the scraped URL, recorded in the source.
        interval: the scrape interval in seconds, recorded in the source.

    Raises:
        ProfileError: the bundle's metrics are missing or unusable.
        EmptyWindowError: fewer than two scrapes or no inference between them.
    """
    readings = [read_convention(s, context.bundle) for s in snapshots]
    if snapshots and all(r.latency is None for r in readings):
        raise _missing_latency(snapshots[-1], context.bundle, endpoint)
    metrics = summarize(readings)
    summary = ProfileSummary(
        bundle=context.bundle,
        node=context.node,
        stage=context.stage,
        hardware=context.hardware,
        window=Window.from_timestamps(snapshots[0].timestamp, snapshots[-1].timestamp),
        workload=context.workload,
        metrics=metrics,
        source=ScrapeSource(endpoint=endpoint, interval_seconds=interval, scrape_count=len(snapshots)),
    )
    return ProfileResult(summary, series_from_snapshots(snapshots, context.bundle))


def _bundle_labels(snapshot: Snapshot) -> set[str]:
    return {
        s.labels.get(c.BUNDLE_LABEL, "(none)") for s in snapshot.samples if s.name.startswith(c.PLUGIN_PREFIX)
    }


def _missing_latency(snapshot: Snapshot, bundle: str, endpoint: str) -> ProfileError:
    seen = sorted(_bundle_labels(snapshot))
    return ProfileError(
        f"{endpoint} exports no {c.LATENCY} with {c.BUNDLE_LABEL}={bundle!r}"
        f" (bundle labels seen: {', '.join(seen) or 'none'})"
    )


def first_scrape_check(bundle: str, endpoint: str) -> Callable[[Snapshot], None]:
    """A check of the first scrape: plugin metrics that name only *other* bundles are a wrong
    ``bundle`` label (or the wrong endpoint), known at once. Plugins that create their
    labelled series lazily (none yet) are given the whole window."""

    def check(snapshot: Snapshot) -> None:
        labels = _bundle_labels(snapshot) - {"(none)"}
        if labels and bundle not in labels:
            raise _missing_latency(snapshot, bundle, endpoint)

    return check


def profile_scrape(
    endpoint: str,
    context: ProfileContext,
    *,
    interval: float,
    duration: float,
    session: requests.Session | None = None,
    timeout: float = 5.0,
    latency_metric: str | None = None,
) -> ProfileResult:
    """Scrape *endpoint* every *interval* for *duration* seconds and summarise the window.

    With *latency_metric*, the plugin's own latency metric stands for
    ``ecr_inference_seconds`` and needs no ``bundle`` label (:func:`map_latency_metric`).

    Args:
        endpoint: the plugin's ``/metrics`` URL.
        context: bundle, node, stage, hardware and workload of the run.
        interval: seconds between scrapes.
        duration: seconds from first to last scrape.
        session: optional requests session.
        timeout: per-scrape timeout in seconds.

    Raises:
        ValidationError: bad interval/duration.
        ScrapeError: a scrape failed.
        ProfileError: the bundle's metrics are missing or unusable.
        EmptyWindowError: no inference happened during the window.
    """
    check = None if latency_metric else first_scrape_check(context.bundle, endpoint)
    snapshots = collect(endpoint, interval=interval, duration=duration, session=session, timeout=timeout,
                        check_first=check)
    if latency_metric:
        snapshots = [map_latency_metric(s, latency_metric, context.bundle) for s in snapshots]
    return profile_from_snapshots(snapshots, context, endpoint=endpoint, interval=interval)
