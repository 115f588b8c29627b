"""What the query endpoints share: their parameters, who may read what, and the error answers they
document."""

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from flow_kit.auth import Authenticator
from flow_kit.entitlements import ALL_BRANCHES, Grant
from flow_kit.errors import ErrorOut, FlowError
from flow_rules.codes import Code
from flow_rules.limits import ACCOUNT_PATTERN, BRANCH_PATTERN, MAX_PAGE
from flow_rules.posting import IsoDate, decimal_integer

from ..settings import QuerySettings
from ..state import State

__all__ = [
    "ERRORS",
    "AccountPath",
    "BranchPath",
    "Entitled",
    "Entitlement",
    "FromQuery",
    "LimitQuery",
    "ToQuery",
    "date_range",
    "entitled_branch",
    "reading_router",
]

BranchPath = Annotated[str, Path(pattern=BRANCH_PATTERN)]
AccountPath = Annotated[str, Path(pattern=ACCOUNT_PATTERN)]
FromQuery = Annotated[
    IsoDate | None,
    Query(alias="from", description="First reference date, YYYY-MM-DD (default: 30 days before `to`)"),
]
ToQuery = Annotated[IsoDate | None, Query(description="Last reference date, YYYY-MM-DD (default: today, UTC)")]
LimitQuery = Annotated[int, *decimal_integer(1, MAX_PAGE), Query(description=f"1 to {MAX_PAGE}, plain decimal digits")]
ERRORS: dict[int | str, dict] = {status: {"model": ErrorOut} for status in (401, 403, 404, 422, 503)}


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
            raise FlowError(
                Code.INVALID_QUERY,
                422,
                f"{Code.INVALID_QUERY.message}: {name} is unknown or repeated",
                fields=[f"query.{name}"],
            )


def reading_router(auth: Authenticator) -> APIRouter:
    """A router whose routes need `flow.read` and refuse a query parameter they do not know."""
    return APIRouter(dependencies=[Depends(auth.require("flow.read")), Depends(_known_parameters_once)])


@dataclass(frozen=True, slots=True)
class Entitlement:
    """What the caller may read: `grant` is None when FLOW_ENTITLEMENTS is unset (no checks)."""

    grant: Grant | None
    client: str | None

    def sees(self, branch: str | None, posted_by: str | None = None) -> bool:
        """A posting of `branch` is shown to a client entitled to that branch; a rejected one (its branch
        is not kept: None) to a client entitled to every branch, or to the client that posted it."""
        if self.grant is None:
            return True
        if branch is None:
            return self.grant.branches == (ALL_BRANCHES,) or (self.client is not None and posted_by == self.client)
        return self.grant.allows_branch(branch)


async def _entitlement(request: Request, state: State) -> Entitlement:
    claims = getattr(request.state, "claims", None)  # set by `flow.read`'s check, before
    if state.entitlements is None:
        return Entitlement(None, None)
    return Entitlement(state.entitlements.grant(claims and claims.client_id), getattr(claims, "client_id", None))


Entitled = Annotated[Entitlement, Depends(_entitlement)]


async def entitled_branch(branch: BranchPath, entitled: Entitled) -> None:
    """A dependency: the account routes answer only a client entitled to the account's branch (R076)."""
    if not entitled.sees(branch):
        raise FlowError(Code.NOT_ENTITLED, 403)


def date_range(settings: QuerySettings, from_: date | None, to: date | None) -> tuple[date, date]:
    to = to or datetime.now(UTC).date()
    from_ = from_ or to - timedelta(days=30)
    if from_ > to or (to - from_).days >= settings.max_range_days:
        raise FlowError(Code.INVALID_RANGE, 422)
    return from_, to
