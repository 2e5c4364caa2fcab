"""A progress bar for people at a terminal; silent otherwise.

It shows items, bytes, MB/s, retries and failures so far, elapsed and remaining time, and says
so when nothing has finished for a while although requests are in flight: a run waiting on
slow or stalled requests must not look frozen. What the line says is decided by
``status_text``, a plain function; rich draws it.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Iterator

    from rich.console import RenderableType
    from rich.progress import Progress, TaskID

STALL_SECONDS = 10.0  # no item finished for this long, requests in flight: say what we wait on


class Requests(Protocol):
    """What the bar reads off the client (crawler/client.py ``ApiClient``)."""

    retries: int
    in_flight: dict[int, float]  # request number -> when it took its slot (monotonic)


@dataclass
class Tally:
    """What the bar counts as outcomes are recorded."""

    items: int = 0
    failed: int = 0
    bytes: int = 0
    started: float = field(default_factory=time.monotonic)
    last_finished: float = field(default_factory=time.monotonic)  # or the start


def status_lines(
    tally: Tally, retries: int | None, in_flight: list[float], now: float
) -> list[str]:
    """The lines under the bar: ``1.4 MB  0.5 MB/s  2 retries  1 failed`` (retries and
    failures where requests are made), and what the run waits on when no item finished for
    ``STALL_SECONDS`` while requests are in flight."""
    from rich.filesize import decimal

    elapsed = max(now - tally.started, 1e-6)
    text = f"  {decimal(tally.bytes)}  {decimal(round(tally.bytes / elapsed))}/s"
    if retries is not None:
        text += f"  {retries} retr{'y' if retries == 1 else 'ies'}  {tally.failed} failed"
    lines = [text]
    if in_flight and now - tally.last_finished >= STALL_SECONDS:
        count, longest = len(in_flight), now - min(in_flight)
        lines.append(
            f"  waiting on {count} slow request{'' if count == 1 else 's'} "
            f"(longest {longest:.0f} s)"
        )
    return lines


class RunProgress:
    """Wraps rich's Progress so the pipeline only calls ``watch``, ``set_total`` and
    ``advance``."""

    def __init__(self, enabled: bool, description: str = "mirror") -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._description = description
        self._tally = Tally()
        self._requests: Requests | None = None

    def watch(self, requests: Requests) -> None:
        """Read retries and requests in flight off this client."""
        self._requests = requests

    def status(self, now: float | None = None) -> list[str]:
        """The lines under the bar (called by rich several times a second, from its thread:
        the client's dict is copied in one step before it is read)."""
        requests = self._requests
        in_flight = list(requests.in_flight.copy().values()) if requests is not None else []
        retries = requests.retries if requests is not None else None
        return status_lines(
            self._tally, retries, in_flight, time.monotonic() if now is None else now
        )

    def __enter__(self) -> RunProgress:
        self._tally = Tally()
        if self.enabled:
            # Imported here: runs without a terminal (cron jobs, the benchmarks) never draw one.
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.text import Text

            bar = self

            class WithStatus(Progress):
                """The bar (under 80 columns), then the status lines."""

                def get_renderables(self) -> Iterator[RenderableType]:
                    yield self.make_tasks_table(self.tasks)
                    for line in bar.status():
                        yield Text(line, no_wrap=True, overflow="ellipsis")

            self._progress = WithStatus(
                TextColumn("[bold]{task.description}"),
                BarColumn(bar_width=24),
                MofNCompleteColumn(),
                TextColumn("items  elapsed"),
                TimeElapsedColumn(),
                TextColumn("left"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(self._description, total=None)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.__exit__(exc_type, exc, tb)

    def set_total(self, items: int) -> None:
        """How many items this run expects to fetch."""
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, total=items)

    def advance(self, items: int = 1, nbytes: int = 0, *, failed: bool = False) -> None:
        """Count finished items (done or failed) and their bytes."""
        self._tally.items += items
        self._tally.bytes += nbytes
        self._tally.failed += items if failed else 0
        self._tally.last_finished = time.monotonic()
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=items)
