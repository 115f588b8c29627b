"""What the ingest endpoints share: who is calling, what the caller may do, and the error answers they
document."""

from typing import Annotated

from fastapi import Depends, Request

from flow_kit.auth import caller_of
from flow_kit.entitlements import Grant
from flow_kit.errors import ErrorOut

from ..state import State

__all__ = ["Caller", "ClientGrant", "errors"]


async def _caller(request: Request) -> tuple[str, str | None] | None:
    return caller_of(getattr(request.state, "claims", None))


# Who called, (sub, client), recorded with what they did; None when authentication is disabled.
Caller = Annotated[tuple[str, str | None] | None, Depends(_caller)]


async def _grant(request: Request, state: State) -> Grant | None:
    if state.entitlements is None:
        return None
    claims = getattr(request.state, "claims", None)
    return state.entitlements.grant(claims and claims.client_id)


# What the client may post; None when FLOW_ENTITLEMENTS is unset (no checks).
ClientGrant = Annotated[Grant | None, Depends(_grant)]


def errors(*statuses: int) -> dict[int | str, dict]:
    """An operation's error answers, for the OpenAPI document."""
    return {status: {"model": ErrorOut} for status in statuses}
