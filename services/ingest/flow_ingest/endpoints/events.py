"""The event catalogue (`flow.admin`): add an event, change one. Each change is audited with who made it
(flow_ingest.catalogue)."""

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path

from flow_kit.auth import Authenticator
from flow_kit.errors import StrictJSONRoute
from flow_rules.events import EventOut
from flow_rules.limits import MAX_EVENTCODE
from flow_rules.posting import decimal_integer

from ..schemas import EventIn, EventPatch
from ..state import State
from ._shared import Caller, errors

__all__ = ["router"]


async def create_event(event: EventIn, state: State, caller: Caller) -> EventOut:
    created = await state.catalogue.create(
        event.description,
        event.active,
        event.allowdebit,
        event.allowcredit,
        event.code,
        caller=caller,
        forced=event.forced,
    )
    return EventOut(**created.__dict__)


async def update_event(
    code: Annotated[int, *decimal_integer(1, MAX_EVENTCODE), Path()],
    changes: Annotated[EventPatch, Body()],
    state: State,
    caller: Caller,
) -> EventOut:
    updated = await state.catalogue.update(code, changes.model_dump(exclude_none=True), caller=caller)
    return EventOut(**updated.__dict__)


def router(auth: Authenticator) -> APIRouter:
    router = APIRouter(route_class=StrictJSONRoute, dependencies=[Depends(auth.require("flow.admin"))])
    router.add_api_route(
        "/v1/events",
        create_event,
        methods=["POST"],
        status_code=201,
        response_model=EventOut,
        responses=errors(401, 403, 409, 413, 422),
        summary="Add an event to the catalogue",
    )
    router.add_api_route(
        "/v1/events/{code}",
        update_event,
        methods=["PATCH"],
        response_model=EventOut,
        responses=errors(401, 403, 404, 413, 422),
        summary="Rename an event, activate or deactivate it, allow or refuse debits and credits",
    )
    return router
