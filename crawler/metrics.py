"""Prometheus metrics of a run: served on ``--metrics-port`` while it lasts, written to
``--metrics-file`` (node-exporter textfile format) when it ends.

The counts are read from the stages at scrape time (the recorder's ``FetchStats``, the client's
counters, the work stream's buffer), so the hot path pays nothing for them; only the request
latency histogram is observed per request, once, when the request lets go of its slot.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, Histogram, start_http_server, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from crawler import __version__
from crawler.errors import EXIT_FAILED, UsageError, exit_code_for, first_error

if TYPE_CHECKING:
    from crawler.config import Settings
    from crawler.recorder import FetchStats
    from crawler.session import RunReport

# Seconds a request holds its slot, body included: RMA pages and small images take tens of
# milliseconds, full-resolution images and volumes minutes.
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class Requests(Protocol):
    """What the metrics read off the client (crawler/client.py ``ApiClient``)."""

    requests: int
    in_flight: dict[int, float]
    observe: Callable[[float], None] | None

    @property
    def retry_reasons(self) -> dict[str, int]: ...


class RunMetrics(Collector):
    """One run's registry; the pipeline hands it the live parts of the run as they start."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.registry = CollectorRegistry(auto_describe=True)
        self.latency = Histogram(
            "allen_mirror_request_duration_seconds",
            "Seconds from taking a request slot to the end of its body.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.started = time.time()
        self.client: Requests | None = None
        self.fetches: list[tuple[FetchStats, Callable[[], int]]] = []
        self.pending: int | None = None  # the manifest's pending items, refreshed by heartbeat
        self.ended: dict[str, float] = {}  # end time, exit code, duration: set once, at the end
        self.registry.register(self)

    def watch_client(self, client: Requests) -> None:
        self.client = client
        client.observe = self.latency.observe

    def watch_fetch(self, stats: FetchStats, buffered: Callable[[], int]) -> None:
        """A fetch's counts, and how many items wait in its work stream for a fetch task."""
        self.fetches.append((stats, buffered))

    def end(self, report: RunReport | None, exit_code: int, seconds: float) -> None:
        if report is not None:
            self.pending = report.remaining
        self.ended = {
            "end_time_seconds": time.time(),
            "exit_code": float(exit_code),
            "duration_seconds": round(seconds, 3),
        }

    def describe(self) -> Iterable[Metric]:
        return []  # collected fresh each scrape; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "allen_mirror_run_info", "The command this process runs.", labels=["command", "version"]
        )
        info.add_metric([self.command, __version__], 1.0)
        yield info
        yield GaugeMetricFamily(
            "allen_mirror_run_start_time_seconds", "When the run started.", value=self.started
        )
        done = sum(stats.done for stats, _ in self.fetches)
        failed = sum(stats.failed for stats, _ in self.fetches)
        items = CounterMetricFamily(
            "allen_mirror_items", "Items recorded in the manifest.", labels=["outcome"]
        )
        items.add_metric(["done"], done)
        items.add_metric(["failed"], failed)
        yield items
        yield CounterMetricFamily(
            "allen_mirror_bytes",
            "Bytes of the items recorded done.",
            value=sum(stats.bytes for stats, _ in self.fetches),
        )
        yield GaugeMetricFamily(
            "allen_mirror_fetch_buffer_items",
            "Items taken from the manifest, waiting for a fetch task.",
            value=sum(buffered() for _, buffered in self.fetches),
        )
        if self.pending is not None:
            yield GaugeMetricFamily(
                "allen_mirror_queue_depth",
                "Pending items in the manifest (every few seconds; at the end, what remains).",
                value=self.pending,
            )
        if self.client is not None:
            yield from self._client_metrics(self.client)
        for name, value in self.ended.items():
            yield GaugeMetricFamily(f"allen_mirror_run_{name}", _ENDED_HELP[name], value=value)

    def _client_metrics(self, client: Requests) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "allen_mirror_requests", "HTTP requests made, retries included.", value=client.requests
        )
        retries = CounterMetricFamily(
            "allen_mirror_retries", "Requests asked again, by reason.", labels=["reason"]
        )
        for reason, count in sorted(dict(client.retry_reasons).items()):
            retries.add_metric([reason], count)
        yield retries
        yield GaugeMetricFamily(
            "allen_mirror_requests_in_flight",
            "Requests holding a slot.",
            value=len(client.in_flight),
        )

    def write(self, path: Path) -> None:
        """The node-exporter textfile: written beside ``path`` and renamed over it."""
        write_to_textfile(os.fspath(path), self.registry)


_ENDED_HELP = {
    "end_time_seconds": "When the run ended.",
    "exit_code": "The run's exit code (0 all done, 1 failures, 130/143 interrupted).",
    "duration_seconds": "How long the run took.",
}


def check_metrics_file(path: Path) -> None:
    """A textfile that cannot be written is a mistake to hear about before the run, not after."""
    folder = path.parent
    if not folder.is_dir():
        raise UsageError(f"metrics file {path}: directory {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"metrics file {path}: directory {folder} is not writable")


@contextmanager
def run_metrics(settings: Settings, command: str) -> Iterator[RunMetrics | None]:
    """Serve the run's metrics while the body runs and write the textfile when it ends (also
    after an error, with its exit code); None when neither was asked for.

    The body calls ``RunMetrics.end`` with its report; an error ending it is noted here."""
    if settings.metrics_port is None and settings.metrics_file is None:
        yield None
        return
    if settings.metrics_file is not None:
        check_metrics_file(settings.metrics_file)
    metrics = RunMetrics(command)
    server = None
    if settings.metrics_port is not None:
        try:
            server, _ = start_http_server(settings.metrics_port, registry=metrics.registry)
        except OSError as exc:
            raise UsageError(
                f"cannot serve metrics on port {settings.metrics_port}: {exc.strerror or exc}"
            ) from exc
    try:
        yield metrics
    except BaseException as raised:
        if not metrics.ended:
            error = first_error(raised)
            if isinstance(error, KeyboardInterrupt):
                code = 128 + signal.SIGINT
            else:
                code = exit_code_for(error) if isinstance(error, Exception) else EXIT_FAILED
            metrics.end(None, code, time.time() - metrics.started)
        raise
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        if settings.metrics_file is not None:
            metrics.write(settings.metrics_file)
