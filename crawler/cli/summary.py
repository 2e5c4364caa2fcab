"""The end of a run, for people: a few plain lines instead of the raw summary event.

``--log-format json`` (and any run without a terminal) keeps the ``run.summary`` event, which
monitors parse; a person at a terminal reads these lines.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crawler.session import RunReport


def human_bytes(count: int) -> str:
    """``123.4 MB``: decimal units, for sizes people read."""
    size = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def summary_lines(report: RunReport, where: str) -> list[str]:
    """What a run did, where the mirror is, and what to do next."""
    seconds = max(report.seconds, 1e-9)
    lines: list[str] = []
    if report.command != "verify":  # verify prints its own count line on stdout
        done = f"{report.done} downloaded"
        if report.already_done:
            done += f", {report.already_done} already done"
        lines.append(
            f"{report.command}: {done}, {report.failed} failed, "
            f"{report.skipped_failed} skipped (marked failed by the API)"
        )
        if report.command == "sync":
            lines.append(
                f"  {report.new_items} new, {report.changed} changed, "
                f"{report.removed} removed ({report.pruned} deleted), "
                f"{report.unchanged} unchanged"
            )
    lines.append(
        f"  {human_bytes(report.bytes)} in {report.seconds:.1f} s "
        f"({human_bytes(round(report.bytes / seconds))}/s, {report.requests} requests, "
        f"{report.retries} retries)"
    )
    lines.append(f"  mirror: {where}")
    if report.unknown_data_sets:
        shown = ", ".join(str(i) for i in report.unknown_data_sets[:10])
        more = len(report.unknown_data_sets) - 10
        lines.append(
            f"  skipped {len(report.unknown_data_sets)} unknown data set id(s) "
            f"(--ignore-missing): {shown}" + (f" and {more} more" if more > 0 else "")
        )
    if report.interrupted_by is not None:
        name = signal.Signals(report.interrupted_by).name
        lines.append(
            f"  stopped by {name}: {report.remaining} item(s) still to fetch; "
            "run the same command again to resume"
        )
    elif report.remaining and report.command in ("mirror", "sync"):
        lines.append(
            f"  {report.remaining} other item(s) pending in this manifest "
            "(allen-mirror worker fetches them)"
        )
    return lines
