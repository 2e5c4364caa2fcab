"""Secrets out of everything people and programs read: passwords in URLs become ``***``.

``--api-base http://user:secret@host/`` must reach aiohttp as given (it sends the credentials
as Basic auth), but no log line, error, report, runs row or manifest URL may repeat the
password. URLs are masked where they are stored or shown (``mask_url``); the log processor
(``mask_text``) is the safety net for anything else that names a URL.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any

# scheme://user:password@  (the user is kept, as SQLAlchemy's safe URLs keep it)
_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*):(?P<secret>[^@\s/]+)@")


def mask_text(text: str) -> str:
    """Every ``scheme://user:password@`` in ``text`` with the password replaced by ``***``."""
    if "@" not in text:
        return text
    return _USERINFO.sub(lambda m: f"{m['head']}:***@", text)


def mask_url(url: str) -> str:
    """A URL fit for a log line, a report or the manifest."""
    return mask_text(url)


def mask_values(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: masks passwords in every string value of an event."""
    for key, value in event.items():
        if isinstance(value, str) and "@" in value:
            event[key] = mask_text(value)
    return event
