"""An account as of today: its registry row, balance and available balance; and the registry's audit
trail of its changes (flow_query.accounts)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from flow_kit.answers import JSONAnswer, answer
from flow_kit.auth import Authenticator

from ..accounts import AccountHistory, AccountState, read_account, read_history
from ..state import State
from ._shared import ERRORS, AccountPath, BranchPath, LimitQuery, entitled_branch, reading_router

__all__ = ["router"]


async def get_account(branch: BranchPath, account: AccountPath, state: State) -> JSONAnswer:
    return answer(await read_account(state.reader, branch, account))


async def get_account_history(
    branch: BranchPath,
    account: AccountPath,
    state: State,
    limit: LimitQuery = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> JSONAnswer:
    return answer(await read_history(state.reader, state.cursors, branch, account, limit, cursor))


def router(auth: Authenticator) -> APIRouter:
    router = reading_router(auth)
    router.add_api_route(
        "/v1/accounts/{branch}/{account}",
        get_account,
        methods=["GET"],
        response_model=AccountState,
        responses=ERRORS,
        dependencies=[Depends(entitled_branch)],
        summary="An account: status, blocks, limit, balance and available balance as of today, and the "
        "replica's lag when it answered",
    )
    router.add_api_route(
        "/v1/accounts/{branch}/{account}/history",
        get_account_history,
        methods=["GET"],
        response_model=AccountHistory,
        responses=ERRORS,
        dependencies=[Depends(entitled_branch)],
        summary="The account registry's changes to an account (who, when, what changed, why), oldest first, a "
        "page at a time",
    )
    return router
