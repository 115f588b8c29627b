"""The event catalogue, as the engine applies it."""

from typing import Annotated

from fastapi import APIRouter, Path

from flow_kit.answers import JSONAnswer, answer
from flow_kit.auth import Authenticator
from flow_kit.errors import FlowError
from flow_rules.codes import Code
from flow_rules.events import EventOut
from flow_rules.limits import MAX_EVENTCODE
from flow_rules.posting import decimal_integer

from ..queries import EVENT, EVENTS
from ..schemas import EventList
from ..state import State
from ._shared import ERRORS, reading_router

__all__ = ["router"]

CodePath = Annotated[
    int, *decimal_integer(1, MAX_EVENTCODE), Path(description=f"1 to {MAX_EVENTCODE}, plain decimal digits")
]


async def list_events(state: State) -> JSONAnswer:
    return answer(EventList(items=[EventOut(**row) for row in await state.reader.fetch(EVENTS)]))


async def get_event(code: CodePath, state: State) -> JSONAnswer:
    row = await state.reader.fetchrow(EVENT, code)
    if row is None:
        raise FlowError(Code.EVENT_NOT_FOUND, 404)
    return answer(EventOut(**row))


def router(auth: Authenticator) -> APIRouter:
    router = reading_router(auth)
    router.add_api_route(
        "/v1/events",
        list_events,
        methods=["GET"],
        response_model=EventList,
        responses=ERRORS,
        summary="The event catalogue",
    )
    router.add_api_route(
        "/v1/events/{code}",
        get_event,
        methods=["GET"],
        response_model=EventOut,
        responses=ERRORS,
        summary="One event of the catalogue",
    )
    return router
