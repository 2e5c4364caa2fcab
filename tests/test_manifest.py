"""The manifest on real SQLite: migrations, idempotent planning, claims and batched records."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import anyio
import pytest
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect

from crawler.manifest import Manifest, Status, open_manifest
from crawler.manifest.base import _PENDING as PENDING_SQL
from crawler.manifest.base import INSERT_CHUNK
from crawler.manifest.database import SCHEMA_HEAD, async_url, head_revision
from crawler.manifest.repository import Outcome, Tally, tally_statement
from tests.planning import BASE, differences_from_the_tables, planned


@pytest.fixture
async def manifest(tmp_path: Path) -> Manifest:
    handle = await open_manifest(f"sqlite:///{tmp_path / 'm.sqlite'}")
    yield handle  # type: ignore[misc]
    await handle.close()


async def test_schema_comes_from_alembic(tmp_path: Path, manifest: Manifest) -> None:
    connection = sqlite3.connect(tmp_path / "m.sqlite")
    version = connection.execute("select version_num from alembic_version").fetchone()
    journal = connection.execute("pragma journal_mode").fetchone()
    connection.close()
    assert version == (SCHEMA_HEAD,)
    assert journal == ("wal",)


async def test_status_tallies_read_only_the_covering_index(
    tmp_path: Path, manifest: Manifest
) -> None:
    await manifest.add_items(planned(20), BASE)
    statement = tally_statement(by_data_set=True).compile(
        dialect=sqlite_dialect(), compile_kwargs={"literal_binds": True}
    )
    connection = sqlite3.connect(tmp_path / "m.sqlite")
    steps = connection.execute(f"EXPLAIN QUERY PLAN {statement}").fetchall()
    connection.close()
    assert [step[-1] for step in steps] == ["SCAN items USING COVERING INDEX ix_items_tally"]
    assert await manifest.tallies_by_data_set() == {(1, "pending"): Tally(items=20, bytes=0)}


def test_schema_head_is_the_newest_migration() -> None:
    assert head_revision() == SCHEMA_HEAD


OPEN_TWICE = """
import sys, anyio
from crawler.manifest import open_manifest

async def main(url):
    manifest = await open_manifest(url)
    await manifest.close()

anyio.run(main, sys.argv[1])
print("alembic" in sys.modules)
"""


def test_a_current_manifest_opens_without_importing_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    runs = [
        subprocess.run(
            [sys.executable, "-c", OPEN_TWICE, url], capture_output=True, text=True, check=True
        ).stdout.split()
        for _ in range(2)
    ]
    assert runs == [["False"], ["False"]]  # created from the snapshot, then the stamp is read


def _schema(path: Path) -> tuple[list[tuple[str, str, str, str | None]], list[tuple[str]]]:
    """Every table and index as sqlite_master states it, and the stamped revision."""
    connection = sqlite3.connect(path)
    rows = connection.execute("select type, name, tbl_name, sql from sqlite_master").fetchall()
    version = connection.execute("select version_num from alembic_version").fetchall()
    connection.close()
    return sorted(rows, key=lambda row: (row[0], row[1])), version


async def test_the_new_manifest_snapshot_is_what_alembics_migrations_make(tmp_path: Path) -> None:
    from alembic import command
    from sqlalchemy.ext.asyncio import create_async_engine

    from crawler.manifest import snapshot
    from crawler.manifest.database import alembic_config

    migrated = tmp_path / "migrated.sqlite"
    engine = create_async_engine(f"sqlite+aiosqlite:///{migrated}")
    async with engine.begin() as connection:  # every migration, one by one, as Alembic runs them
        await connection.run_sync(lambda sync: command.upgrade(alembic_config(sync), "head"))
    await engine.dispose()
    created = tmp_path / "created.sqlite"
    await (await open_manifest(f"sqlite:///{created}")).close()
    connection = sqlite3.connect(migrated)
    current = connection.execute(  # in creation order: tables before their indexes
        "select sql from sqlite_master where sql is not null order by rowid"
    ).fetchall()
    connection.close()
    assert snapshot.REVISION == SCHEMA_HEAD
    assert _schema(created) == _schema(migrated), (
        "crawler/manifest/snapshot.py is out of date; its statements are now:\n"
        + "\n".join(repr(sql) for (sql,) in current)
    )


async def test_planning_is_idempotent_on_the_url(manifest: Manifest) -> None:
    assert await manifest.add_items(planned(5), BASE) == 5
    assert await manifest.add_items(planned(5), BASE) == 0
    assert await manifest.add_items(planned(7), BASE) == 2
    tallies = await manifest.tallies()
    assert tallies[Status.PENDING.value].items == 7


async def test_claims_are_exclusive_and_records_release_them(manifest: Manifest) -> None:
    await manifest.add_items(planned(10), BASE)
    first = await manifest.claim("a", 4, timedelta(minutes=5))
    second = await manifest.claim("b", 10, timedelta(minutes=5))
    assert [c.id for c in first] == [1, 2, 3, 4]
    assert [c.id for c in second] == [5, 6, 7, 8, 9, 10]
    assert await manifest.claim("c", 10, timedelta(minutes=5)) == []
    await manifest.record(
        [
            Outcome(
                id=1,
                status=Status.DONE,
                url="u1",
                attempts=1,
                http_status=200,
                size=10,
                sha256="ab",
            ),
            Outcome(
                id=2, status=Status.FAILED, url="u2", attempts=3, http_status=500, error="HTTP 500"
            ),
        ]
    )
    await manifest.release("a")
    rows = {row["id"]: row for row in [r async for r in manifest.rows()]}
    assert rows[1]["status"] == "done" and rows[1]["size"] == 10 and rows[1]["claimed_by"] is None
    assert (
        rows[2]["status"] == "failed"
        and rows[2]["attempts"] == 3
        and rows[2]["error"] == "HTTP 500"
    )
    assert rows[3]["claimed_by"] is None and rows[5]["claimed_by"] == "b"
    # the next run that plans the failed item again gives it another chance, and releases
    # every claim when it holds the lock
    await manifest.reclaim(exclusive=True)
    await manifest.add_items(planned(10), BASE, run=2)
    again = await manifest.claim("d", 100, timedelta(minutes=5))
    assert [c.id for c in again] == [2, 3, 4, 5, 6, 7, 8, 9, 10]


async def test_a_pool_alone_reads_pending_items_by_id_through_the_status_index(
    tmp_path: Path, manifest: Manifest
) -> None:
    """``pending`` claims nothing: it reads pending ids in order past a cursor, along
    ``ix_items_status_id``, without a scan of the table; ``pending_in`` reads named ones."""
    await manifest.add_items(planned(10), BASE)
    await manifest.record(
        [Outcome(id=3, status=Status.DONE, url="u3", attempts=1, http_status=200, size=1)]
    )
    assert [c.id for c in await manifest.pending(after=0, limit=4)] == [1, 2, 4, 5]
    assert [c.id for c in await manifest.pending(after=5, limit=100)] == [6, 7, 8, 9, 10]
    assert [c.id for c in await manifest.pending_in([4, 2, 3, 99])] == [2, 4]
    taken = (await manifest.pending(after=9, limit=1))[0]
    assert (taken.ref, taken.path, taken.kind, taken.image_id) == (
        "/api/v2/section_image_download/10?downsample=4",
        "1/section/ds4/0010_10.jpg",
        "section",
        10,
    )
    rows = [r async for r in manifest.rows()]
    assert all(r["claimed_by"] is None for r in rows)  # nothing was claimed
    connection = sqlite3.connect(tmp_path / "m.sqlite")
    plan = connection.execute("EXPLAIN QUERY PLAN " + PENDING_SQL, ("pending", 0, 5)).fetchall()
    connection.close()
    details = " ".join(row[-1] for row in plan)
    assert "USING INDEX ix_items_status_id" in details, details
    assert "SCAN" not in details and "TEMP B-TREE" not in details


async def test_expired_leases_are_claimable(manifest: Manifest) -> None:
    await manifest.add_items(planned(3), BASE)
    await manifest.claim("dead", 3, timedelta(seconds=-1))
    taken = await manifest.claim("alive", 3, timedelta(minutes=5))
    assert len(taken) == 3


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
    ],
)
def test_manifest_urls_map_to_async_drivers(url: str, expected: str) -> None:
    assert async_url(url) == expected


class _Orig(Exception):
    def __init__(self, text: str, sqlstate: str | None = None) -> None:
        super().__init__(text)
        self.sqlstate = sqlstate


class _Wrapped(Exception):
    def __init__(self, orig: Exception) -> None:
        super().__init__(str(orig))
        self.orig = orig


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (_Wrapped(_Orig("deadlock detected", "40P01")), True),
        (_Wrapped(_Orig("could not serialize access", "40001")), True),
        (_Wrapped(_Orig("something", "40P01")), True),
        (_Wrapped(_Orig("relation items does not exist", "42P01")), False),
        (OSError("disk I/O error"), False),
    ],
)
def test_only_deadlocks_and_serialization_failures_are_run_again(
    error: Exception, transient: bool
) -> None:
    from crawler.manifest.errors import is_conflict

    assert is_conflict(error) is transient


async def test_rows_written_as_driver_rows_read_back_like_any_other(manifest: Manifest) -> None:
    """add_items (SQLite) and record bypass SQLAlchemy's parameter processing: the timestamps
    they store must read back as datetimes, like rows SQLAlchemy writes itself."""
    await manifest.add_items(planned(3), BASE)
    claimed = await manifest.claim("a", 3, timedelta(minutes=5))  # written by SQLAlchemy
    await manifest.record(
        [Outcome(id=claimed[0].id, status=Status.DONE, url="u", attempts=1, size=5, sha256="cd")]
    )
    rows = {row["id"]: row for row in [r async for r in manifest.rows()]}
    done, pending = rows[claimed[0].id], rows[claimed[1].id]
    assert done["ref"] == planned(1)[0].ref and done["url"] == "u"
    assert done["fetched_at"] >= done["created_at"] and done["updated_at"] == done["fetched_at"]
    assert pending["lease_until"] > pending["created_at"] and pending["fetched_at"] is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite+aiosqlite:///m.db", "UPDATE t SET a = ?, b = ? WHERE id = ?"),
        ("postgresql+asyncpg://u@h/d", "UPDATE t SET a = $1, b = $2 WHERE id = $3"),
        ("postgresql+psycopg://u@h/d", "UPDATE t SET a = %s, b = %s WHERE id = %s"),
    ],
)
def test_driver_sql_speaks_each_drivers_placeholders(url: str, expected: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(url)  # never connects
    assert Manifest(engine)._driver_sql("UPDATE t SET a = ?, b = ? WHERE id = ?") == expected


async def test_a_cancelled_plan_keeps_whole_chunks_and_leaves_no_task_behind(
    manifest: Manifest,
) -> None:
    """Ctrl-C during a long plan: the chunks already written stay (items are idempotent), none
    is cut in half, and no orphaned connection-cleanup task is left for the loop's shutdown to
    wait on."""
    items = planned(200_000)
    with anyio.move_on_after(0.2):
        await manifest.add_items(items, BASE)
    leftovers = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    assert leftovers == []
    pending = (await manifest.tallies())[Status.PENDING.value].items
    assert 0 < pending < len(items) and pending % INSERT_CHUNK == 0
    assert await manifest.add_items(items, BASE) == len(items) - pending  # the next run goes on


async def test_the_tables_are_what_the_migrations_make(tmp_path: Path) -> None:
    assert await differences_from_the_tables(f"sqlite:///{tmp_path / 'm.sqlite'}") == []
