"""The query API: transactions, statements, daily and point-in-time balances, the event catalogue."""

from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated
from uuid import UUID

from fastapi import Depends, FastAPI, Path, Query

from flow_kit.auth import AuthSettings, Authenticator, install_auth_error_handler
from flow_kit.codes import Code
from flow_kit.db import create_database, ping
from flow_kit.errors import FlowError, install_error_handlers
from flow_kit.events import EventOut
from flow_kit.health import health_router
from flow_kit.posting import validation_code

from .cursor import decode_cursor, encode_cursor
from .replica import lag_check
from .queries import (BALANCE_AT, BALANCE_DAYS, EVENT, EVENTS, OUTCOME_BY_ID, OUTCOMES_BY_TRACEKEY, STATEMENT_PAGE,
                      TRANSACTION_BY_ID)
from .schemas import (BalanceAt, BalanceDay, BalanceDays, ErrorOut, EventList, Statement, StatementLine,
                      TransactionList, TransactionOut)
from .settings import QuerySettings

__all__ = ["create_app"]

BranchPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9]{1,10}$")]
AccountPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9]{1,20}$")]
FromQuery = Annotated[date | None, Query(alias="from", description="First reference date (default: 30 days before `to`)")]
ToQuery = Annotated[date | None, Query(description="Last reference date (default: today, UTC)")]
_QUERY_CODES = {"branch": Code.INVALID_BRANCH, "account": Code.INVALID_ACCOUNT, "from": Code.INVALID_RANGE,
                "to": Code.INVALID_RANGE, "date": Code.INVALID_RANGE, "id": Code.INVALID_ID,
                "tracekey": Code.INVALID_TRACEKEY, "limit": Code.INVALID_LIMIT, "code": Code.INVALID_EVENTCODE}


def _applied(row) -> TransactionOut:
    return TransactionOut(**row, status="applied", code=Code.APPLIED.value, message=Code.APPLIED.message)


def _rejected(id: UUID, tracekey: UUID, code: str, createdat: datetime) -> TransactionOut:
    return TransactionOut(id=id, tracekey=tracekey, createdat=createdat, status="rejected", code=code,
                          message=Code(code).message)


def create_app(settings: QuerySettings, auth_settings: AuthSettings | None = None) -> FastAPI:
    auth = Authenticator(auth_settings or AuthSettings())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine = create_database(settings, "flow-query")
        # Single read statements: autocommit spares each request a BEGIN and a ROLLBACK.
        app.state.db = engine.execution_options(isolation_level="AUTOCOMMIT")
        await auth.prefetch()
        try:
            yield
        finally:
            await engine.dispose()

    app = FastAPI(title="FLOW query", version="0.2.0", lifespan=lifespan)
    install_error_handlers(app, validation_code=lambda request, errors: validation_code(errors, _QUERY_CODES,
                                                                                        Code.INVALID_QUERY))
    install_auth_error_handler(app)
    app.include_router(health_router(lambda: {"database": lambda: ping(app.state.db),
                                              "replica": lag_check(app.state.db, settings.max_replica_lag_seconds)}))
    errors = {status: {"model": ErrorOut} for status in (401, 403, 404, 422)}
    reader = [Depends(auth.require("flow.read"))]

    def date_range(from_: date | None, to: date | None) -> tuple[date, date]:
        to = to or datetime.now(UTC).date()
        from_ = from_ or to - timedelta(days=30)
        if from_ > to or (to - from_).days >= settings.max_range_days:
            raise FlowError(Code.INVALID_RANGE, 422)
        return from_, to

    async def balance_at(conn, branch: str, account: str, at: date):
        """The balance at the end of `at` (date.min: before any posting)."""
        if at == date.min:
            return None
        return (await conn.execute(BALANCE_AT, {"branch": branch, "account": account, "at": at})).first()

    @app.get("/v1/transactions/{id}", response_model=TransactionOut, responses=errors, dependencies=reader,
             summary="A posting by id: applied (with its content) or rejected (with its code)")
    async def get_transaction(id: UUID) -> TransactionOut:
        async with app.state.db.connect() as conn:
            row = (await conn.execute(TRANSACTION_BY_ID, {"id": id})).mappings().first()
            if row:
                return _applied(row)
            outcome = (await conn.execute(OUTCOME_BY_ID, {"id": id})).first()
        if outcome is None:
            raise FlowError(Code.TRANSACTION_NOT_FOUND, 404)
        return _rejected(outcome.id, outcome.tracekey, outcome.code, outcome.createdat)

    @app.get("/v1/transactions", response_model=TransactionList, responses=errors, dependencies=reader,
             summary="Every posting that carried a tracekey, applied or rejected (at most `limit`)")
    async def find_transactions(tracekey: UUID,
                                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> TransactionList:
        async with app.state.db.connect() as conn:
            rows = (await conn.execute(OUTCOMES_BY_TRACEKEY, {"tracekey": tracekey, "limit": limit})).mappings().all()
        return TransactionList(items=[
            _applied({k: v for k, v in row.items() if not k.startswith("outcome_") and k != "code"}) if row["id"]
            else _rejected(row["outcome_id"], row["outcome_tracekey"], row["code"], row["outcome_createdat"])
            for row in rows])

    @app.get("/v1/accounts/{branch}/{account}/statement", response_model=Statement, responses=errors,
             dependencies=reader,
             summary="An account's postings between two reference dates, oldest first, a page at a time, "
                     "each line with the balance after it")
    async def get_statement(branch: BranchPath, account: AccountPath, from_: FromQuery = None, to: ToQuery = None,
                            limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                            cursor: Annotated[str | None, Query(max_length=200)] = None) -> Statement:
        from_, to = date_range(from_, to)
        after = decode_cursor(cursor)
        async with app.state.db.connect() as conn:
            rows = (await conn.execute(STATEMENT_PAGE, {
                "branch": branch, "account": account, "from_": from_, "to": to, "limit": limit + 1,
                "after_dateref": after[0], "after_createdat": after[1], "after_id": after[2]})).mappings().all()
            opening = await balance_at(conn, branch, account, from_ - timedelta(days=1) if from_ > date.min else from_)
            closing = await balance_at(conn, branch, account, to)
        items = [StatementLine(**row) for row in rows[:limit]]
        more = len(rows) > limit
        return Statement(
            branch=branch, account=account, from_=from_, to=to, items=items,
            opening_balance=opening.balance if opening else Decimal("0.00"),
            closing_balance=closing.balance if closing else Decimal("0.00"),
            next_cursor=encode_cursor(items[-1].dateref, items[-1].createdat, items[-1].id) if more else None)

    @app.get("/v1/accounts/{branch}/{account}/balances", response_model=BalanceDays, responses=errors,
             dependencies=reader, summary="An account's daily balance rows between two reference dates")
    async def get_balances(branch: BranchPath, account: AccountPath, from_: FromQuery = None,
                           to: ToQuery = None) -> BalanceDays:
        from_, to = date_range(from_, to)
        async with app.state.db.connect() as conn:
            rows = (await conn.execute(BALANCE_DAYS, {"branch": branch, "account": account, "from_": from_, "to": to})).mappings()
            items = [BalanceDay(**row) for row in rows]
        return BalanceDays(branch=branch, account=account, from_=from_, to=to, items=items)

    @app.get("/v1/accounts/{branch}/{account}/balance", response_model=BalanceAt, responses=errors,
             dependencies=reader, summary="An account's balance at the end of a date (default today, UTC)")
    async def get_balance(branch: BranchPath, account: AccountPath, at: Annotated[
            date | None, Query(alias="date", description="Reference date (default: today, UTC)")] = None) -> BalanceAt:
        at = at or datetime.now(UTC).date()
        async with app.state.db.connect() as conn:
            row = await balance_at(conn, branch, account, at)
        zero = Decimal("0.00")
        return BalanceAt(branch=branch, account=account, date=at, lastmovement=row.dateref if row else None,
                         accumulateddebit=row.accumulateddebit if row else zero,
                         accumulatedcredit=row.accumulatedcredit if row else zero,
                         balance=row.balance if row else zero)

    @app.get("/v1/events", response_model=EventList, responses=errors, dependencies=reader,
             summary="The event catalogue")
    async def list_events() -> EventList:
        async with app.state.db.connect() as conn:
            return EventList(items=[EventOut(**row) for row in (await conn.execute(EVENTS)).mappings()])

    @app.get("/v1/events/{code}", response_model=EventOut, responses=errors, dependencies=reader,
             summary="One event of the catalogue")
    async def get_event(code: Annotated[int, Path(gt=0, le=2_147_483_647)]) -> EventOut:
        async with app.state.db.connect() as conn:
            row = (await conn.execute(EVENT, {"code": code})).mappings().first()
        if row is None:
            raise FlowError(Code.EVENT_NOT_FOUND, 404)
        return EventOut(**row)

    return app
