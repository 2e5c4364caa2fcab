"""The command line: parse, load settings, configure logging, run, map the outcome to an exit code.

One module per command group: ``fetching`` (mirror, plan, sync, worker, demo), ``inspecting``
(verify, ls, status, history), ``admin`` (db, simulate), ``locate`` (offline image sync),
``catalogue`` (the static HTML site), ``serving`` (the mirror as the Allen API);
``app`` is the entry point and the one place errors become exit codes; ``common`` holds the
shared options and parsing.
"""

from crawler.cli import (  # noqa: F401 - they register the commands
    admin,
    catalogue,
    export,
    fetching,
    inspecting,
    locate,
    serving,
)
from crawler.cli.app import app, main, run
from crawler.cli.common import parse_ids_text, parse_sections

__all__ = ["app", "main", "parse_ids_text", "parse_sections", "run"]
