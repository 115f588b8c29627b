"""The query API: transactions, statements and daily balances."""

from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Annotated
from uuid import UUID

from fastapi import Depends, FastAPI, Path, Query
from pydantic import BaseModel

from flow_kit.auth import AuthSettings, Authenticator, install_auth_error_handler
from flow_kit.codes import Code
from flow_kit.db import create_engine, ping
from flow_kit.errors import FlowError, install_error_handlers
from flow_kit.health import health_router
from flow_kit.posting import validation_code

from .queries import BALANCE_DAYS, OUTCOME_BY_ID, STATEMENT, TRANSACTION_BY_ID
from .schemas import BalanceDay, BalanceDays, Statement, StatementLine, TransactionOut
from .settings import QuerySettings

__all__ = ["create_app"]

BranchPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9]{1,10}$")]
AccountPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9]{1,20}$")]
_QUERY_CODES = {"branch": Code.INVALID_BRANCH, "account": Code.INVALID_ACCOUNT, "from": Code.INVALID_RANGE,
                "to": Code.INVALID_RANGE, "id": Code.INVALID_ID}


class ErrorOut(BaseModel):
    code: str
    message: str


def create_app(settings: QuerySettings, auth_settings: AuthSettings | None = None) -> FastAPI:
    auth = Authenticator(auth_settings or AuthSettings())

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.db = create_engine(settings.database_url, settings.database_pool_size, "flow-query")
        try:
            yield
        finally:
            await app.state.db.dispose()

    app = FastAPI(title="FLOW query", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app, validation_code=lambda errors: validation_code(errors, _QUERY_CODES, Code.INVALID_QUERY))
    install_auth_error_handler(app)
    app.include_router(health_router(lambda: {"database": lambda: ping(app.state.db)}))
    errors = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}, 404: {"model": ErrorOut}, 422: {"model": ErrorOut}}
    reader = [Depends(auth.require("flow.read"))]

    def date_range(from_: date | None, to: date | None) -> tuple[date, date]:
        to = to or datetime.now(UTC).date()
        from_ = from_ or to - timedelta(days=30)
        if from_ > to or (to - from_).days >= settings.max_range_days:
            raise FlowError(Code.INVALID_RANGE, 422)
        return from_, to

    @app.get("/v1/transactions/{id}", response_model=TransactionOut, responses=errors, dependencies=reader,
             summary="A posting by id: applied (with its content) or rejected (with its code)")
    async def get_transaction(id: UUID) -> TransactionOut:
        async with app.state.db.connect() as conn:
            row = (await conn.execute(TRANSACTION_BY_ID, {"id": id})).mappings().first()
            if row:
                return TransactionOut(**row, status="applied", code=Code.APPLIED.value, message=Code.APPLIED.message)
            outcome = (await conn.execute(OUTCOME_BY_ID, {"id": id})).mappings().first()
        if outcome is None:
            raise FlowError(Code.TRANSACTION_NOT_FOUND, 404)
        code = Code(outcome["code"])
        return TransactionOut(**outcome, status="rejected", message=code.message)

    @app.get("/v1/accounts/{branch}/{account}/statement", response_model=Statement, responses=errors, dependencies=reader,
             summary="An account's postings between two reference dates, oldest first")
    async def get_statement(branch: BranchPath, account: AccountPath,
                            from_: Annotated[date | None, Query(alias="from")] = None,
                            to: date | None = None) -> Statement:
        from_, to = date_range(from_, to)
        async with app.state.db.connect() as conn:
            rows = (await conn.execute(STATEMENT, {"branch": branch, "account": account, "from_": from_, "to": to})).mappings()
            items = [StatementLine(**row) for row in rows]
        return Statement(branch=branch, account=account, from_=from_, to=to, items=items)

    @app.get("/v1/accounts/{branch}/{account}/balances", response_model=BalanceDays, responses=errors, dependencies=reader,
             summary="An account's daily balance rows between two reference dates")
    async def get_balances(branch: BranchPath, account: AccountPath,
                           from_: Annotated[date | None, Query(alias="from")] = None,
                           to: date | None = None) -> BalanceDays:
        from_, to = date_range(from_, to)
        async with app.state.db.connect() as conn:
            rows = (await conn.execute(BALANCE_DAYS, {"branch": branch, "account": account, "from_": from_, "to": to})).mappings()
            items = [BalanceDay(**row) for row in rows]
        return BalanceDays(branch=branch, account=account, from_=from_, to=to, items=items)

    return app
