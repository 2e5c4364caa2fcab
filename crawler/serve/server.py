"""Run `serve`: load the mirror, bind, announce, answer until SIGINT or SIGTERM, close.

Read-only unless `--record`: then the manifest is opened for writing (and migrated, as every
writing command does) and the output directory's lock is held for as long as the server runs,
so a `mirror` or `sync` cannot write the same files at the same time.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import anyio
from aiohttp import web

from crawler.lock import OutputLock
from crawler.serve.app import Serving, make_app
from crawler.serve.fallback import Fallback, Recorder
from crawler.serve.loading import load_mirror, open_source, open_writable

SHUTDOWN_TIMEOUT = 2.0  # seconds open requests get to finish when the server stops


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """Where the mirror is, where to listen, and where to fall back to."""

    out: Path
    manifest_url: str
    host: str = "127.0.0.1"
    port: int = 8642
    fallback: str | None = None
    record: bool = False


async def _serving(options: ServeOptions, stack: AsyncExitStack) -> Serving:
    if not options.record:
        source = await load_mirror(options.out, options.manifest_url)
        serving = Serving(source)
    else:
        assert options.fallback is not None, "--record needs --fallback"
        lock = OutputLock(options.out, "serve")
        lock.acquire()
        stack.callback(lock.release)
        manifest = await open_writable(options.manifest_url)
        stack.push_async_callback(manifest.close)
        source = await open_source(options.out, manifest)
        serving = Serving(source, recorder=Recorder(source, manifest, options.fallback))
    if options.fallback is not None:
        serving.fallback = Fallback(options.fallback, serving.recorder)
        await serving.fallback.start()
        stack.push_async_callback(serving.fallback.close)
    return serving


async def serve(options: ServeOptions, announce: Callable[[str], None]) -> None:
    """Serve until SIGINT/SIGTERM; ``announce`` gets one line with the base URL once bound."""
    async with AsyncExitStack() as stack:
        serving = await _serving(options, stack)
        runner = web.AppRunner(
            make_app(serving),
            handler_cancellation=True,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            access_log=None,  # one structlog event per request instead (crawler.serve.app)
        )
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, options.host, options.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        announce(f"serving {options.out} as the Allen API on http://{host}:{port}")
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break
