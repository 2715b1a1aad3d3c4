"""Prometheus metrics of one gateway (its own registry, so several can run in a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class Metrics:
    """Requests by route/method/status/decision, latency, bytes streamed, denials."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ecr_gateway_requests", "Requests handled", ["route", "method", "status", "decision"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ecr_gateway_request_seconds", "Time to response headers", ["route", "method"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=self.registry,
        )
        self.bytes = Counter(
            "ecr_gateway_bytes", "Bytes streamed through the proxy", ["direction"], registry=self.registry
        )
        self.denials = Counter(
            "ecr_gateway_denials", "Requests refused by policy or the manifest gate", ["reason"],
            registry=self.registry,
        )
        self.tokens = Counter(
            "ecr_gateway_tokens_issued", "Tokens issued by /auth/token", ["kind"], registry=self.registry
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
