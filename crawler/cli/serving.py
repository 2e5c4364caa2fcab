"""``serve``: a mirror answered as the Allen API, so AllenSDK scripts run against it offline.

Exit codes: 0 stopped by SIGINT/SIGTERM; 2 bad usage (no mirror or manifest, ``--record``
without ``--fallback``, a bad fallback URL, the port taken); 3 ``--record`` while another run
holds the output directory.
"""

from __future__ import annotations

import errno
from pathlib import Path

import click
from yarl import URL

from crawler.cli.app import app
from crawler.cli.common import common_options, load, run_async
from crawler.errors import UsageError


def parse_fallback(text: str | None) -> str | None:
    """``--fallback URL``: an http(s) API base, without a query."""
    if text is None:
        return None
    url = URL(text)
    if url.scheme not in ("http", "https") or not url.host or url.query_string:
        raise UsageError(f"invalid --fallback {text!r}: expected an API base such as "
                         "http://api.brain-map.org")  # fmt: skip
    return text.rstrip("/")


@app.command()
@common_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8642, show_default=True,
    help="Port (0 picks a free one).",
)  # fmt: skip
@click.option(
    "--fallback",
    help="Ask this API (e.g. http://api.brain-map.org) for what the mirror lacks [default: none].",
)
@click.option("--record", is_flag=True, help="With --fallback: keep what it fetched in the mirror.")
@click.option("--log-format", help="console | json [default: console on a TTY, else json].")
def serve(
    out: Path | None,
    manifest: str | None,
    config: Path | None,
    host: str,
    port: int,
    fallback: str | None,
    record: bool,
    log_format: str | None,
) -> None:
    """Serve a mirror as the Allen API: point AllenSDK's base_uri at it.

    \b
    Examples:
      allen-mirror serve --out mirror
      python -c "from allensdk.api.queries.rma_api import RmaApi; \\
        print(RmaApi(base_uri='http://127.0.0.1:8642').model_query('SectionDataSet', num_rows=5))"
      allen-mirror serve --out mirror --fallback http://api.brain-map.org --record
    """
    from crawler.serve.server import ServeOptions
    from crawler.serve.server import serve as run_server

    if record and fallback is None:
        raise UsageError("--record keeps what --fallback fetched: give --fallback URL too")
    settings = load(config, out=out, manifest=manifest, log_format=log_format)
    if settings.bucket_url:
        raise UsageError("serve reads a mirror on disk (--out DIR), not s3://")
    options = ServeOptions(
        out=settings.out,
        manifest_url=settings.manifest_url,
        host=host,
        port=port,
        fallback=parse_fallback(fallback),
        record=record,
    )
    try:
        run_async(lambda: run_server(options, lambda line: click.echo(line)))
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
        raise
