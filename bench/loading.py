"""Bulk loading for the benchmarks: statements run on several sessions at once."""

import asyncio

import asyncpg

from flow_kit.migrations import asyncpg_dsn

__all__ = ["run_parallel"]


async def run_parallel(url: str, statements: list[tuple[str, tuple]], workers: int, setup: str = "") -> None:
    """Runs `statements` (SQL, parameters) on `workers` sessions at once, each session first running
    `setup` (session settings); the order they run in is not kept."""
    todo = list(statements)

    async def worker() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            if setup:
                await conn.execute(setup)
            while todo:
                sql, params = todo.pop(0)
                await conn.execute(sql, *params)
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(workers)))
