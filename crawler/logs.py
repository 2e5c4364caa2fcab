"""structlog set-up: console lines on a terminal, JSON lines otherwise; events, not sentences."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

from crawler.redact import mask_values

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class StderrLogger:
    """Writes to whatever ``sys.stderr`` is now, so a progress bar can redirect it cleanly."""

    def msg(self, message: str) -> None:
        stream: TextIO = sys.stderr
        stream.write(message + "\n")
        stream.flush()

    log = debug = info = warn = warning = error = critical = exception = msg


def uses_json(log_format: str) -> bool:
    """``auto`` means console lines on a terminal, JSON lines otherwise."""
    return log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())


def configure(log_format: str = "auto", level: str = "info") -> None:
    """Choose the renderer once per process (see ``uses_json``)."""
    use_json = uses_json(log_format)
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            mask_values,  # no password in a URL ever reaches a log line
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=lambda *_: StderrLogger(),
        cache_logger_on_first_use=False,
    )
