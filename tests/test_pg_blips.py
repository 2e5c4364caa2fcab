"""A PostgreSQL manifest that goes away for a second (issue 15, point 9).

The workers reach the database through a small TCP proxy in the test, which cuts every
connection and refuses new ones for about a second: the manifest boundary retries, the workers
carry on, the mirror ends exact and nothing is fetched twice beyond what was in flight. A
worker stopped by SIGTERM releases its claims; one waiting for another's lease says whose.
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from crawler.manifest.models import items
from crawler.simulator import SimulatorConfig, serve_in_thread
from tests.conftest import small_catalogue
from tests.fleet import (  # the worker fixtures and helpers
    Spawn,
    assert_mirror_is_exact,
    done_count,
    finish,
    gate,
    image_urls,
    plan,
    query,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


class CuttableProxy:
    """Forwards 127.0.0.1:<port> to the database; ``cut`` drops every connection and refuses
    new ones for a while, as a network blip or a server restart would."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.cuts = 0
        self._refusing_until = 0.0
        self._open: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        for writer in self._open:  # shut down cleanly: no task or socket left for the GC
            writer.transport.abort()
        server.close()
        tasks = asyncio.all_tasks(self._loop)
        for task in tasks:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self._loop.run_until_complete(server.wait_closed())
        self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if time.monotonic() < self._refusing_until:
            writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.target_port
            )
        except OSError:
            writer.transport.abort()
            return
        self._open.update((writer, upstream_writer))

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.transport.abort()

        await asyncio.gather(pump(reader, upstream_writer), pump(upstream_reader, writer))
        self._open.difference_update((writer, upstream_writer))

    def cut(self, seconds: float) -> None:
        """Drop every connection now and refuse new ones for ``seconds``."""

        def drop() -> None:
            self._refusing_until = time.monotonic() + seconds
            self.cuts += 1
            for writer in list(self._open):
                writer.transport.abort()

        self._loop.call_soon_threadsafe(drop)

    def __enter__(self) -> CuttableProxy:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@pytest.fixture
def proxied(pg_url: str) -> Iterator[tuple[str, CuttableProxy]]:
    url = make_url(pg_url)
    with CuttableProxy(url.port or 5432) as proxy:
        yield url.set(port=proxy.port).render_as_string(hide_password=False), proxy


def test_workers_ride_out_a_lost_database_connection(
    pg_url: str,
    proxied: tuple[str, CuttableProxy],
    spawn: Spawn,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    through_proxy, proxy = proxied
    with serve_in_thread(small_catalogue(30), SimulatorConfig(latency_ms=80)) as sim:
        out = tmp_path / "m"
        plan(capsys, sim, out, pg_url)
        total = len(query(pg_url, select(items.c.id)))
        sim.counters.reset()
        with gate(pg_url, 2):
            workers = [spawn(sim, out, through_proxy, "--concurrency", "2") for _ in range(2)]
        deadline = time.monotonic() + 60
        while done_count(pg_url) < 8:
            assert time.monotonic() < deadline, "the workers made no progress"
            time.sleep(0.05)
        assert done_count(pg_url) < total - 8, "the cut must come mid-run"
        proxy.cut(1.0)
        errs = [finish(worker) for worker in workers]  # exit 0: nobody gave up
        refs = assert_mirror_is_exact(sim, out, pg_url)
        fetched = image_urls(sim)
    assert proxy.cuts == 1
    assert any('"manifest.retrying"' in err for err in errs), "the cut was felt and ridden out"
    assert set(fetched) == set(refs)
    twice = sum(n - 1 for n in fetched.values())
    assert twice <= 2 * 2 * 4, "only what was in flight (claimed) may be fetched again"


def test_a_stopped_worker_releases_its_claims_and_a_waiting_one_says_whose(
    pg_url: str,
    spawn: Spawn,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with serve_in_thread(small_catalogue(30), SimulatorConfig(latency_ms=150)) as sim:
        out = tmp_path / "m"
        plan(capsys, sim, out, pg_url)
        with gate(pg_url, 1):
            waiting = spawn(sim, out, pg_url, "--concurrency", "1")
            time.sleep(2.0)  # it finds every item held by "gate" and waits
        deadline = time.monotonic() + 30
        while done_count(pg_url) < 2:
            assert time.monotonic() < deadline, "the worker made no progress"
            time.sleep(0.05)
        waiting.send_signal(signal.SIGTERM)
        err = finish(waiting, 143)
        held = query(pg_url, select(items.c.id).where(items.c.claimed_by.is_not(None)))
        assert held == [], "a worker stopping gracefully gives its claims back"
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    waits = [e for e in events if e.get("event") == "source.waiting_for_leases"]
    assert waits and "gate" in waits[0]["holders"]
    assert "items, lease until" in waits[0]["holders"]["gate"]
