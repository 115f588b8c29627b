"""How the query service reads: each request's statement runs on the pooled asyncpg connection itself.

One statement, one round trip: no pool pre-ping (its BEGIN / ; / ROLLBACK cost three round trips per
request) and none of SQLAlchemy's per-statement machinery (compiling, cursor adaptation, result rows),
which cost more than the statements themselves. SQLAlchemy still owns the pool (size, credentials
from the secret, disposal). Instead of pinging every checkout, a connection found dead (the server
restarted, a failover) is discarded and the read tried again on another one; when the database
cannot be reached at all the client gets 503 R090.
"""

from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool
from sqlalchemy.util import greenlet_spawn

from flow_kit.db import is_transient
from flow_kit.errors import FlowError
from flow_rules.codes import Code

__all__ = ["Reader"]

T = TypeVar("T")

# Connection lost, or the server going away: the connection is useless now.
_LOST_SQLSTATES = {"08000", "08003", "08006", "57P01", "57P02", "57P03"}


def _retryable(exc: BaseException) -> bool:
    """Worth trying again on another connection (also a read cancelled by a replica's recovery, 40001)."""
    return getattr(exc, "sqlstate", None) in _LOST_SQLSTATES or is_transient(exc)


def _reusable(exc: BaseException) -> bool:
    """Whether a connection whose statement raised `exc` may go back to the pool: only when the server
    answered with an error; not when it was lost, or left mid-statement (cancelled, timed out)."""
    return isinstance(exc, asyncpg.PostgresError) and exc.sqlstate not in _LOST_SQLSTATES


class Reader:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def fetch(self, sql: str, *args) -> list[asyncpg.Record]:
        return await self._run(lambda conn: conn.fetch(sql, *args))

    async def fetchrow(self, sql: str, *args) -> asyncpg.Record | None:
        return await self._run(lambda conn: conn.fetchrow(sql, *args))

    async def _run(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        # After a restart every pooled connection is dead: each attempt discards one.
        pool = self.engine.pool
        attempts = (pool.size() if isinstance(pool, QueuePool) else 0) + 1
        for attempt in range(1, attempts + 1):
            try:
                return await self._once(work)
            except Exception as exc:
                if not _retryable(exc):
                    raise
                if attempt == attempts:
                    raise FlowError(Code.UNAVAILABLE, 503) from exc
        raise AssertionError("unreachable")

    async def _once(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        # The pool's connection itself: SQLAlchemy's Connection around it would cost more than a read.
        pooled = await self.engine.raw_connection()
        driver = pooled.driver_connection
        if driver is None:  # only a connection already invalidated has none
            await greenlet_spawn(pooled.close)
            raise ConnectionError("database connection closed")
        try:
            return await work(driver)
        except BaseException as exc:
            if not _reusable(exc) or driver.is_closed():
                await greenlet_spawn(pooled.invalidate)  # closed, not pooled again
            if driver.is_closed() and isinstance(exc, Exception):  # e.g. InterfaceError "connection is closed"
                raise ConnectionError("database connection closed") from exc
            raise
        finally:
            await greenlet_spawn(pooled.close)  # back to the pool (closing may need the event loop)
