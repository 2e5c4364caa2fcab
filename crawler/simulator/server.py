"""Start and stop the simulator: in the current loop, in a background thread, or until a signal.

Handlers are cancelled when their client disconnects and at shutdown, so a stalled response
neither inflates the in-flight count nor delays `stop()`.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from types import TracebackType
from typing import TextIO

from aiohttp import web

from crawler.simulator.app import State, make_app
from crawler.simulator.catalogue import Catalogue
from crawler.simulator.config import SimulatorConfig
from crawler.simulator.counters import Counters

SHUTDOWN_TIMEOUT = 0.5  # seconds granted to open handlers before they are cancelled


class Simulator:
    """`async with Simulator(...) as sim:` serves on 127.0.0.1 at `sim.base_url`."""

    def __init__(
        self,
        catalogue: Catalogue | None = None,
        config: SimulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._state = State(
            catalogue=catalogue if catalogue is not None else Catalogue.build(),
            config=config if config is not None else SimulatorConfig(),
        )
        self.host, self.port = host, port
        self._runner: web.AppRunner | None = None

    @property
    def catalogue(self) -> Catalogue:
        return self._state.catalogue

    @property
    def counters(self) -> Counters:
        return self._state.counters

    @property
    def config(self) -> SimulatorConfig:
        return self._state.config

    @config.setter
    def config(self, config: SimulatorConfig) -> None:
        config.validate()
        self._state.config = config

    @property
    def base_url(self) -> str:
        if self._runner is None:
            raise RuntimeError("simulator is not running")
        return f"http://{self.host}:{self.port}"

    def set_faults(
        self,
        fault_rate: float | None = None,
        fault_kinds: set[str] | frozenset[str] | None = None,
        **changes: object,
    ) -> None:
        """Change the fault menu (and any other config field) for the next requests."""
        if fault_rate is not None:
            changes["fault_rate"] = fault_rate
        if fault_kinds is not None:
            changes["fault_kinds"] = frozenset(fault_kinds)
        config = replace(self._state.config)  # swap a copy in whole: requests read it once
        for name, value in changes.items():
            if not hasattr(config, name):
                raise TypeError(f"SimulatorConfig has no field {name!r}")
            setattr(config, name, value)
        self.config = config

    async def start(self) -> None:
        """Bind (port 0 picks a free port) and start accepting connections."""
        runner = web.AppRunner(
            make_app(self._state),
            handler_cancellation=True,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            access_log=None,
        )
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        address = runner.addresses[0]
        self.port = int(address[1])

    async def stop(self) -> None:
        """Close the listener and cancel open handlers, including stalled ones."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()


class ThreadedSimulator:
    """A simulator running in its own thread and event loop, for synchronous tests."""

    def __init__(self, simulator: Simulator) -> None:
        self.simulator = simulator
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="allen-simulator", daemon=True)

    @property
    def base_url(self) -> str:
        return self.simulator.base_url

    @property
    def counters(self) -> Counters:
        return self.simulator.counters

    @property
    def catalogue(self) -> Catalogue:
        return self.simulator.catalogue

    @property
    def config(self) -> SimulatorConfig:
        return self.simulator.config

    @config.setter
    def config(self, config: SimulatorConfig) -> None:
        self.simulator.config = config

    def set_faults(
        self,
        fault_rate: float | None = None,
        fault_kinds: set[str] | frozenset[str] | None = None,
        **changes: object,
    ) -> None:
        self.simulator.set_faults(fault_rate, fault_kinds, **changes)

    def start(self, timeout: float = 10.0) -> ThreadedSimulator:
        """Run the loop thread and wait until the server accepts connections."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("simulator thread did not start in time")
        if self._error is not None:
            raise RuntimeError("simulator thread failed to start") from self._error
        return self

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            await self.simulator.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.simulator.stop()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and join the thread; safe to call twice."""
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    def __enter__(self) -> ThreadedSimulator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def serve_in_thread(
    catalogue: Catalogue | None = None,
    config: SimulatorConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
) -> ThreadedSimulator:
    """Start a simulator in a background thread and return once it accepts connections."""
    return ThreadedSimulator(Simulator(catalogue, config, host=host, port=port)).start()


async def serve_until_signalled(simulator: Simulator, announce: Callable[[str], None]) -> None:
    """Serve until SIGINT or SIGTERM, announcing the base URL once ready."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    installed = []
    for signum in signals:
        try:
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
        except (NotImplementedError, RuntimeError):
            pass  # not the main thread, or no signal support: rely on cancellation
    try:
        async with simulator:
            announce(f"simulator listening on {simulator.base_url}")
            await stop.wait()
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


def run(
    port: int = 0,
    latency_ms: float = 0.0,
    fault_rate: float = 0.0,
    *,
    host: str = "127.0.0.1",
    seed: int = 0,
    sections: int | None = None,
    image_scale: float = 1.0,
    extra_connectivity_datasets: int = 6,
    fault_kinds: set[str] | frozenset[str] | None = None,
    stall_seconds: float = 60.0,
    bytes_per_second: int | None = None,
    out: TextIO | None = None,
) -> None:
    """Block serving until SIGINT/SIGTERM; prints `simulator listening on <url>` when ready."""
    catalogue = Catalogue.build(
        seed=seed,
        sections_per_dataset=sections,
        extra_connectivity_datasets=extra_connectivity_datasets,
        image_scale=image_scale,
    )
    config = SimulatorConfig(
        latency_ms=latency_ms,
        fault_rate=fault_rate,
        seed=seed,
        stall_seconds=stall_seconds,
        bytes_per_second=bytes_per_second,
    )
    if fault_kinds is not None:
        config.fault_kinds = frozenset(fault_kinds)
        config.validate()
    stream = out if out is not None else sys.stdout

    def announce(line: str) -> None:
        print(line, file=stream, flush=True)

    asyncio.run(serve_until_signalled(Simulator(catalogue, config, host=host, port=port), announce))
