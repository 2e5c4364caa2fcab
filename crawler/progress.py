"""A progress bar for people at a terminal (items, bytes, rate, ETA); silent otherwise."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID


class RunProgress:
    """Wraps rich's Progress so the pipeline only calls ``set_total`` and ``advance``."""

    def __init__(self, enabled: bool, description: str = "mirror") -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._description = description
        self._bytes = 0
        self._items = 0
        self._started = time.monotonic()

    def __enter__(self) -> RunProgress:
        if self.enabled:
            # Imported here: runs without a terminal (cron jobs, the benchmarks) never draw one.
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("items  {task.fields[size]}  {task.fields[rate]}"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(
                self._description, total=None, size="0 bytes", rate=""
            )
            self._started = time.monotonic()
            self._items = 0
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

    def advance(self, items: int = 1, nbytes: int = 0) -> None:
        """Count finished items and their bytes."""
        if self._progress is not None and self._task is not None:
            from rich.filesize import decimal

            self._bytes += nbytes
            self._items += items
            elapsed = max(time.monotonic() - self._started, 1e-6)
            self._progress.update(
                self._task,
                advance=items,
                size=decimal(self._bytes),
                rate=f"{self._items / elapsed:.1f} items/s",
            )
