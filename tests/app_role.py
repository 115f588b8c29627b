"""A connection as FLOW's application role would have it: a role of the test's own, with flow_app's
grants (tools.devstack.approle), on a test's database; dropped afterwards."""

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from flow_kit.migrations import asyncpg_dsn
from tools.devstack.approle import grant_sql, login_sql, new_password


@asynccontextmanager
async def connected_as_app_role(stack, database_url: str) -> AsyncIterator[asyncpg.Connection]:
    name, password = f"t_{uuid.uuid4().hex[:10]}", new_password()
    database = database_url.rsplit("/", 1)[1]
    superuser = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await superuser.execute(grant_sql(name, database))
        await superuser.execute(login_sql(password, name))
        conn = await asyncpg.connect(host="127.0.0.1", port=stack.postgres.port, user=name, password=password,
                                     database=database)
        try:
            yield conn
        finally:
            await conn.close()
    finally:
        await superuser.execute(f"DROP OWNED BY {name}")
        await superuser.close()
        cleanup = await asyncpg.connect(asyncpg_dsn(stack.database_url))  # a role is dropped from another database
        try:
            await cleanup.execute(f"DROP ROLE {name}")
        finally:
            await cleanup.close()
