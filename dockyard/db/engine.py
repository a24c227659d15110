"""Opening the database and bringing its schema up to date. Dialect specifics live here."""

from __future__ import annotations

import asyncio
import sqlite3
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
from alembic import command
from alembic.config import Config
from sqlalchemy import Insert, Table, event, make_url
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def sqlite_url(path: Path, driver: str = "aiosqlite") -> str:
    return f"sqlite+{driver}:///{path}"


def _sync_url(url: str) -> str:
    return url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")


def migrate(url: str) -> None:
    """Apply every Alembic migration the database lacks."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", _sync_url(url))
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class InlineSQLite(aiosqlite.Connection):
    """aiosqlite, but each call runs on the event loop's own thread once connected.

    A statement on this small database takes microseconds; aiosqlite's hop to its thread and
    back costs ~0.4 ms per call, and SQLAlchemy makes four calls per statement. A call can
    only block the loop while another process commits: readers never wait in WAL mode, and
    this process's writers take turns on `begin`'s lock."""

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)


def _inline_sqlite(path: str) -> Callable[[], Awaitable[InlineSQLite]]:
    def connector() -> sqlite3.Connection:
        return sqlite3.connect(path, timeout=30, check_same_thread=False)

    async def connect() -> InlineSQLite:
        return await InlineSQLite(connector, iter_chunk_size=64)

    return connect


def open_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        path = make_url(url).database or ":memory:"
        engine = create_async_engine(url, async_creator=_inline_sqlite(path))
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_pre_ping=True)


_sqlite_writers: weakref.WeakKeyDictionary[
    Engine, tuple[asyncio.AbstractEventLoop, asyncio.Lock]
] = weakref.WeakKeyDictionary()


@asynccontextmanager
async def begin(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A write transaction. SQLite has one writer at a time: this process's writers queue on
    a lock here rather than in SQLite's busy handler, which sleeps up to 100 ms per retry."""
    if engine.dialect.name != "sqlite":
        async with engine.begin() as conn:
            yield conn
        return
    loop = asyncio.get_running_loop()
    known = _sqlite_writers.get(engine.sync_engine)
    if known is None or known[0] is not loop:
        known = _sqlite_writers[engine.sync_engine] = (loop, asyncio.Lock())
    async with known[1], engine.begin() as conn:
        yield conn


def insert_ignoring_conflicts(engine: AsyncEngine, table: Table) -> Insert:
    """INSERT … ON CONFLICT DO NOTHING in the engine's dialect."""
    if engine.dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    return sqlite.insert(table).on_conflict_do_nothing()


def upsert(engine: AsyncEngine, table: Table, keys: list[str], update: list[str]) -> Insert:
    """INSERT … ON CONFLICT (keys) DO UPDATE SET the `update` columns."""
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table)
    return statement.on_conflict_do_update(
        index_elements=keys, set_={name: statement.excluded[name] for name in update}
    )
