"""The aiohttp edge of `serve`: answer from the mirror, fall back if asked, log every request.

The reply itself comes from the API surface shared with the simulator
(`crawler.simulator.routes.answer`), computed in a worker thread so that many clients are
served at once while one query scans its tables. This module only adds the fallback for what
the mirror does not hold and one structured access-log event per request.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import anyio
import structlog
from aiohttp import web

from crawler.errors import AllenMirrorError
from crawler.serve.fallback import Fallback, Recorder
from crawler.serve.source import MirrorSource
from crawler.simulator.routes import Reply, answer

log = structlog.get_logger("crawler.serve")

THREADS = 32  # replies computed at once; more clients wait for a thread, not for each other


@dataclass
class Serving:
    """What every request reads: the mirror, and where to ask for what it lacks."""

    source: MirrorSource
    fallback: Fallback | None = None
    recorder: Recorder | None = None
    limiter: anyio.CapacityLimiter | None = None


SERVING = web.AppKey("serving", Serving)


def _response(status: int, content_type: str, body: bytes) -> web.Response:
    return web.Response(status=status, body=body, headers={"Content-Type": content_type})


def _from_reply(reply: Reply) -> web.Response:
    response = _response(reply.status, reply.content_type, reply.body)
    if reply.not_held is not None:
        # AllenSDK raises on a 404 with the status line's reason (requests' raise_for_status,
        # urllib's HTTPError) and never shows the body: the hint goes into the reason too.
        reason = f"Not Found: {reply.not_held.message}".replace("µ", "u")
        response.set_status(reply.status, reason.encode("ascii", "replace").decode())
    for name, value in reply.headers:
        response.headers[name] = value
    return response


def unknown_route(path: str) -> Reply:
    """A 404 for a service `serve` does not answer, saying how to reach the live one."""
    body = (f"404 Not Found: allen-mirror serve does not answer {path}; "
            "serve --fallback URL passes such requests to the live API\n")  # fmt: skip
    return Reply(404, "text/plain; charset=utf-8", body.encode())


async def handle(request: web.Request) -> web.StreamResponse:
    """One request: the mirror's answer, or the fallback's for what the mirror lacks."""
    serving = request.app[SERVING]
    started = time.perf_counter()
    query = {name: request.query[name] for name in request.query}
    reply = await anyio.to_thread.run_sync(
        lambda: answer(serving.source, request.path, query), limiter=serving.limiter
    )
    event: dict[str, object] = {}
    missing = reply.not_held
    if missing is not None:
        event["missing"] = missing.what
    elif reply.status == 404:  # a path the shared surface does not answer (image_to_atlas, ...)
        event["missing"] = "route"
        reply = unknown_route(request.path)
    if reply.status == 404 and serving.fallback is not None:
        fetched = await serving.fallback.fetch(request.raw_path)
        response = _response(fetched.status, fetched.content_type, fetched.body)
        event["origin"] = "fallback"
        if serving.recorder is not None and fetched.status == 200:
            try:
                recorded = await serving.recorder.keep(
                    request.path, query, request.raw_path, fetched
                )
            except AllenMirrorError as exc:
                log.warning("serve.record_refused", path=request.path, error=str(exc))
                recorded = None
            event["recorded"] = recorded
    else:
        response = _from_reply(reply)
        event["origin"] = "mirror"
    log.info(
        "serve.request",
        method=request.method,
        path=request.path,
        query=request.query_string,
        status=response.status,
        bytes=len(response.body) if isinstance(response.body, bytes) else 0,
        ms=round((time.perf_counter() - started) * 1000, 2),
        client=request.remote,
        **event,
    )
    return response


def make_app(serving: Serving) -> web.Application:
    """Every GET/HEAD path goes through `handle`; nothing else is accepted."""
    if serving.limiter is None:
        serving.limiter = anyio.CapacityLimiter(THREADS)
    app = web.Application()
    app[SERVING] = serving
    app.router.add_get("/{tail:.*}", handle)
    return app
