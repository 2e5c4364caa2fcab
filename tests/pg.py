"""A real PostgreSQL for the tests: a fresh database per test, dropped afterwards.

The server is ``CRAWLER_TEST_POSTGRES_URL`` (default postgresql://postgres@127.0.0.1:5432/postgres).
Without a reachable server the Postgres tests skip and say why, unless
``CRAWLER_REQUIRE_POSTGRES=1`` (set by ``.ci/run``): then they fail.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url

SERVER_URL = os.environ.get(
    "CRAWLER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REQUIRED = os.environ.get("CRAWLER_REQUIRE_POSTGRES") == "1"


def _dsn(url: str) -> str:
    """The libpq form asyncpg takes, whatever driver the URL names."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(_dsn(SERVER_URL), timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def admin(statement: str) -> None:
    """Run one statement on the server's maintenance database (outside any test loop)."""
    asyncio.run(_admin(statement))


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The server URL, once it answered; skips (or fails, when required) otherwise."""
    try:
        admin("SELECT 1")
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        where = make_url(SERVER_URL).render_as_string(hide_password=True)
        reason = f"no PostgreSQL at {where} ({exc.__class__.__name__}: {exc})"
        if REQUIRED:
            pytest.fail(f"{reason}, and CRAWLER_REQUIRE_POSTGRES=1")
        pytest.skip(reason)
    return SERVER_URL


@pytest.fixture
def pg_url(postgres_server: str) -> Iterator[str]:
    """The URL of an empty database of its own; dropped (even if still in use) afterwards."""
    name = f"allen_mirror_test_{uuid.uuid4().hex[:12]}"
    admin(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(postgres_server).set(database=name).render_as_string(hide_password=False)
    finally:
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
