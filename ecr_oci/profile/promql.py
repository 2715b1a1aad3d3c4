"""The PromQL a profile runs, built from a bundle digest, a node and a window.

Every query is evaluated as an instant query at the window's end, over a range
equal to the window, so it covers exactly [start, end]. Strings are built here
only, and recorded verbatim in the summary's ``source.queries``.
"""

from __future__ import annotations

from ecr_oci.profile import convention as c


def duration(seconds: float) -> str:
    """Format a window length as a PromQL duration (``300s``, or ``1500ms`` if fractional).

    Args:
        seconds: window length, > 0.
    """
    millis = round(seconds * 1000)
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def matchers(node: str, bundle: str | None = None, **extra: str) -> str:
    """Return ``{bundle="...",node="...",...}`` with values escaped."""
    labels = {c.BUNDLE_LABEL: bundle, c.NODE_LABEL: node, **extra}
    body = ",".join(f'{k}="{c.escape_label_value(v)}"' for k, v in labels.items() if v is not None)
    return "{" + body + "}"


class ProfileQueries:
    """The queries of one bundle on one node over one window."""

    def __init__(self, bundle: str, node: str, window_seconds: float) -> None:
        """Prepare the selectors.

        Args:
            bundle: bundle digest (the ``bundle`` label).
            node: node id (the ``node`` target label).
            window_seconds: window length.
        """
        self.bundle = bundle
        self.node = node
        self.plugin = matchers(node, bundle)
        self.process = matchers(node)
        self.range = f"[{duration(window_seconds)}]"
        # Process metrics carry no bundle label: keep those of the targets (job,
        # instance) that export this bundle's latency during the window.
        self.same_target = f"and on ({', '.join(c.TARGET_LABELS)})"
        self.of_bundle_targets = f"{self.same_target} last_over_time({c.LATENCY}_count{self.plugin}{self.range})"

    def histogram_quantile(self, q: float) -> str:
        """Quantile *q* interpolated from the bucket increases over the window."""
        return f"histogram_quantile({q:g}, sum by (le) (increase({c.LATENCY}_bucket{self.plugin}{self.range})))"

    def summary_quantile(self, q: float) -> str:
        """The plugin's own quantile *q* (a summary), its last value in the window, worst series."""
        selector = c.LATENCY + matchers(self.node, self.bundle, quantile=f"{q:g}")
        return f"max(last_over_time({selector}{self.range}))"

    def mean_latency(self) -> str:
        """Mean latency: increase of the sum over increase of the count."""
        return (
            f"sum(increase({c.LATENCY}_sum{self.plugin}{self.range}))"
            f" / sum(increase({c.LATENCY}_count{self.plugin}{self.range}))"
        )

    def raw(self, sample_name: str) -> str:
        """The raw samples of a plugin counter in the window (counted exactly client-side)."""
        return f"{sample_name}{self.plugin}{self.range}"

    def rate(self, sample_name: str) -> str:
        """Summed per-second rate of a plugin counter over the window."""
        return f"sum(rate({sample_name}{self.plugin}{self.range}))"

    def gauge_average(self, sample_name: str, across: str) -> str:
        """Time-average of a plugin gauge, combined across series with *across* (avg or sum)."""
        return f"{across}(avg_over_time({sample_name}{self.plugin}{self.range}))"

    def cpu_cores(self) -> str:
        """Average CPU cores used by the bundle's processes."""
        return f"sum(rate({c.CPU_SECONDS}{self.process}{self.range}) {self.of_bundle_targets})"

    def peak_rss(self) -> str:
        """Peak resident memory of the bundle's processes, summed over targets."""
        return f"sum(max_over_time({c.RSS_BYTES}{self.process}{self.range}) {self.of_bundle_targets})"

    def container_cpu_cores(self) -> str:
        """Average CPU cores used by the bundle's containers (``ecr node-exporter``)."""
        return f"sum(rate({c.CONTAINER_CPU_SECONDS}{self.plugin}{self.range}))"

    def container_peak_memory(self) -> str:
        """Highest working set of the bundle's containers in the window, summed over containers."""
        return f"sum(max_over_time({c.CONTAINER_MEMORY_WORKING_SET}{self.plugin}{self.range}))"

    def series_selectors(self) -> tuple[str, str]:
        """Selectors for the raw layer: plugin metrics, and the bundle targets' process metrics."""
        # A regex on __name__ takes every convention metric in one range query.
        plugin = f'{{__name__=~"{c.PLUGIN_PREFIX}.+",{self.plugin[1:]}'
        process = f'{{__name__=~"{c.CPU_SECONDS}|{c.RSS_BYTES}",{self.process[1:]}'
        return plugin, f"{process} {self.same_target} {c.LATENCY}_count{self.plugin}"


def running(window_seconds: float, metric: str = c.LATENCY + "_count") -> str:
    """The (bundle, node) pairs whose ``metric`` (the latency count, or the node exporter's
    container CPU counter) has samples in the window."""
    digest = 'bundle=~"sha256:[a-f0-9]{64}"'
    return (
        f"group by ({c.BUNDLE_LABEL}, {c.NODE_LABEL})"
        f" (last_over_time({metric}{{{digest}}}[{duration(window_seconds)}]))"
    )
