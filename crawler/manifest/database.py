"""Opening a manifest: URL checks, engine and pragmas, and Alembic migrations on start."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from crawler.errors import ManifestError, UsageError
from crawler.manifest.repository import Manifest

_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "postgresql+psycopg": "postgresql+psycopg",
}


def async_url(url: str) -> str:
    """Map a user's manifest URL to the async driver we use, or say plainly it is unsupported."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise UsageError(f"invalid manifest URL {url!r}: expected e.g. sqlite:///path.db") from exc
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise UsageError(
            f"unsupported manifest URL scheme {parsed.drivername!r}: use sqlite:/// or postgresql://"
        )
    if driver.startswith("sqlite") and parsed.database in (None, "", ":memory:"):
        raise UsageError(
            "a SQLite manifest needs a file path, e.g. sqlite:///mirror/manifest.sqlite"
        )
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def is_sqlite(url: str) -> bool:
    """SQLite manifests are single-host and get a lock on the output directory."""
    return make_url(async_url(url)).get_backend_name() == "sqlite"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets readers (ls, status) run beside a writer; busy_timeout rides out short locks."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_engine(url: str) -> AsyncEngine:
    """An async engine with the per-backend settings the manifest relies on."""
    full = async_url(url)
    parsed = make_url(full)
    if parsed.get_backend_name() == "sqlite":
        assert parsed.database is not None
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(full, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(full, pool_size=5, max_overflow=5, pool_pre_ping=True)


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's config pointing at the migrations shipped with the package."""
    config = Config()
    config.set_main_option("script_location", str(resources.files("crawler.migrations")))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Two processes starting together must not both run migrations.
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(727274)")
    command.upgrade(alembic_config(connection), "head")


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision (idempotent)."""
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade)


async def open_manifest(url: str, *, upgrade: bool = True) -> Manifest:
    """Open (and by default migrate) the manifest, translating database errors to one line."""
    engine = create_engine(url)
    try:
        if upgrade:
            await migrate(engine)
    except (SQLAlchemyError, DBAPIError, OSError) as exc:
        await engine.dispose()
        reason = getattr(exc, "orig", None) or exc
        raise ManifestError(f"cannot open manifest {safe_url(url)}: {reason}") from exc
    return Manifest(engine)


def safe_url(url: str) -> str:
    """A manifest URL fit for a log line (no password)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url
