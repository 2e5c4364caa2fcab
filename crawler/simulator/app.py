"""The aiohttp edge: count the request, wait, resolve, pick a fault, and put bytes on the wire.

Every decision is taken by `routes`, `faults` and the config; this module only executes a
`ResponsePlan`, keeping the request "in flight" until its last byte is written or it is aborted.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web
from yarl import URL

from crawler.simulator.catalogue import Catalogue
from crawler.simulator.config import SimulatorConfig
from crawler.simulator.counters import Counters
from crawler.simulator.faults import (
    ResponsePlan,
    choose_fault,
    endless_chunk,
    patch_records,
    plan_response,
)
from crawler.simulator.render import RenderCache
from crawler.simulator.routes import resolve, route_kind, tile_server_location


@dataclass
class State:
    """Everything a handler reads; `config` may be replaced or edited while serving."""

    catalogue: Catalogue
    config: SimulatorConfig
    counters: Counters = field(default_factory=Counters)
    cache: RenderCache = field(default_factory=RenderCache)


STATE = web.AppKey("state", State)


def url_key(request: web.Request) -> str:
    """The decoded path and query as received, which keys per-URL counts and fault draws."""
    query = request.query_string
    return f"{request.path}?{query}" if query else request.path


async def _write(
    request: web.Request, response: web.StreamResponse, data: bytes, state: State
) -> None:
    """Write a body part, throttled to `bytes_per_second` when set."""
    if request.method == "HEAD" or not data:
        return
    rate = state.config.bytes_per_second
    chunk = len(data) if rate is None else max(1, rate // 10)
    for start in range(0, len(data), chunk):
        part = data[start : start + chunk]
        await response.write(part)
        state.counters.sent(len(part))
        if rate is not None:
            await asyncio.sleep(len(part) / rate)


async def _trickle(
    request: web.Request, response: web.StreamResponse, data: bytes, state: State
) -> None:
    """Write ``data`` a few bytes at a time at ``trickle_bytes_per_second``: never idle for long,
    never done soon."""
    rate = state.config.trickle_bytes_per_second
    step = max(1, rate // 10)
    for start in range(0, len(data), step):
        await _write(request, response, data[start : start + step], state)
        await asyncio.sleep(step / rate)


async def execute(request: web.Request, plan: ResponsePlan, state: State) -> web.StreamResponse:
    """Carry out a plan: respond, truncate, stall or drop the connection."""
    response = web.StreamResponse(status=plan.status)
    transport = request.transport
    if plan.reset:
        if transport is not None:
            transport.abort()
        return response
    for name, value in plan.headers:
        response.headers[name] = value
    state.counters.status(plan.status)
    try:
        await response.prepare(request)
        await _write(request, response, plan.body, state)
        if plan.then == "close":
            if transport is not None:
                transport.abort()
            return response
        if plan.then == "stall":
            await asyncio.sleep(state.config.stall_seconds)
            await _write(request, response, plan.rest, state)
        if plan.then == "trickle":
            await _trickle(request, response, plan.rest, state)
        if plan.then == "endless":
            chunk = endless_chunk()
            while True:  # until the client goes away (ConnectionError) or the server stops
                await _write(request, response, chunk, state)
        await response.write_eof()
    except ConnectionError:
        pass  # the client went away: nothing left to deliver
    return response


async def handle(request: web.Request) -> web.StreamResponse:
    """The single route: every path is dispatched by the pure resolver."""
    state = request.app[STATE]
    key, route = url_key(request), route_kind(request.path)
    attempt = state.counters.begin(route, key)
    try:
        config = state.config
        if config.latency_ms > 0:
            await asyncio.sleep(config.latency_ms / 1000)
        query = {name: request.query[name] for name in request.query}
        reply = await asyncio.to_thread(
            resolve,
            state.catalogue,
            request.path,
            query,
            overstate_total_rows=config.overstate_total_rows,
            cache=state.cache,
        )
        if route == "rma":
            reply = patch_records(reply, config.record_patches)
        fault = choose_fault(config, route, key, attempt, reply)
        location = None
        if reply.image_path is not None:
            relative = URL(tile_server_location(reply.image_path, query))
            location = str(request.url.join(relative))
        if fault is not None:
            state.counters.fault(fault)
        return await execute(request, plan_response(reply, fault, config, location), state)
    finally:
        state.counters.end()


def make_app(state: State) -> web.Application:
    """An application answering every GET/HEAD path through `handle`."""
    app = web.Application()
    app[STATE] = state
    app.router.add_get("/{tail:.*}", handle)
    return app
