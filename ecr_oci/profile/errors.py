"""Errors of the profile package (all :class:`ecr_oci.errors.EcrError` subclasses).

They live here rather than in ``ecr_oci/errors.py`` only because profiling was
written alongside other work; moving them there later changes no import of the
callers, who import them from ``ecr_oci.profile``.
"""

from __future__ import annotations

from ecr_oci.errors import EcrError


class ProfileError(EcrError):
    """Metrics cannot be turned into a profile (missing metrics, inconsistent data)."""

    exit_code = 10


class EmptyWindowError(ProfileError):
    """The window holds too few scrapes or no inference at all to summarise."""


class ScrapeError(ProfileError):
    """A ``/metrics`` endpoint could not be scraped or returned unparsable text."""


class PrometheusError(ProfileError):
    """Prometheus answered something that is not a usable query result."""

    exit_code = 11


class PrometheusUnavailableError(PrometheusError):
    """Prometheus cannot be reached (down, wrong URL, timeout)."""


class PrometheusQueryError(PrometheusError):
    """Prometheus rejected a query (``status: error`` with errorType/error)."""

    def __init__(self, message: str, *, error_type: str | None = None) -> None:
        self.error_type = error_type
        super().__init__(message)
