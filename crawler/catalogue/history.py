"""The history page: the manifest's runs joined with their JSON reports, drawn as SVG charts.

The runs table says what ran and how it ended; a run's report adds what the table does not
keep: each failure with its error (counted here by reason) and the throughput timeline.
Reports are read by the path the run recorded, or found in ``OUT/.reports/`` by run id.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from crawler.catalogue.layout import e, page, pill
from crawler.catalogue.model import failure_reason
from crawler.catalogue.pages import nav
from crawler.catalogue.svg import bar_chart, hbar_chart, human_bytes, line_chart, rates

CHARTED_RUNS = 60  # the newest runs drawn in the per-run charts
LISTED_RUNS = 500  # the newest runs listed in the table
OUTCOMES = {"ok": "done", "failed": "failed", "error": "failed", "interrupted": "pending"}


@dataclass(slots=True)
class RunView:
    """One run as the history page shows it."""

    id: int
    command: str
    outcome: str
    started: str
    duration: float | None
    counts: dict[str, int]
    bytes: int
    selection: str
    report_href: str | None = None
    reasons: dict[str, int] = field(default_factory=dict)
    timeline: list[tuple[float, int, int]] = field(default_factory=list)


def run_view(run: Mapping[str, Any], report: Mapping[str, Any] | None, href: str | None) -> RunView:
    """A runs row and its report (if found) as one view."""
    started, finished = run.get("started_at"), run.get("finished_at")
    duration: float | None = None
    if report is not None and isinstance(report.get("duration_s"), int | float):
        duration = float(report["duration_s"])
    elif isinstance(started, datetime) and isinstance(finished, datetime):
        duration = (finished - started).total_seconds()
    reasons: Counter[str] = Counter()
    timeline: list[tuple[float, int, int]] = []
    if report is not None:
        for failure in report.get("failures") or []:
            if isinstance(failure, Mapping):
                reasons[failure_reason(failure.get("error"), failure.get("http_status"))] += 1
        for sample in report.get("timeline") or []:
            if isinstance(sample, Mapping):
                timeline.append(
                    (
                        float(sample.get("seconds", 0)),
                        int(sample.get("done", 0)),
                        int(sample.get("bytes", 0)),
                    )
                )
    counts = {k: int(v) for k, v in (run.get("counts") or {}).items() if isinstance(v, int)}
    if not reasons and counts.get("failed"):
        reasons["(no report)"] = counts["failed"]
    return RunView(
        id=int(run["id"]),
        command=str(run.get("command")),
        outcome=str(run.get("outcome")),
        started=f"{started:%Y-%m-%d %H:%M:%S}" if isinstance(started, datetime) else "-",
        duration=duration,
        counts=counts,
        bytes=int(run.get("bytes") or 0),
        selection=json.dumps(run.get("selection") or {}, separators=(",", ":")),
        report_href=href,
        reasons=dict(reasons),
        timeline=timeline,
    )


def read_reports(out: Path, runs: Sequence[Mapping[str, Any]]) -> dict[int, tuple[Path, Any]]:
    """Each run's report document and its path, where one can be read."""
    found: dict[int, tuple[Path, Any]] = {}
    wanted = {int(run["id"]): run.get("report_path") for run in runs}
    by_id: dict[int, Path] = {}
    reports = out / ".reports"
    if reports.is_dir():  # reports written before a row recorded its path, or moved
        for path in sorted(reports.glob("*.json"), reverse=True)[: len(wanted) * 2 + 10]:
            by_id.setdefault(_run_id_of(path), path)
    for run_id, recorded in wanted.items():
        candidates = [Path(recorded)] if recorded else []
        if run_id in by_id:
            candidates.append(by_id[run_id])
        for path in candidates:
            try:
                document = json.loads(path.read_bytes())
            except (OSError, ValueError):
                continue
            if isinstance(document, Mapping) and document.get("run_id") in (run_id, None):
                found[run_id] = (path, document)
                break
    return found


def _run_id_of(path: Path) -> int:
    """The run id inside a report, read from its first few hundred bytes."""
    try:
        with path.open("rb") as handle:
            head = handle.read(400).decode("utf-8", "replace")
    except OSError:
        return -1
    marker = '"run_id":'
    at = head.find(marker)
    digits = head[at + len(marker) :].lstrip().split(",", 1)[0] if at >= 0 else ""
    return int(digits) if digits.isdigit() else -1


def history_page(views: Sequence[RunView], note: str, index_name: str = "index.html") -> str:
    """Charts of the newest runs and a table of all of them, newest first."""
    charted = list(reversed(views[:CHARTED_RUNS]))  # oldest first, left to right
    parts = [f"<h1>Runs</h1><p class='muted'>{len(views)} run(s) recorded in the manifest</p>"]
    if not views:
        parts.append("<p>No run recorded yet.</p>")
        return page("Runs", "".join(parts), nav=nav(index_name), note=note)
    items = bar_chart(
        "items per run",
        [
            (
                f"#{v.id}",
                [("done", v.counts.get("downloaded", 0)), ("failed", v.counts.get("failed", 0))],
            )
            for v in charted
        ],
    )
    nbytes = bar_chart(
        "bytes per run", [(f"#{v.id}", [("bytes", v.bytes)]) for v in charted], fmt=human_bytes
    )
    duration = bar_chart(
        "duration per run (s)",
        [(f"#{v.id}", [("duration", v.duration or 0.0)]) for v in charted],
    )
    reasons: Counter[str] = Counter()
    for view in charted:
        reasons.update(view.reasons)
    failures = hbar_chart("failures by reason", sorted(reasons.items()))
    legend = (
        '<span style="background:#2f7d4f"></span>downloaded'
        '<span style="background:#c2402a"></span>failed'
    )
    parts.append(
        '<div class="cols">'
        f'<div class="box"><b>Items per run</b> <span class="legend muted">{legend}</span>'
        f"{items}</div>"
        f'<div class="box"><b>Bytes per run</b>{nbytes}</div>'
        f'<div class="box"><b>Duration per run</b>{duration}</div>'
        f'<div class="box"><b>Failures by reason</b> <span class="muted">(last {len(charted)} '
        f"runs)</span>{failures}</div></div>"
    )
    latest = next((v for v in views if v.timeline), None)
    if latest is not None:
        samples = rates(latest.timeline)
        parts.append(
            f"<h2>Throughput of run #{latest.id} ({e(latest.command)}, {e(latest.started)})</h2>"
            '<div class="cols">'
            '<div class="box"><b>Items per second</b>'
            + line_chart("items per second", [(t, items) for t, items, _ in samples])
            + '</div><div class="box"><b>Bytes per second</b>'
            + line_chart(
                "bytes per second",
                [(t, nbytes) for t, _, nbytes in samples],
                fmt=lambda v: human_bytes(v) + "/s",
                colour="bytes",
            )
            + "</div></div>"
        )
    parts.append("<h2>All runs</h2>" + _runs_table(views[:LISTED_RUNS]))
    return page("Runs", "".join(parts), nav=nav(index_name), note=note)


def _runs_table(views: Sequence[RunView]) -> str:
    head = (
        "<tr><th>run</th><th>command</th><th>outcome</th><th>started (UTC)</th>"
        "<th class='n'>duration</th><th class='n'>downloaded</th><th class='n'>failed</th>"
        "<th class='n'>bytes</th><th>selection</th><th>report</th></tr>"
    )
    rows = []
    for v in views:
        duration = f"{v.duration:.1f} s" if v.duration is not None else "-"
        report = f'<a href="{e(v.report_href)}">JSON</a>' if v.report_href else "-"
        rows.append(
            f"<tr><td>#{v.id}</td><td>{e(v.command)}</td>"
            f"<td>{pill(OUTCOMES.get(v.outcome, 'removed'), v.outcome)}</td>"
            f"<td>{e(v.started)}</td><td class='n'>{e(duration)}</td>"
            f"<td class='n'>{v.counts.get('downloaded', 0)}</td>"
            f"<td class='n'>{v.counts.get('failed', 0)}</td>"
            f"<td class='n'>{e(human_bytes(v.bytes))}</td>"
            f"<td><code>{e(v.selection)}</code></td><td>{report}</td></tr>"
        )
    return f"<table><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>"
