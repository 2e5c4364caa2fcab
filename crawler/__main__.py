"""``python -m crawler`` is the same as the ``allen-mirror`` command."""

from crawler.cli import run

run()
