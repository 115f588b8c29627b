"""An account's balances: its daily rows between two reference dates, and its balance at the end of a
date."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from flow_kit.answers import JSONAnswer, answer
from flow_kit.auth import Authenticator
from flow_rules.posting import IsoDate

from ..queries import BALANCE_AT, BALANCE_DAYS
from ..schemas import BalanceAt, BalanceDay, BalanceDays
from ..state import State
from ._shared import ERRORS, AccountPath, BranchPath, FromQuery, ToQuery, date_range, entitled_branch, reading_router

__all__ = ["router"]

DateQuery = Annotated[
    IsoDate | None, Query(alias="date", description="Reference date, YYYY-MM-DD (default: today, UTC)")
]


async def get_balances(
    branch: BranchPath, account: AccountPath, state: State, from_: FromQuery = None, to: ToQuery = None
) -> JSONAnswer:
    from_, to = date_range(state.settings, from_, to)
    rows = await state.reader.fetch(BALANCE_DAYS, branch, account, from_, to)
    return answer(
        BalanceDays(branch=branch, account=account, from_=from_, to=to, items=[BalanceDay(**row) for row in rows])
    )


async def get_balance(branch: BranchPath, account: AccountPath, state: State, at: DateQuery = None) -> JSONAnswer:
    at = at or datetime.now(UTC).date()
    row = await state.reader.fetchrow(BALANCE_AT, branch, account, at)
    zero = Decimal("0.00")
    return answer(
        BalanceAt(
            branch=branch,
            account=account,
            date=at,
            lastmovement=row["dateref"] if row else None,
            accumulateddebit=row["accumulateddebit"] if row else zero,
            accumulatedcredit=row["accumulatedcredit"] if row else zero,
            balance=row["balance"] if row else zero,
        )
    )


def router(auth: Authenticator) -> APIRouter:
    router = reading_router(auth)
    router.add_api_route(
        "/v1/accounts/{branch}/{account}/balances",
        get_balances,
        methods=["GET"],
        response_model=BalanceDays,
        responses=ERRORS,
        dependencies=[Depends(entitled_branch)],
        summary="An account's daily balance rows between two reference dates",
    )
    router.add_api_route(
        "/v1/accounts/{branch}/{account}/balance",
        get_balance,
        methods=["GET"],
        response_model=BalanceAt,
        responses=ERRORS,
        dependencies=[Depends(entitled_branch)],
        summary="An account's balance at the end of a date (default today, UTC)",
    )
    return router
