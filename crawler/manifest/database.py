"""Opening a manifest: URL checks, engine and pragmas, and Alembic migrations on start.

Migrations run inside one transaction that first takes a Postgres advisory lock, so processes
starting together on a fresh database queue up instead of racing: the first creates the schema,
the others find it current. ``allen-mirror db`` drives the same functions by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from sqlalchemy import event, inspect
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from crawler.errors import ManifestError, UsageError
from crawler.manifest.base import RETRY_SECONDS
from crawler.manifest.errors import reason
from crawler.manifest.repository import Manifest
from crawler.manifest.snapshot import REVISION as SCHEMA_HEAD

if TYPE_CHECKING:
    from alembic.config import Config

T = TypeVar("T")

# SCHEMA_HEAD, the newest migration shipped, is the snapshot's revision (tests check it against
# Alembic's own head). A manifest stamped with it opens without importing Alembic.
CONNECT_TIMEOUT = 10.0  # seconds: an unreachable server is an error, not a minute-long hang
MIGRATION_LOCK = 727274  # the pg_advisory_xact_lock key every migrating process queues on

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


def create_engine(url: str, *, read_only: bool = False) -> AsyncEngine:
    """An async engine with the per-backend settings the manifest relies on.

    ``read_only`` (SQLite): opened as an immutable file, without pragmas, so a mirror on a
    read-only mount can be read (WAL mode would need to create its -shm file beside it)."""
    full = async_url(url)
    parsed = make_url(full)
    if read_only and parsed.get_backend_name() == "sqlite":
        assert parsed.database is not None
        location = quote(str(Path(parsed.database).expanduser().resolve()))
        uri = f"sqlite+aiosqlite:///file:{location}?mode=ro&immutable=1&uri=true"
        return create_async_engine(uri, connect_args={"timeout": 30})
    if parsed.get_backend_name() == "sqlite":
        assert parsed.database is not None
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(full, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    timeout = {"asyncpg": "timeout", "psycopg": "connect_timeout"}.get(parsed.get_driver_name())
    return create_async_engine(
        full,
        pool_size=5,
        max_overflow=5,
        pool_pre_ping=True,
        connect_args={timeout: int(CONNECT_TIMEOUT)} if timeout else {},
    )


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's config pointing at the migrations shipped with the package."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files("crawler.migrations")))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _serialized(connection: Connection) -> None:
    """Two processes starting together must not both run migrations: the second waits here."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")


def _stamped(connection: Connection) -> str | None:
    """The revision recorded in the manifest, read directly (None before the first migration)."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    rows = connection.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    return str(rows[0][0]) if len(rows) == 1 else None


def _is_empty_sqlite(connection: Connection) -> bool:
    if connection.dialect.name != "sqlite":
        return False
    return not connection.exec_driver_sql("SELECT count(*) FROM sqlite_master").scalar()


def _create_head(connection: Connection) -> None:
    """A new SQLite manifest: the schema at SCHEMA_HEAD in one step (see ``snapshot``)."""
    from crawler.manifest import snapshot

    for statement in snapshot.SQLITE:
        connection.exec_driver_sql(statement)
    connection.exec_driver_sql(
        "INSERT INTO alembic_version (version_num) VALUES (?)", (snapshot.REVISION,)
    )


def _upgrade(connection: Connection, revision: str = "head") -> None:
    _serialized(connection)
    if revision == "head":
        stamped = _stamped(connection)
        if stamped == SCHEMA_HEAD:
            return  # the common case: nothing to migrate, so Alembic is not even imported
        if stamped is None and _is_empty_sqlite(connection):
            _create_head(connection)
            return
    from alembic import command

    command.upgrade(alembic_config(connection), revision)


def _downgrade(connection: Connection, revision: str) -> None:
    from alembic import command

    _serialized(connection)
    command.downgrade(alembic_config(connection), revision)


def _current(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    """The newest migration shipped with this version of allen-mirror."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision (idempotent)."""
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade)


async def open_manifest(
    url: str,
    *,
    upgrade: bool = True,
    retry_seconds: float = RETRY_SECONDS,
    read_only: bool = False,
) -> Manifest:
    """Open (and by default migrate) the manifest, translating database errors to one line.

    ``retry_seconds``: how long later statements wait for a lost connection to come back.
    ``read_only``: a SQLite manifest that cannot be written; it must already be current.
    """
    engine = create_engine(url, read_only=read_only)
    try:
        if read_only:
            await _require_current(engine, url)
        elif upgrade:
            await migrate(engine)
    except (SQLAlchemyError, DBAPIError, OSError) as exc:
        await engine.dispose()
        raise ManifestError(f"cannot open manifest {safe_url(url)}: {reason(exc)}") from exc
    except ManifestError:
        await engine.dispose()
        raise
    return Manifest(engine, retry_seconds=retry_seconds)


async def _require_current(engine: AsyncEngine, url: str) -> None:
    """A manifest that cannot be migrated must already have this version's schema."""
    async with engine.connect() as connection:
        stamped = await connection.run_sync(_stamped)
    if stamped != SCHEMA_HEAD:
        raise ManifestError(
            f"manifest {safe_url(url)} has schema {stamped or 'none'} and cannot be written "
            f"to upgrade it to {SCHEMA_HEAD}: run any command on it once where it is writable"
        )


async def _on_schema(url: str, action: Callable[[Connection], T]) -> T:
    from alembic.util.exc import CommandError

    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            return await connection.run_sync(action)
    except CommandError as exc:
        raise UsageError(f"migration: {exc}") from exc
    except (SQLAlchemyError, DBAPIError, OSError) as exc:
        raise ManifestError(f"cannot open manifest {safe_url(url)}: {reason(exc)}") from exc
    finally:
        await engine.dispose()


async def upgrade(url: str, revision: str = "head") -> str | None:
    """``db upgrade``: migrate to ``revision``; returns the revision the manifest is now at."""

    def action(connection: Connection) -> str | None:
        _upgrade(connection, revision)
        return _current(connection)

    return await _on_schema(url, action)


async def downgrade(url: str, revision: str) -> str | None:
    """``db downgrade``: step the schema back to ``revision`` (``base`` drops every table)."""

    def action(connection: Connection) -> str | None:
        _downgrade(connection, revision)
        return _current(connection)

    return await _on_schema(url, action)


async def current(url: str) -> str | None:
    """``db current``: the revision the manifest is at (None before the first migration)."""
    return await _on_schema(url, _current)


def safe_url(url: str) -> str:
    """A manifest URL fit for a log line (no password)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url
