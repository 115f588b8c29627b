"""What the query service holds while it runs: one QueryState, built by the lifespan, which the
endpoints take as a `State` parameter."""

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from flow_kit.auth import Authenticator
from flow_kit.aws import AwsClients
from flow_kit.db import create_database
from flow_kit.entitlements import Entitlements
from flow_kit.errors import FlowError
from flow_rules.codes import Code

from .archive import ArchiveReader
from .cursor import CursorCodec
from .reads import Reader
from .settings import QuerySettings

__all__ = ["QueryState", "State", "lifespan", "running"]


@dataclass(frozen=True, slots=True)
class QueryState:
    settings: QuerySettings
    entitlements: Entitlements | None  # None: FLOW_ENTITLEMENTS unset, no checks
    cursors: CursorCodec
    database: AsyncEngine
    reader: Reader
    archive: ArchiveReader


@asynccontextmanager
async def lifespan(
    app: FastAPI, settings: QuerySettings, auth: Authenticator, entitlements: Entitlements | None, cursors: CursorCodec
) -> AsyncIterator[None]:
    """Builds the state (kept on `app.state`, where `running` finds it), then fetches the issuer's keys;
    at stop closes the database's pool, then the S3 client."""
    # Single read statements in autocommit; no pre-ping: the Reader retries a read that met a
    # dead connection instead of paying a round trip on every request.
    database = create_database(settings, "flow-query", isolation_level="AUTOCOMMIT", pool_pre_ping=False)
    reader = Reader(database)
    async with AsyncExitStack() as stack:
        # Archived months are read from S3 (flow_query.archive); without a bucket they answer 503.
        s3 = await stack.enter_async_context(AwsClients(settings).client("s3")) if settings.archive_bucket else None
        archive = ArchiveReader(
            s3,
            reader,
            settings.archive_bucket,
            settings.archive_prefix,
            settings.archive_cache_dir,
            settings.archive_cache_bytes,
        )
        app.state.query = QueryState(
            settings=settings,
            entitlements=entitlements,
            cursors=cursors,
            database=database,
            reader=reader,
            archive=archive,
        )
        await auth.prefetch()
        try:
            yield
        finally:
            await database.dispose()


def running(app: FastAPI) -> QueryState:
    """`app`'s state; before its lifespan has started, 503 R090."""
    state: QueryState | None = getattr(app.state, "query", None)
    if state is None:
        raise FlowError(Code.UNAVAILABLE, 503)
    return state


async def _state(request: Request) -> QueryState:
    return running(request.app)


State = Annotated[QueryState, Depends(_state)]
