"""What a profiling run is about, and what it produces."""

from __future__ import annotations

from dataclasses import dataclass

from ecr_oci.profile.convention import check_bundle, check_node
from ecr_oci.profile.series import Series, encode_series
from ecr_oci.profile.summary import Hardware, ProfileSummary, Stage, Workload


@dataclass(frozen=True)
class ProfileContext:
    """The facts of a run that metrics cannot tell: which bundle, where, doing what."""

    bundle: str  # sha256 digest of the bundle index; also the `bundle` label value
    node: str  # node id; also the `node` target label value in Prometheus
    stage: Stage
    hardware: Hardware
    workload: Workload

    def __post_init__(self) -> None:
        check_bundle(self.bundle)
        check_node(self.node)


@dataclass(frozen=True)
class ProfileResult:
    """A profile: the summary document and the raw series it was computed from."""

    summary: ProfileSummary
    series: tuple[Series, ...]

    def summary_layer(self) -> bytes:
        """Canonical bytes of the summary layer (validated against the schema).

        Raises:
            ValidationError: the summary does not satisfy the schema.
        """
        return self.summary.to_json()

    def series_layer(self) -> bytes:
        """Deterministic gzip bytes of the raw series layer."""
        s = self.summary
        return encode_series(self.series, bundle=s.bundle, node=s.node, window=s.window)
