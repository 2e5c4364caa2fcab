"""The export's heavy dependencies live in the optional ``[export]`` extra: say so in one line."""

from __future__ import annotations

import importlib.util

from crawler.errors import UsageError

EXTRA = "pip install 'allen-mirror[export]'"


def require(module: str) -> None:
    """Fail with one line naming the extra when ``module`` is not installed."""
    if importlib.util.find_spec(module) is None:
        raise UsageError(f"export needs {module}, which is not installed: {EXTRA}")
