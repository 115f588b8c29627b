"""What the ingest endpoints share: who is calling, and the error answers they document."""

from typing import Annotated

from fastapi import Depends, Request

from flow_kit.auth import caller_of
from flow_kit.errors import ErrorOut

__all__ = ["Caller", "errors"]


async def _caller(request: Request) -> tuple[str, str | None] | None:
    return caller_of(getattr(request.state, "claims", None))


# Who called, (sub, client), recorded with what they did; None when authentication is disabled.
Caller = Annotated[tuple[str, str | None] | None, Depends(_caller)]


def errors(*statuses: int) -> dict[int | str, dict]:
    """An operation's error answers, for the OpenAPI document."""
    return {status: {"model": ErrorOut} for status in statuses}
