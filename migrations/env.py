"""Alembic environment: run migrations on the connection allen-mirror hands over, or on a URL.

allen-mirror applies migrations itself (``allen-mirror db upgrade`` or at start); running
``alembic`` directly works too, with ``-x url=<manifest URL>``.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from crawler.manifest.models import add_postgresql_clauses, metadata

config = context.config
add_postgresql_clauses()
target_metadata = metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_on_url(url: str) -> None:
    from crawler.manifest.database import async_url

    engine = create_async_engine(async_url(url))
    async with engine.begin() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit(
            "give the manifest URL: alembic -x url=sqlite:///mirror/manifest.sqlite ..."
        )
    asyncio.run(_run_on_url(url))


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
