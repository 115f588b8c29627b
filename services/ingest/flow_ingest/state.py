"""What the ingest service holds while it runs: one IngestState, built by the lifespan, which the
endpoints take as a `State` parameter."""

from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from flow_kit.auth import Authenticator
from flow_kit.aws import AwsClients
from flow_kit.db import create_database, ping
from flow_kit.entitlements import Entitlements
from flow_kit.errors import FlowError
from flow_kit.health import Check
from flow_rules.codes import Code

from .accounts import AccountRegistry
from .catalogue import EventCatalogue
from .idempotency import RequestLedger
from .intake import Intake
from .publisher import RequestPublisher
from .settings import IngestSettings

__all__ = ["IngestState", "State", "lifespan", "running"]


@dataclass(frozen=True, slots=True)
class IngestState:
    settings: IngestSettings
    entitlements: Entitlements | None  # None: FLOW_ENTITLEMENTS unset, no checks
    database: AsyncEngine
    publisher: RequestPublisher
    catalogue: EventCatalogue
    accounts: AccountRegistry
    intake: Intake

    def checks(self) -> Mapping[str, Check]:
        """What /readyz checks (its own "database" check, off the request pool, replaces this one)."""
        return {"database": lambda: ping(self.database), "sns": self.publisher.check}


@asynccontextmanager
async def lifespan(
    app: FastAPI, settings: IngestSettings, auth: Authenticator, entitlements: Entitlements | None
) -> AsyncIterator[None]:
    """Builds the state (kept on `app.state`, where `running` finds it), then fetches the issuer's keys;
    at stop closes the SNS client, then the database's pool."""
    async with AsyncExitStack() as stack:
        database = create_database(settings, "flow-ingest")
        stack.push_async_callback(database.dispose)
        sns = await stack.enter_async_context(AwsClients(settings).client("sns"))
        publisher = RequestPublisher(sns, settings.request_topic_arn, settings.publish_calls)
        catalogue = EventCatalogue(database, settings.event_cache_seconds)
        # A connection stays free for catalogue reads while the ledger's transactions are under way.
        ledger = RequestLedger(database, max_in_flight=max(1, settings.database_pool_size - 1))
        app.state.ingest = IngestState(
            settings=settings,
            entitlements=entitlements,
            database=database,
            publisher=publisher,
            catalogue=catalogue,
            accounts=AccountRegistry(database),
            intake=Intake(settings, catalogue, ledger, publisher),
        )
        await auth.prefetch()
        yield


def running(app: FastAPI) -> IngestState:
    """`app`'s state; before its lifespan has started, 503 R090."""
    state: IngestState | None = getattr(app.state, "ingest", None)
    if state is None:
        raise FlowError(Code.UNAVAILABLE, 503)
    return state


async def _state(request: Request) -> IngestState:
    return running(request.app)


State = Annotated[IngestState, Depends(_state)]
