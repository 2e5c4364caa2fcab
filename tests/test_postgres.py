"""The manifest on a real PostgreSQL: migrations, claims and leases, every command, errors."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect

from crawler.manifest import Manifest, Status, open_manifest
from crawler.manifest.database import create_engine, current, downgrade, head_revision, upgrade
from crawler.manifest.repository import Outcome
from crawler.simulator import ThreadedSimulator, expected_bytes
from tests.conftest import FAST, ls_rows, run_cli
from tests.planning import BASE, planned

pytestmark = pytest.mark.postgres

LEASE = timedelta(minutes=5)


async def tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return set(await connection.run_sync(lambda c: inspect(c).get_table_names()))
    finally:
        await engine.dispose()


async def test_migrations_go_up_and_down(pg_url: str) -> None:
    assert await current(pg_url) is None
    assert await upgrade(pg_url) == head_revision() == "0006"
    assert {"items", "runs", "workers", "rate_limits", "alembic_version"} <= await tables(pg_url)
    assert await downgrade(pg_url, "0002") == "0002"
    assert "workers" not in await tables(pg_url)
    assert await downgrade(pg_url, "base") is None
    assert await tables(pg_url) == {"alembic_version"}
    assert await upgrade(pg_url) == "0006"
    assert await upgrade(pg_url) == "0006"  # idempotent


def test_db_commands(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "db", "current", "--manifest", pg_url).out.startswith("none")
    upgraded = run_cli(capsys, "db", "upgrade", "--manifest", pg_url)
    assert upgraded.code == 0 and upgraded.out.strip() == "0006 (head)"
    down = run_cli(capsys, "db", "downgrade", "0002", "--manifest", pg_url)
    assert down.code == 0 and down.out.strip() == "0002 (head is 0006)"
    unknown = run_cli(capsys, "db", "upgrade", "0999", "--manifest", pg_url)
    assert unknown.code == 2 and "0999" in unknown.err


def test_processes_migrating_a_fresh_database_at_once_all_succeed(pg_url: str) -> None:
    command = [sys.executable, "-m", "crawler", "db", "upgrade", "--manifest", pg_url]
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    results = [(p.wait(timeout=60), *p.communicate()) for p in processes]
    for code, out, err in results:
        assert code == 0, err
        assert out.strip() == "0006 (head)"


@pytest.fixture
async def manifest(pg_url: str) -> Manifest:
    handle = await open_manifest(pg_url)
    yield handle  # type: ignore[misc]
    await handle.close()


async def test_concurrent_claims_never_overlap(manifest: Manifest) -> None:
    await manifest.add_items(planned(200), BASE)
    batches = await asyncio.gather(*(manifest.claim(f"w{n}", 7, LEASE) for n in range(12)))
    ids = [c.id for batch in batches for c in batch]
    assert len(ids) == 84 and len(set(ids)) == 84
    assert (await manifest.holders()).keys() == {f"w{n}" for n in range(12)}


async def test_leases_renewal_expiry_and_reclaim(manifest: Manifest) -> None:
    await manifest.add_items(planned(6), BASE)
    short = timedelta(seconds=1)
    kept = await manifest.claim("a", 3, short)
    lost = await manifest.claim("b", 3, short)
    assert [c.id for c in kept] == [1, 2, 3] and [c.id for c in lost] == [4, 5, 6]
    assert await manifest.claim("c", 6, LEASE) == []
    # "a" renews; "b" does not (it died): its items become claimable when the lease runs out
    assert await manifest.renew("a", LEASE, [c.id for c in kept]) == 3
    assert await manifest.next_claimable("c") == pytest.approx(1.0, abs=0.5)
    await asyncio.sleep(1.1)
    assert await manifest.next_claimable("c") == 0.0
    assert await manifest.reclaim(exclusive=False) == 3
    taken = await manifest.claim("c", 6, LEASE)
    assert [c.id for c in taken] == [4, 5, 6]
    # a lost lease cannot be renewed by its old owner
    assert await manifest.renew("b", LEASE, [4, 5, 6]) == 0
    # recording releases; once everything is done there is nothing left to wait for
    await manifest.record(
        [Outcome(id=i, status=Status.DONE, url=f"u{i}", attempts=1, size=1) for i in range(1, 7)]
    )
    assert await manifest.next_claimable("c") is None
    assert await manifest.holders() == {}


def test_every_command_works_on_postgres(
    pg_url: str, sim: ThreadedSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m"
    common = ["--out", str(out), "--manifest", pg_url]
    fetch = [*common, "--dataset", "100141599", "--api-base", sim.base_url, *FAST]
    planned_run = run_cli(capsys, "plan", *fetch)
    assert planned_run.code == 0, planned_run.err
    rows = ls_rows(capsys, out, "--manifest", pg_url)
    assert rows and all(r["status"] == "pending" and r["claimed_by"] is None for r in rows)
    mirrored = run_cli(capsys, "mirror", *fetch)
    assert mirrored.code == 0, mirrored.err
    assert not (out / "manifest.sqlite").exists()
    rows = ls_rows(capsys, out, "--manifest", pg_url)
    assert all(r["status"] == "done" for r in rows)
    for row in rows:
        url = str(row["url"])
        assert (out / str(row["path"])).read_bytes() == expected_bytes(
            sim.catalogue, url[len(sim.base_url) :]
        )
    status = run_cli(capsys, "status", *common, "--json")
    document = json.loads(status.out)
    assert document["counts"]["done"] == len(rows) and document["claims"] == {}
    assert document["workers"] == []  # the mirror has stopped
    sim.counters.reset()
    again = run_cli(capsys, "mirror", *fetch)
    assert again.code == 0 and sim.counters.by_route.get("image", 0) == 0
    damaged = out / str(rows[0]["path"])
    damaged.write_bytes(damaged.read_bytes()[:-1])
    checked = run_cli(capsys, "verify", *common)
    assert f"verified {len(rows)} file(s): 0 missing, 1 corrupt" in checked.out, checked.err


def test_a_psycopg_url_works_too(
    pg_url: str, sim: ThreadedSimulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("psycopg")
    url = pg_url.replace("postgresql://", "postgresql+psycopg://", 1)
    common = ["--out", str(tmp_path / "m"), "--manifest", url]
    mirrored = run_cli(
        capsys, "mirror", *common, "--dataset", "100141599", "--api-base", sim.base_url, *FAST
    )
    assert mirrored.code == 0, mirrored.err
    status = run_cli(capsys, "status", *common, "--json")
    counts = json.loads(status.out)["counts"]
    assert counts["done"] > 0 and not counts.get("pending") and not counts.get("failed")
    files = list((tmp_path / "m" / "100141599").rglob("*.jpg"))
    assert len(files) == counts["done"]  # every result recorded through psycopg's placeholders
    checked = run_cli(capsys, "verify", *common)
    assert f"verified {len(files)} file(s): 0 missing, 0 corrupt" in checked.out, checked.err


@pytest.mark.parametrize("command", ["status", "ls", "worker", "db current"])
def test_an_unreachable_postgres_is_one_line(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "postgresql://postgres@127.0.0.1:1/nowhere"
    result = run_cli(capsys, *command.split(), "--out", str(tmp_path), "--manifest", url)
    assert result.code == 1
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("allen-mirror: error: cannot ") and "127.0.0.1:1" in lines[0]
    assert "Traceback" not in result.err


async def test_the_tables_are_what_the_migrations_make_on_postgresql(pg_url: str) -> None:
    from tests.planning import differences_from_the_tables

    assert await differences_from_the_tables(pg_url) == []
