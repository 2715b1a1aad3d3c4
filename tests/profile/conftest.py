"""Fixtures that run a real exporter and a real Prometheus for the profile tests."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest

from ecr_oci.profile import profile_scrape
from tests.profile.support import (
    BUNDLE,
    SCRAPE_DURATION,
    SCRAPE_INTERVAL,
    Exporter,
    Live,
    PrometheusServer,
    make_context,
)


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if not path:
        pytest.fail("prometheus is not installed: run `make deps` (Debian package prometheus)")
    return path


@pytest.fixture(scope="session")
def live(prometheus_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """Exporter + Prometheus (1 s scrapes, node label) + a 4 s direct scrape every 0.5 s.

    Prometheus applies new targets on a 5 s tick, so the fixture first waits for
    its first sample; the direct scrape then runs while Prometheus keeps
    scraping, and the fixture waits until Prometheus has scraped past its end.
    """
    exporter = Exporter()
    prometheus: PrometheusServer | None = None
    try:
        exporter.start_workload()
        for_prometheus = exporter.serve("prometheus")
        direct = exporter.serve("direct")
        prometheus = PrometheusServer(tmp_path_factory.mktemp("prometheus"), [for_prometheus.split("/")[2]])
        prometheus.wait_for(f'count_over_time(ecr_inference_seconds_count{{bundle="{BUNDLE}"}}[1m])', 1)
        context = make_context()
        scraped = profile_scrape(direct, context, interval=SCRAPE_INTERVAL, duration=SCRAPE_DURATION)
        # Let Prometheus take (and store) a scrape after the window's end.
        time.sleep(max(0.0, scraped.summary.window.end.timestamp() + 1.5 - time.time()))
        direct_served = list(exporter.served["direct"])
        yield Live(exporter, prometheus, direct, direct_served, scraped, context)
    finally:
        if prometheus is not None:
            prometheus.stop()
        exporter.stop()
