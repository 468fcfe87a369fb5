"""Prometheus metrics of one worker process: messages ingested and rejected, new MQLs,
request latency. Each process has its own registry (scrape each worker, or run one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

__all__ = ["Metrics"]

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._ingested = Counter(
            "qualify_events_ingested", "Messages stored and scored", registry=self.registry
        )
        self._duplicates = Counter(
            "qualify_events_duplicate", "Messages ignored as seen before", registry=self.registry
        )
        self._rejected = Counter(
            "qualify_events_rejected", "Malformed messages rejected", registry=self.registry
        )
        self._mqls = Counter(
            "qualify_mqls",
            "Leads this worker made MQLs: by messages, model activations, ended recycle waits",
            registry=self.registry,
        )
        self._ingest_seconds = Histogram(
            "qualify_ingest_seconds",
            "Time from a request's decoded messages to their commit",
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "qualify_request_seconds",
            "HTTP request latency by route",
            ["route", "method", "status"],
            buckets=_BUCKETS,
            registry=self.registry,
        )

    def ingested(self, count: int, duplicates: int, mqls: int = 0) -> None:
        self._ingested.inc(count)
        self._duplicates.inc(duplicates)
        self._mqls.inc(mqls)

    def qualified(self, mqls: int) -> None:
        """MQLs made outside ingestion (activations, the scheduler's rounds)."""
        self._mqls.inc(mqls)

    def rejected(self, count: int) -> None:
        self._rejected.inc(count)

    def ingest_latency(self, seconds: float) -> None:
        self._ingest_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
