"""``python -m crawler``: the same entry point as the ``allen-mirror`` command."""

from crawler.cli import run

run()
