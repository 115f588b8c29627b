"""The account registry (`flow.admin`): open an account, change its limit or holder, block and unblock
it, close it (flow_ingest.accounts). With FLOW_ENTITLEMENTS set, only for a client entitled to the
account's branch (403 R076 otherwise, before anything is read or changed)."""

from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path

from flow_kit.auth import Authenticator
from flow_kit.entitlements import Grant
from flow_kit.errors import FlowError, StrictJSONRoute
from flow_rules.codes import Code
from flow_rules.limits import ACCOUNT_PATTERN, BRANCH_PATTERN

from ..accounts import AccountIn, AccountOut, AccountPatch, BlockIn, CloseIn
from ..state import State
from ._shared import Caller, ClientGrant, errors

__all__ = ["router"]

BranchPath = Annotated[str, Path(pattern=BRANCH_PATTERN)]
AccountPath = Annotated[str, Path(pattern=ACCOUNT_PATTERN)]


def _refuse_unless_entitled(grant: Grant | None, branch: str) -> None:
    if grant is not None and not grant.allows_branch(branch):
        raise FlowError(Code.NOT_ENTITLED, 403)


async def _entitled_branch(branch: BranchPath, grant: ClientGrant) -> None:
    """A dependency of the routes naming the account in their path: judged before their body is validated."""
    _refuse_unless_entitled(grant, branch)


async def open_account(body: AccountIn, state: State, caller: Caller, grant: ClientGrant) -> AccountOut:
    _refuse_unless_entitled(grant, body.branch)
    limit = None if body.limit is None else Decimal(body.limit)
    return await state.accounts.open(body.branch, body.account, limit, body.holder, caller)


async def change_account(
    branch: BranchPath, account: AccountPath, body: Annotated[AccountPatch, Body()], state: State, caller: Caller
) -> AccountOut:
    changes: dict = {}
    if body.nolimit and body.limit is not None:
        raise FlowError(Code.INVALID_ACCOUNT_CHANGE, 422)
    if body.nolimit:
        changes["limit"] = None
    elif body.limit is not None:
        changes["limit"] = Decimal(body.limit)
    if body.holder is not None:
        changes["holder"] = body.holder
    return await state.accounts.change(branch, account, caller, **changes)


async def block_account(
    branch: BranchPath, account: AccountPath, body: BlockIn, state: State, caller: Caller
) -> AccountOut:
    if not (body.debits or body.credits):
        raise FlowError(Code.INVALID_ACCOUNT_CHANGE, 422)
    return await state.accounts.block(branch, account, body.debits, body.credits, body.reason, caller)


async def unblock_account(
    branch: BranchPath, account: AccountPath, body: BlockIn, state: State, caller: Caller
) -> AccountOut:
    if not (body.debits or body.credits):
        raise FlowError(Code.INVALID_ACCOUNT_CHANGE, 422)
    return await state.accounts.unblock(branch, account, body.debits, body.credits, body.reason, caller)


async def close_account(
    branch: BranchPath, account: AccountPath, body: CloseIn, state: State, caller: Caller
) -> AccountOut:
    return await state.accounts.close(branch, account, body.reason, caller)


def router(auth: Authenticator) -> APIRouter:
    router = APIRouter(route_class=StrictJSONRoute, dependencies=[Depends(auth.require("flow.admin"))])
    router.add_api_route(
        "/v1/accounts",
        open_account,
        methods=["POST"],
        status_code=201,
        response_model=AccountOut,
        responses=errors(401, 403, 409, 413, 422),
        summary="Open (register) an account; limit 0.00 unless given",
    )
    router.add_api_route(
        "/v1/accounts/{branch}/{account}",
        change_account,
        methods=["PATCH"],
        response_model=AccountOut,
        responses=errors(401, 403, 404, 409, 413, 422),
        dependencies=[Depends(_entitled_branch)],
        summary="Change an account's limit or holder",
    )
    router.add_api_route(
        "/v1/accounts/{branch}/{account}/block",
        block_account,
        methods=["POST"],
        response_model=AccountOut,
        responses=errors(401, 403, 404, 409, 413, 422),
        dependencies=[Depends(_entitled_branch)],
        summary="Block an account for debits and/or credits",
    )
    router.add_api_route(
        "/v1/accounts/{branch}/{account}/unblock",
        unblock_account,
        methods=["POST"],
        response_model=AccountOut,
        responses=errors(401, 403, 404, 409, 413, 422),
        dependencies=[Depends(_entitled_branch)],
        summary="Lift an account's blocks",
    )
    router.add_api_route(
        "/v1/accounts/{branch}/{account}/close",
        close_account,
        methods=["POST"],
        response_model=AccountOut,
        responses=errors(401, 403, 404, 409, 413, 422),
        dependencies=[Depends(_entitled_branch)],
        summary="Close an account at a zero balance",
    )
    return router
