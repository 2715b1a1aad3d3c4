"""A small Prometheus HTTP API client (``/api/v1/query``, ``/api/v1/query_range``).

Every failure becomes a :class:`~ecr_oci.profile.errors.PrometheusError`
subclass with one readable sentence: down or unreachable, query rejected, or an
answer that is not the Prometheus API.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests

from ecr_oci.profile.errors import PrometheusError, PrometheusQueryError, PrometheusUnavailableError
from ecr_oci.profile.series import Series, series_from_matrix

_ERRNO = re.compile(r"\[Errno -?\d+\] [^'\")]+")


@dataclass(frozen=True)
class InstantSample:
    """One element of an instant vector."""

    labels: Mapping[str, str]  # including __name__ when the query keeps it
    value: float


class PrometheusClient:
    """Runs PromQL against one Prometheus server."""

    def __init__(self, url: str, *, timeout: float = 10.0, session: requests.Session | None = None) -> None:
        """Point the client at a server.

        Args:
            url: base URL, e.g. ``http://127.0.0.1:9090`` (a path prefix is kept).
            timeout: seconds to wait for each answer.
            session: optional requests session (connection reuse, auth, proxies).
        """
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._http = session or requests.Session()

    def query_vector(self, promql: str, at: datetime) -> list[InstantSample]:
        """Evaluate an instant-vector (or scalar) query at *at*.

        Raises:
            PrometheusError: unreachable, rejected, or the result is a range vector.
        """
        kind, result = self._query(promql, at)
        if kind == "scalar":
            return [InstantSample({}, float(result[1]))]
        if kind != "vector":
            raise PrometheusError(f"expected an instant vector from {promql!r}, got {kind}")
        try:
            return [InstantSample(item["metric"], float(item["value"][1])) for item in result]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise PrometheusError(f"malformed vector from {self.url}: {exc}") from exc

    def query_matrix(self, promql: str, at: datetime) -> tuple[Series, ...]:
        """Evaluate a range-vector selector (``metric{...}[5m]``) at *at*: the raw samples.

        Raises:
            PrometheusError: unreachable, rejected, or the result is not a matrix.
        """
        kind, result = self._query(promql, at)
        if kind != "matrix":
            raise PrometheusError(f"expected a range vector from {promql!r}, got {kind}")
        return self._matrix(result)

    def query_range(self, promql: str, start: datetime, end: datetime, step: float) -> tuple[Series, ...]:
        """Evaluate *promql* at every *step* seconds from *start* to *end*.

        Raises:
            PrometheusError: unreachable, rejected, or not a matrix.
        """
        params = {"query": promql, "start": _ts(start), "end": _ts(end), "step": f"{step:.3f}"}
        data = self._get("/api/v1/query_range", params, promql)
        if data.get("resultType") != "matrix":
            raise PrometheusError(f"expected a matrix from query_range {promql!r}")
        return self._matrix(data.get("result"))

    def _query(self, promql: str, at: datetime) -> tuple[str, Any]:
        data = self._get("/api/v1/query", {"query": promql, "time": _ts(at)}, promql)
        return str(data.get("resultType")), data.get("result")

    def _matrix(self, result: Any) -> tuple[Series, ...]:
        try:
            return series_from_matrix(result)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise PrometheusError(f"malformed matrix from {self.url}: {exc}") from exc

    def _get(self, path: str, params: Mapping[str, str], promql: str) -> dict[str, Any]:
        try:
            response = self._http.get(self.url + path, params=params, timeout=self.timeout)
        except requests.Timeout as exc:
            raise PrometheusUnavailableError(f"Prometheus at {self.url} did not answer within {self.timeout}s") from exc
        except requests.RequestException as exc:
            raise PrometheusUnavailableError(f"Prometheus at {self.url} is not reachable: {_reason(exc)}") from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or body.get("status") not in ("success", "error"):
            if response.status_code >= 500:
                raise PrometheusUnavailableError(f"Prometheus at {self.url} answered HTTP {response.status_code}")
            raise PrometheusError(f"{self.url}{path} is not a Prometheus API (HTTP {response.status_code})")
        if body["status"] == "error":
            kind = body.get("errorType")
            raise PrometheusQueryError(f"Prometheus rejected {promql!r}: {kind}: {body.get('error')}", error_type=kind)
        data = body.get("data")
        if not isinstance(data, dict):
            raise PrometheusError(f"Prometheus at {self.url} answered without data")
        return data


def _ts(moment: datetime) -> str:
    """Unix seconds with millisecond precision, the resolution Prometheus keeps."""
    return f"{moment.timestamp():.3f}"


def _reason(exc: requests.RequestException) -> str:
    """The short OS reason (``[Errno 111] Connection refused``) buried in a requests error."""
    match = _ERRNO.search(str(exc))
    return match.group(0) if match else type(exc).__name__
