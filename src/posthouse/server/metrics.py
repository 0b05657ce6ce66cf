"""Metrics: every Prometheus series one Posthouse process exposes, in a registry of its own (`Metrics`).

This is the only module that imports prometheus_client. The hot paths pay for an increment in memory and
nothing else: labelled children are looked up once and kept (`labels()` costs 1.2 µs, a kept child's `inc()`
0.3 µs), the SMTP server counts into plain dicts (`SmtpTally`, 0.1 µs) that are read at scrape time, and
what lives in the database (queue depth, webhook backlog) is read by a bounded query when scraped
(services/queue_gauges.py), never kept up to date on the way.

Counters are per process: split roles (`posthouse serve --role …`) on several nodes each expose their own,
and Prometheus sums them. The gauges read from the database are the same on every node: take their `max`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

# What `generate_latest` writes for these (legacy-named) series is the classic text format 0.0.4, the one every
# Prometheus version reads; recent prometheus-client releases label it "version=1.0.0" (their CONTENT_TYPE_LATEST).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Acceptance → delivered: from a local relay (tens of ms) to retries over hours.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
# One exchange with a peer (an SMTP transaction, a webhook POST), and one HTTP request.
EXCHANGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# One group commit: an fsync is 0.1–10 ms on most disks.
COMMIT_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


class SmtpTally:
    """What the SMTP server counts on its hot path, as plain dicts (read by `Metrics` when scraped).

    `connections` by result (accepted, refused_busy, refused_client, refused_stopping), `commands` by verb
    (unknown verbs as UNKNOWN, so a client cannot grow the label set), `replies` by code."""

    __slots__ = ("commands", "connections", "replies")

    def __init__(self) -> None:
        self.connections: dict[str, int] = {}
        self.commands: dict[bytes, int] = {}
        self.replies: dict[bytes, int] = {}


class _SmtpCollector(Collector):
    def __init__(self, tally: SmtpTally) -> None:
        self.tally = tally

    def collect(self) -> Iterator[CounterMetricFamily]:
        t = self.tally
        connections = CounterMetricFamily("posthouse_smtp_connections", "SMTP connections by result", labels=["result"])
        for result, count in list(t.connections.items()):
            connections.add_metric([result], count)
        commands = CounterMetricFamily("posthouse_smtp_commands", "SMTP commands received, by verb", labels=["command"])
        for verb, count in list(t.commands.items()):
            commands.add_metric([verb.decode("ascii", "replace")], count)
        replies = CounterMetricFamily("posthouse_smtp_replies", "SMTP replies sent, by code", labels=["code"])
        for code, count in list(t.replies.items()):
            replies.add_metric([code.decode("ascii", "replace")], count)
        yield from (connections, commands, replies)


class Metrics:
    """The process's registry and its instruments; the `count_…`/`observe_…` methods are the hot-path API."""

    def __init__(self, *, process_metrics: bool = True) -> None:
        # No `_created` series beside every counter and histogram: they double the scrape and no dashboard reads
        # them (the library keeps this switch process-wide; every registry of this process wants it off).
        disable_created_metrics()  # type: ignore[no-untyped-call]  # the library leaves it unannotated
        r = self.registry = CollectorRegistry()
        if process_metrics:  # CPU, memory, open files of this process, and the Python version
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
        self.messages = Counter(
            "posthouse_messages", "Messages by state, one per recipient: accepted (stored for delivery), suppressed "
            "(at acceptance), delivered, deferred (a transient failure, retried), bounced", ["state", "stream"],
            registry=r)
        self.delivery_latency = Histogram(
            "posthouse_delivery_latency_seconds", "From acceptance (or a scheduled message's release) to delivered",
            ["stream"], buckets=LATENCY_BUCKETS, registry=r)
        self.delivery_attempts = Histogram(
            "posthouse_delivery_attempt_seconds", "One delivery attempt: handing a message to its next hop",
            ["transport"], buckets=EXCHANGE_BUCKETS, registry=r)
        self.http_requests = Counter(
            "posthouse_http_requests", "HTTP API requests by method, route template and status",
            ["method", "route", "status"], registry=r)
        self.http_duration = Histogram(
            "posthouse_http_request_duration_seconds", "HTTP API requests: time to the end of the answer",
            ["method", "route"], buckets=EXCHANGE_BUCKETS, registry=r)
        self.webhook_posts = Counter(
            "posthouse_webhook_posts", "Webhook posts by outcome (delivered, retry, stop, refused)", ["outcome"],
            registry=r)
        self.webhook_duration = Histogram(
            "posthouse_webhook_post_duration_seconds", "One webhook post, DNS and connection included",
            buckets=EXCHANGE_BUCKETS, registry=r)
        self.commit_duration = Histogram(
            "posthouse_store_commit_duration_seconds", "One group commit of the store's writer (SQLite: the writer "
            "thread's transaction and fsync; PostgreSQL: the committer's transaction)", ["dialect"],
            buckets=COMMIT_BUCKETS, registry=r)
        self.commit_batch = Histogram(
            "posthouse_store_commit_batch_size", "Callers' writes in one group commit", ["dialect"],
            buckets=BATCH_BUCKETS, registry=r)
        self.tracking_failures = Counter(
            "posthouse_tracking_batch_failures", "Batches of opens and clicks the store refused (retried)",
            registry=r)
        # Read when scraped, from this process.
        self.write_queue = Gauge("posthouse_store_write_queue_length",
                                 "Writes waiting for the store's writer (SQLite writer thread, PostgreSQL committer)",
                                 registry=r)
        self.tracking_queue = Gauge("posthouse_tracking_queue_depth",
                                    "Opens and clicks waiting to be recorded", registry=r)
        # Read when scraped, from the database (the same on every node: take the max).
        self.queue_depth = Gauge("posthouse_queue_depth", "Deliveries not finished (queued, deferred, sending); "
                                 "counted up to a cap", registry=r)
        self.queue_due = Gauge("posthouse_queue_due", "Deliveries due now and not yet claimed; counted up to a cap",
                               registry=r)
        self.queue_oldest_due = Gauge("posthouse_queue_oldest_due_age_seconds",
                                      "How long the longest-waiting due delivery has been due (0: none)", registry=r)
        self.webhook_backlog = Gauge("posthouse_webhook_backlog", "Webhook posts not yet delivered (pending, "
                                     "sending); counted up to a cap", registry=r)
        self.webhook_oldest_due = Gauge("posthouse_webhook_oldest_due_age_seconds",
                                        "How long the longest-waiting due webhook post has been due (0: none)",
                                        registry=r)
        self.gauge_failures = Counter("posthouse_gauge_query_failures",
                                      "Scrapes whose database gauges could not be read (the last values stay)",
                                      registry=r)
        self.smtp = SmtpTally()
        r.register(_SmtpCollector(self.smtp))
        self._lock = threading.Lock()  # guards the child caches (the SQLite writer thread uses them too)
        self._counters: dict[tuple[str, ...], Counter] = {}
        self._histograms: dict[tuple[str, ...], Histogram] = {}

    # -- hot path ---------------------------------------------------------------------------------

    def count_messages(self, state: str, stream: str, n: int = 1) -> None:
        self._counter(self.messages, "m", state, stream).inc(n)

    def observe_delivered(self, stream: str, latency_seconds: float) -> None:
        self._counter(self.messages, "m", "delivered", stream).inc()
        self._histogram(self.delivery_latency, "l", stream).observe(latency_seconds)

    def observe_attempt(self, transport: str, seconds: float) -> None:
        self._histogram(self.delivery_attempts, "a", transport).observe(seconds)

    def observe_http(self, method: str, route: str, status: int, seconds: float) -> None:
        self._counter(self.http_requests, "h", method, route, str(status)).inc()
        self._histogram(self.http_duration, "h", method, route).observe(seconds)

    def observe_webhook_post(self, outcome: str, seconds: float) -> None:
        self._counter(self.webhook_posts, "w", outcome).inc()
        self.webhook_duration.observe(seconds)

    def observe_commit(self, dialect: str, batch: int, seconds: float) -> None:
        """A group commit of `batch` callers' writes took `seconds` (called from the SQLite writer thread)."""
        self._histogram(self.commit_batch, "b", dialect).observe(batch)
        self._histogram(self.commit_duration, "c", dialect).observe(seconds)

    def _counter(self, family: Counter, *key: str) -> Counter:
        child = self._counters.get(key)
        if child is None:
            with self._lock:
                child = self._counters.get(key)
                if child is None:
                    child = self._counters[key] = family.labels(*key[1:])
        return child

    def _histogram(self, family: Histogram, *key: str) -> Histogram:
        child = self._histograms.get(key)
        if child is None:
            with self._lock:
                child = self._histograms.get(key)
                if child is None:
                    child = self._histograms[key] = family.labels(*key[1:])
        return child

    # -- scrape -----------------------------------------------------------------------------------

    def render(self) -> bytes:
        """The text exposition format (`CONTENT_TYPE`)."""
        return generate_latest(self.registry)
