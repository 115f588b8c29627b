"""The query API: transactions, statements, daily and point-in-time balances, the event catalogue."""

import time
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated
from uuid import UUID

from fastapi import Depends, FastAPI, Path, Query, Request, Response

from flow_kit import tracing
from flow_kit.access import AccessLog
from flow_kit.aws import AwsClients
from flow_kit.auth import AuthSettings, Authenticator, TokenGate, install_auth_error_handler
from flow_rules.codes import Code
from flow_kit.db import create_database
from flow_kit.entitlements import ALL_BRANCHES, EntitlementSettings, Grant
from flow_kit.errors import ErrorOut, FlowError, install_error_handlers
from flow_rules.events import EventOut
from flow_kit.health import docs_options, mount_health
from flow_rules.posting import CanonicalUUID, DecimalInteger, IsoDate, validation_code
from flow_kit.serve import load_settings

from .accounts import AccountState, read_account
from .archive import ArchiveReader, statement_page
from .cursor import CursorCodec
from .queries import (BALANCE_AT, BALANCE_DAYS, EVENT, EVENTS, OUTCOME_BY_ID, OUTCOMES_BY_TRACEKEY, STATEMENT_PAGE,
                      TRANSACTION_BY_ID)
from .reads import Reader
from .render import model_answer, statement_answer
from .replica import lag_check
from .schemas import (BalanceAt, BalanceDay, BalanceDays, CallerOut, EventList, Statement, TransactionList,
                      TransactionOut)
from .settings import QuerySettings

__all__ = ["create_app"]

BranchPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9]{1,10}$")]
AccountPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9]{1,20}$")]
FromQuery = Annotated[IsoDate | None, Query(alias="from", description="First reference date, YYYY-MM-DD "
                                                                     "(default: 30 days before `to`)")]
ToQuery = Annotated[IsoDate | None, Query(description="Last reference date, YYYY-MM-DD (default: today, UTC)")]
LimitQuery = Annotated[DecimalInteger(1, 1000), Query(description="1 to 1000, plain decimal digits")]
IdPath = Annotated[CanonicalUUID, Path(description="A UUID in lowercase 8-4-4-4-12 form")]
TracekeyQuery = Annotated[CanonicalUUID, Query(description="A UUID in lowercase 8-4-4-4-12 form")]
CodePath = Annotated[DecimalInteger(1, 2_147_483_647), Path(description="1 to 2147483647, plain decimal digits")]
_QUERY_CODES = {"branch": Code.INVALID_BRANCH, "account": Code.INVALID_ACCOUNT, "from": Code.INVALID_RANGE,
                "to": Code.INVALID_RANGE, "date": Code.INVALID_RANGE, "id": Code.INVALID_ID,
                "tracekey": Code.INVALID_TRACEKEY, "limit": Code.INVALID_LIMIT, "code": Code.INVALID_EVENTCODE}


def _applied(row) -> TransactionOut:
    row = dict(row)
    caller = CallerOut.of(row.pop("callersub"), row.pop("callerclient"))
    return TransactionOut(**row, caller=caller, status="applied", code=Code.APPLIED.value, message=Code.APPLIED.message)


def _rejected(id: UUID, tracekey: UUID, code: str, createdat: datetime, callersub: str | None = None,
              callerclient: str | None = None) -> TransactionOut:
    return TransactionOut(id=id, tracekey=tracekey, createdat=createdat, status="rejected", code=code,
                          message=Code(code).message, caller=CallerOut.of(callersub, callerclient))


async def _known_parameters_once(request: Request) -> None:
    """Each query parameter the operation knows, at most once: `?limit=5&limit=500` or `?limt=5` is
    refused (R042), not read as one of its values or ignored."""
    params = request.query_params
    if not params:
        return
    route = request.scope.get("route")
    known = {param.alias for param in route.dependant.query_params} if route else set()  # the operation's own
    for name in params:
        if name not in known or len(params.getlist(name)) > 1:
            raise FlowError(Code.INVALID_QUERY, 422, f"{Code.INVALID_QUERY.message}: {name} is unknown or repeated",
                            fields=[f"query.{name}"])


def create_app(settings: QuerySettings, auth_settings: AuthSettings | None = None,
               entitlement_settings: EntitlementSettings | None = None) -> FastAPI:
    auth = Authenticator(auth_settings or AuthSettings())
    # FLOW_ENTITLEMENTS: None (unset) means no entitlement checks; a bad value stops the service.
    entitlements = (entitlement_settings or load_settings("query", EntitlementSettings)).entitlements
    cursors = CursorCodec.from_setting(settings.cursor_key)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Single read statements in autocommit; no pre-ping: the Reader retries a read that met a
        # dead connection instead of paying a round trip on every request.
        engine = create_database(settings, "flow-query", isolation_level="AUTOCOMMIT", pool_pre_ping=False)
        app.state.db = engine
        app.state.reader = Reader(engine)
        async with AsyncExitStack() as stack:
            # Archived months are read from S3 (flow_query.archive); without a bucket they answer 503.
            s3 = await stack.enter_async_context(AwsClients(settings).client("s3")) if settings.archive_bucket else None
            app.state.archive = ArchiveReader(s3, app.state.reader, settings.archive_bucket, settings.archive_prefix,
                                              settings.archive_cache_dir, settings.archive_cache_bytes)
            await auth.prefetch()
            try:
                yield
            finally:
                await engine.dispose()

    app = FastAPI(title="FLOW query", version="0.2.0", lifespan=lifespan, **docs_options(settings))
    install_error_handlers(app, validation_code=lambda request, errors: validation_code(errors, _QUERY_CODES,
                                                                                        Code.INVALID_QUERY))
    install_auth_error_handler(app)
    app.add_middleware(TokenGate, authenticator=auth)  # the token is checked before anything reads the request
    app.add_middleware(AccessLog)  # outermost: one flow.access line per request, refused ones too
    # Readiness reads on a connection of its own (flow-query-health), never on the reader's pool.
    mount_health(app, settings, lambda: {"replica": lag_check(app.state.health_db, settings.max_replica_lag_seconds)},
                 database="flow-query-health")
    errors = {status: {"model": ErrorOut} for status in (401, 403, 404, 422, 503)}
    can_read = [Depends(auth.require("flow.read")), Depends(_known_parameters_once)]

    def grant_of(request: Request) -> Grant | None:
        """What the caller may read (None: FLOW_ENTITLEMENTS unset, no checks); after `can_read`."""
        if entitlements is None:
            return None
        claims = getattr(request.state, "claims", None)
        return entitlements.grant(claims and claims.client_id)

    def may_see(request: Request, branch: str | None, posted_by: str | None = None) -> bool:
        """A posting of `branch` is shown to a client entitled to that branch; a rejected one (its branch
        is not kept: None) to a client entitled to every branch, or to the client that posted it."""
        grant = grant_of(request)
        if grant is None:
            return True
        if branch is None:
            client = getattr(getattr(request.state, "claims", None), "client_id", None)
            return grant.branches == (ALL_BRANCHES,) or (client is not None and posted_by == client)
        return grant.allows_branch(branch)

    async def entitled_branch(request: Request, branch: BranchPath) -> None:
        grant = grant_of(request)
        if grant is not None and not grant.allows_branch(branch):
            raise FlowError(Code.NOT_ENTITLED, 403)

    account_read = [*can_read, Depends(entitled_branch)]

    def date_range(from_: date | None, to: date | None) -> tuple[date, date]:
        to = to or datetime.now(UTC).date()
        from_ = from_ or to - timedelta(days=30)
        if from_ > to or (to - from_).days >= settings.max_range_days:
            raise FlowError(Code.INVALID_RANGE, 422)
        return from_, to

    @app.get("/v1/transactions/{id}", response_model=TransactionOut, responses=errors, dependencies=can_read,
             summary="A posting by id: applied (with its content) or rejected (with its code)")
    async def get_transaction(id: IdPath, request: Request) -> Response:
        started = time.time_ns()
        row = await app.state.reader.fetchrow(TRANSACTION_BY_ID, id)
        if row and not may_see(request, row["branch"]):  # another branch's: as if it did not exist
            raise FlowError(Code.TRANSACTION_NOT_FOUND, 404)
        if row:
            answer = _applied(row)
        else:
            outcome = await app.state.reader.fetchrow(OUTCOME_BY_ID, id)
            archived = None
            if outcome is not None and outcome["code"] == Code.APPLIED.value:  # applied, its month archived
                archived = await app.state.archive.posting(id, outcome["dateref"])
                if archived is None or not may_see(request, archived["branch"]):
                    raise FlowError(Code.TRANSACTION_NOT_FOUND, 404)
            if archived is not None:
                answer = _applied({**archived, "callersub": outcome["callersub"],
                                   "callerclient": outcome["callerclient"]}).model_copy(update={"archived": True})
            elif outcome is None or not may_see(request, None, outcome.get("callerclient")):
                raise FlowError(Code.TRANSACTION_NOT_FOUND, 404)
            else:
                answer = _rejected(outcome["id"], outcome["tracekey"], outcome["code"], outcome["createdat"],
                                   outcome["callersub"], outcome["callerclient"]).model_copy(update={
                                       name: outcome[name] for name in ("available", "shortfall", "breakday")})
        if tracing.enabled():  # a client read the posting: a span in its trace
            tracing.record_posting_span("flow.query.transaction", answer.tracekey, started, time.time_ns(), {
                "flow.tracekey": str(answer.tracekey), "flow.posting.id": str(id), "flow.status": answer.status})
        return model_answer(answer)

    async def from_archive(row) -> dict:
        """A tracekey's applied posting whose month is archived: its content from the archive."""
        found = await app.state.archive.posting(row["outcome_id"], row["outcome_dateref"])
        if found is None:  # an applied posting neither in the database nor in the archive
            raise FlowError(Code.INTERNAL_ERROR, 500)
        return {**dict(row), **found, "callersub": row["callersub"], "callerclient": row["callerclient"], "archived": True}

    @app.get("/v1/transactions", response_model=TransactionList, responses=errors, dependencies=can_read,
             summary="Every posting that carried a tracekey, applied or rejected (at most `limit`)")
    async def find_transactions(tracekey: TracekeyQuery, request: Request, limit: LimitQuery = 100) -> Response:
        started = time.time_ns()
        rows = await app.state.reader.fetch(OUTCOMES_BY_TRACEKEY, tracekey, limit)
        rows = [await from_archive(row) if row["id"] is None and row["code"] == Code.APPLIED.value else dict(row)
                for row in rows]
        # Postings of branches the client is not entitled to are left out, as if they did not exist.
        rows = [row for row in rows if may_see(request, row["branch"], row.get("callerclient"))]
        if tracing.enabled():
            tracing.record_posting_span("flow.query.tracekey", tracekey, started, time.time_ns(), {
                "flow.tracekey": str(tracekey), "flow.found": len(rows)})
        return model_answer(TransactionList(items=[
            _applied({k: v for k, v in row.items() if not k.startswith("outcome_") and k not in ("code", "archived")}
                     ).model_copy(update={"archived": row.get("archived", False)}) if row["id"]
            else _rejected(row["outcome_id"], row["outcome_tracekey"], row["code"], row["outcome_createdat"],
                           row["callersub"], row["callerclient"])
            for row in rows]))

    @app.get("/v1/accounts/{branch}/{account}/statement", response_model=Statement, responses=errors,
             dependencies=account_read,
             summary="An account's postings between two reference dates, oldest first, a page at a time, "
                     "each line with the balance after it")
    async def get_statement(branch: BranchPath, account: AccountPath, from_: FromQuery = None, to: ToQuery = None,
                            limit: LimitQuery = 100,
                            cursor: Annotated[str | None, Query(max_length=200)] = None) -> Response:
        from_, to = date_range(from_, to)
        after = cursors.decode(cursor)  # checked in full before any query: a bad one costs no connection
        archived = await app.state.archive.archived_months(from_, to)
        if archived:  # some of the range has left the database: read those months from the archive
            items, more, last, opening, closing = await statement_page(
                app.state.archive, branch, account, from_, to, limit, after, archived, STATEMENT_PAGE)
            return statement_answer(branch, account, from_, to, opening, closing, items,
                                    cursors.encode(*last) if more else None, archived=True)
        page = await app.state.reader.fetchrow(STATEMENT_PAGE, branch, account, from_, to, limit, *after)
        more = page["more"]
        return statement_answer(
            branch, account, from_, to, page["opening_balance"], page["closing_balance"], page["items"],
            cursors.encode(page["last_dateref"], page["last_createdat"], page["last_id"]) if more else None)

    @app.get("/v1/accounts/{branch}/{account}/balances", response_model=BalanceDays, responses=errors,
             dependencies=account_read, summary="An account's daily balance rows between two reference dates")
    async def get_balances(branch: BranchPath, account: AccountPath, from_: FromQuery = None,
                           to: ToQuery = None) -> Response:
        from_, to = date_range(from_, to)
        rows = await app.state.reader.fetch(BALANCE_DAYS, branch, account, from_, to)
        return model_answer(BalanceDays(branch=branch, account=account, from_=from_, to=to,
                                        items=[BalanceDay(**row) for row in rows]))

    @app.get("/v1/accounts/{branch}/{account}/balance", response_model=BalanceAt, responses=errors,
             dependencies=account_read, summary="An account's balance at the end of a date (default today, UTC)")
    async def get_balance(branch: BranchPath, account: AccountPath, at: Annotated[
            IsoDate | None, Query(alias="date", description="Reference date, YYYY-MM-DD (default: today, UTC)")] = None
                          ) -> Response:
        at = at or datetime.now(UTC).date()
        row = await app.state.reader.fetchrow(BALANCE_AT, branch, account, at)
        zero = Decimal("0.00")
        return model_answer(BalanceAt(branch=branch, account=account, date=at,
                                      lastmovement=row["dateref"] if row else None,
                                      accumulateddebit=row["accumulateddebit"] if row else zero,
                                      accumulatedcredit=row["accumulatedcredit"] if row else zero,
                                      balance=row["balance"] if row else zero))

    @app.get("/v1/accounts/{branch}/{account}", response_model=AccountState, responses=errors,
             dependencies=account_read,
             summary="An account: status, blocks, limit, balance and available balance as of today, and the "
                     "replica's lag when it answered")
    async def get_account(branch: BranchPath, account: AccountPath) -> Response:
        return model_answer(await read_account(app.state.reader, branch, account))

    @app.get("/v1/events", response_model=EventList, responses=errors, dependencies=can_read,
             summary="The event catalogue")
    async def list_events() -> Response:
        return model_answer(EventList(items=[EventOut(**row) for row in await app.state.reader.fetch(EVENTS)]))

    @app.get("/v1/events/{code}", response_model=EventOut, responses=errors, dependencies=can_read,
             summary="One event of the catalogue")
    async def get_event(code: CodePath) -> Response:
        row = await app.state.reader.fetchrow(EVENT, code)
        if row is None:
            raise FlowError(Code.EVENT_NOT_FOUND, 404)
        return model_answer(EventOut(**row))

    return app
