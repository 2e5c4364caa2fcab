"""Several `worker` processes on one Postgres manifest: a shared queue, leases, a shared rate.

Real processes against the simulator; assertions on bytes on disk, manifest rows and the
simulator's per-URL counters and arrival times.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import anyio
import pytest
from sqlalchemy import select

from crawler.config import load_settings
from crawler.manifest import Manifest
from crawler.manifest.models import items, workers
from crawler.manifest.repository import Outcome
from crawler.ratelimit import SharedRateLimiter, block_size
from crawler.simulator import SimulatorConfig, ThreadedSimulator, serve_in_thread
from tests.conftest import FAST, ls_rows, run_cli, small_catalogue
from tests.fleet import (  # the fleet fixtures and helpers
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


def test_three_workers_share_the_queue_and_fetch_each_image_once(
    slow_sim: ThreadedSimulator,
    pg_url: str,
    spawn: Spawn,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "m"
    plan(capsys, slow_sim, out, pg_url)
    slow_sim.counters.reset()
    with gate(pg_url, 3):
        processes = [spawn(slow_sim, out, pg_url, "--concurrency", "2") for _ in range(3)]
    for process in processes:
        finish(process)
    refs = assert_mirror_is_exact(slow_sim, out, pg_url)
    assert image_urls(slow_sim) == dict.fromkeys(refs, 1), "no image fetched twice"
    shares = query(pg_url, select(workers.c.done, workers.c.stopped_at))
    assert len(shares) == 3 and sum(done for done, _ in shares) == len(refs)
    assert all(done > 0 and stopped is not None for done, stopped in shares)


def held_by(url: str, pid: int) -> tuple[str | None, set[str]]:
    """The claim owner name of the worker process ``pid`` and the URLs it holds."""
    owners = query(url, select(workers.c.id).where(workers.c.pid == pid))
    if not owners:
        return None, set()
    owner = owners[0][0]
    return owner, {u for (u,) in query(url, select(items.c.url).where(items.c.claimed_by == owner))}


def test_a_killed_workers_items_are_reclaimed_by_the_others(
    pg_url: str, spawn: Spawn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with serve_in_thread(small_catalogue(40), SimulatorConfig(latency_ms=150)) as sim:
        out = tmp_path / "m"
        plan(capsys, sim, out, pg_url)
        sim.counters.reset()
        with gate(pg_url, 3):
            victim, *survivors = [spawn(sim, out, pg_url, "--concurrency", "2") for _ in range(3)]
        deadline = time.monotonic() + 30
        while not (held_by(pg_url, victim.pid)[1] and done_count(pg_url) >= 6):
            assert time.monotonic() < deadline, "the workers made no progress"
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=10)
        owner, held = held_by(pg_url, victim.pid)
        assert held, "the killed worker held claims"
        listed = ls_rows(capsys, out, "--manifest", pg_url)
        assert {r["url"] for r in listed if r["claimed_by"] == owner} == held
        for process in survivors:
            finish(process)
        refs = assert_mirror_is_exact(sim, out, pg_url)
        fetched = image_urls(sim)
        held = {u[len(sim.base_url) :] for u in held}
    assert set(fetched) == set(refs)
    # only what the killed worker held (and may have been fetching) was fetched again
    assert {u for u, n in fetched.items() if n > 1} <= held
    (stopped,) = query(pg_url, select(workers.c.stopped_at).where(workers.c.id == owner))[0]
    assert stopped is None  # it never said goodbye; status drops it once it stops beating


def requests_per_second(times: list[float], trim: float = 0.2) -> float:
    """The rate over the steady middle of a run: the first and last ``trim`` cut off."""
    times = sorted(times)
    span = times[-1] - times[0]
    start, end = times[0] + trim * span, times[-1] - trim * span
    return sum(1 for t in times if start <= t < end) / (end - start)


def test_rate_is_the_total_of_all_workers(
    pg_url: str, spawn: Spawn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rate = 40.0
    with serve_in_thread(small_catalogue(130), SimulatorConfig(latency_ms=20)) as sim:
        out = tmp_path / "m"
        plan(capsys, sim, out, pg_url)
        sim.counters.reset()
        with gate(pg_url, 3):
            processes = [
                spawn(sim, out, pg_url, "--rate", str(rate), "--concurrency", "4") for _ in range(3)
            ]
        for process in processes:
            finish(process)
        times = [t for url, ts in sim.counters.times.items() if "image_download" in url for t in ts]
    assert len(times) > 200
    measured = requests_per_second(times)
    assert abs(measured - rate) <= 0.1 * rate, f"{measured:.1f} requests/s for --rate {rate}"
    shares = [done for (done,) in query(pg_url, select(workers.c.done))]
    assert len(shares) == 3 and min(shares) > 0.15 * sum(shares), shares


def test_a_following_worker_waits_for_new_items_until_a_signal(
    sim: ThreadedSimulator,
    pg_url: str,
    spawn: Spawn,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "m"
    follower = spawn(sim, out, pg_url, "--follow")
    try:
        time.sleep(1.5)
        assert follower.poll() is None, "an empty queue does not end a following worker"
        plan(capsys, sim, out, pg_url)
        deadline = time.monotonic() + 30
        while done_count(pg_url) < len(query(pg_url, select(items.c.id))):
            assert time.monotonic() < deadline, "the follower did not fetch new items"
            time.sleep(0.1)
        live = run_cli(capsys, "status", "--out", str(out), "--manifest", pg_url)
        assert "(worker, since" in live.out, "status lists the live worker"
    finally:
        follower.send_signal(signal.SIGTERM)
    err = finish(follower, 143)
    assert '"run.summary"' in err
    assert_mirror_is_exact(sim, out, pg_url)


def test_two_workers_on_one_sqlite_manifest_are_refused(
    slow_sim: ThreadedSimulator, spawn: Spawn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    url = f"sqlite:///{out / 'manifest.sqlite'}"
    missing = run_cli(capsys, "worker", "--out", str(out), *FAST)
    assert missing.code == 2 and "no manifest" in missing.err
    plan(capsys, slow_sim, out, url)
    first = spawn(slow_sim, out, url, "--concurrency", "1")
    try:
        deadline = time.monotonic() + 30
        while done_count(url) == 0:  # running, with its signal handlers in place
            assert time.monotonic() < deadline, "the first worker made no progress"
            time.sleep(0.05)
        second = run_cli(capsys, "worker", "--out", str(out), "--api-base", slow_sim.base_url)
        assert second.code == 3
        (line,) = second.err.strip().splitlines()
        assert f"worker pid {first.pid}" in line and "PostgreSQL manifest" in line
    finally:
        first.send_signal(signal.SIGTERM)
    finish(first, 143)


def test_a_worker_alone_on_a_sqlite_manifest_drains_it_without_claims(
    sim: ThreadedSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str], config: Path
) -> None:
    """Under the output lock nobody else takes items: the worker reads them in id order and
    never writes a claim, yet fetches each image once and leaves nothing pending."""
    out = tmp_path / "m"
    url = f"sqlite:///{out / 'manifest.sqlite'}"
    plan(capsys, sim, out, url)
    claims: list[object] = []
    record = Manifest.record

    async def record_seeing_claims(self: Manifest, outcomes: list[Outcome]) -> None:
        async with self.engine.connect() as connection:
            statement = select(items.c.id).where(items.c.claimed_by.is_not(None))
            claims.extend((await connection.execute(statement)).all())
        await record(self, outcomes)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Manifest, "record", record_seeing_claims)
        result = run_cli(capsys, "worker", "--out", str(out), "--config", str(config),
                         "--api-base", sim.base_url, *FAST)  # fmt: skip
    assert result.code == 0, result.err
    refs = assert_mirror_is_exact(sim, out, url)
    assert claims == []  # checked while items were in flight
    fetched = image_urls(sim)
    assert refs and all(fetched.get(ref) == 1 for ref in refs)


def test_the_docker_config_loads_and_points_at_the_compose_services() -> None:
    shipped = Path(__file__).resolve().parents[1] / "config" / "docker.toml"
    settings = load_settings(shipped, {}, environ={})
    assert settings.out == Path("/data") and settings.manifest_url.startswith("postgresql://")
    assert "@postgres:5432/" in settings.manifest_url and settings.rate > 0
    assert not settings.progress and settings.log_format == "json"


@pytest.mark.parametrize(
    ("rate", "concurrency", "block"),
    [(0.5, 8, 1), (10, 8, 1), (40, 8, 4), (40, 2, 2), (1000, 8, 8), (1000, 500, 100)],
)
def test_a_reservation_is_a_tenth_of_a_second_capped_by_concurrency(
    rate: float, concurrency: int, block: int
) -> None:
    assert block_size(rate, concurrency) == block


async def test_limiters_sharing_one_budget_keep_to_its_rate() -> None:
    """Three limiters on one in-memory budget (what the rate_limits row does across hosts)."""
    next_free = 0.0

    async def reserve(span: float) -> float:
        nonlocal next_free
        now = time.monotonic()
        start = max(next_free, now)
        next_free = start + span
        return start - now

    rate = 50.0
    limiters = [SharedRateLimiter(reserve, rate, block_size(rate, 4)) for _ in range(3)]
    sent: list[float] = []

    async def request(limiter: SharedRateLimiter) -> None:
        await limiter.acquire()
        sent.append(time.monotonic())

    async with anyio.create_task_group() as group:
        for n in range(75):
            group.start_soon(request, limiters[n % 3])
    assert requests_per_second(sent, trim=0.0) == pytest.approx(rate, rel=0.1)


def test_a_drained_worker_sweeps_the_parts_dead_workers_left(
    slow_sim: ThreadedSimulator,
    pg_url: str,
    spawn: Spawn,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Once nothing is pending or held by others, no live worker is writing: parts under other
    processes' tokens are garbage. A part newer than that moment is spared."""
    out = tmp_path / "m"
    plan(capsys, slow_sim, out, pg_url)
    orphan = out / "100141599" / "section" / "ds4" / "0001_1.jpg.dead0001.part"
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"half an image")
    future = orphan.with_name("0002_2.jpg.dead0002.part")
    future.write_bytes(b"a part from after the drain")
    later = time.time() + 3600
    os.utime(future, (later, later))
    err = finish(spawn(slow_sim, out, pg_url, "--concurrency", "4"))
    assert not orphan.exists()
    assert future.exists()
    assert '"parts.swept"' in err
    future.unlink()
    assert_mirror_is_exact(slow_sim, out, pg_url)
