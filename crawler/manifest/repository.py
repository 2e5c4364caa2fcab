"""Manifest operations: idempotent planning, claims with leases, batched records, reports.

The same statements serve SQLite and Postgres: claims are one UPDATE ... RETURNING over a
sub-select that takes ``FOR UPDATE SKIP LOCKED`` where the backend has it, so several
workers can share one Postgres manifest without a coordinator. On Postgres, leases are measured
by the database server's clock, so workers on hosts whose clocks disagree still agree on them.
"""

from crawler.manifest.base import CLAIMED_COLUMNS, Claimed, ManifestBase, Outcome, Tally
from crawler.manifest.queue import Queue
from crawler.manifest.reading import Reading, tally_statement
from crawler.manifest.upkeep import Upkeep


class Manifest(Queue, Upkeep, Reading):
    """A handle on one manifest database; every method is one short unit of work.

    Nothing outside the ``crawler.manifest`` package writes SQL. The methods live by concern:
    the queue (``queue.py``), resuming, sync and verify (``upkeep.py``), reading
    (``reading.py``), over one connection and error boundary (``base.py``).
    """


__all__ = [
    "CLAIMED_COLUMNS",
    "Claimed",
    "Manifest",
    "ManifestBase",
    "Outcome",
    "Tally",
    "tally_statement",
]
