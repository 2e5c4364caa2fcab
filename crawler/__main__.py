"""``python -m crawler`` is the same as the ``allen-mirror`` command."""

import gc

gc.disable()  # start-up builds long-lived objects only; the command turns collection back on

from crawler.cli import run  # noqa: E402

run()
