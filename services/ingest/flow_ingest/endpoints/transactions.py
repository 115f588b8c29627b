"""Postings (`flow.write`): one, or a batch whose postings are each judged on their own. An accepted
posting is recorded and published to FlowRequest before it is answered."""

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import ValidationError
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from flow_kit.answers import JSONAnswer, answer
from flow_kit.auth import Authenticator
from flow_kit.db import is_transient
from flow_kit.entitlements import Grant
from flow_kit.errors import FlowError, StrictJSONRoute, error_body
from flow_rules.codes import Code
from flow_rules.limits import MAX_BATCH_ITEMS
from flow_rules.posting import PostingIn, validation_code

from ..intake import Verdict
from ..schemas import Accepted, BatchIn, BatchItem, BatchOut
from ..state import IngestState, State
from ._shared import Caller, ClientGrant, errors

__all__ = ["router"]


async def _accept(
    state: IngestState, items: list[PostingIn | Code], caller: tuple[str, str | None] | None, grant: Grant | None
) -> list[Verdict]:
    try:
        # A lost connection (a failover, a password rotation ending sessions) is tried again at
        # once: the database work comes before anything is published, so a retry repeats nothing.
        async for attempt in AsyncRetrying(
            retry=retry_if_exception(is_transient),
            stop=stop_after_attempt(3),
            wait=wait_exponential_jitter(multiplier=0.05, max=0.5),
            reraise=True,
        ):
            with attempt:
                return await state.intake.accept(items, caller, grant=grant)
    except FlowError:
        raise
    except Exception as exc:  # the database or SNS is down: nothing was accepted, the client retries
        raise FlowError(Code.UNAVAILABLE, 503) from exc
    raise AssertionError("unreachable: the last attempt's error is raised")


async def post_transaction(
    posting: PostingIn, state: State, caller: Caller, grant: ClientGrant
) -> Accepted | JSONAnswer:
    (verdict,) = await _accept(state, [posting], caller, grant)
    if verdict.code is not None:  # refused or failed: every such verdict has its code
        return answer(error_body(verdict.code, configured=state.settings.configured), verdict.http_status)
    return Accepted(id=str(verdict.id), tracekey=str(verdict.tracekey))


async def _batch_items(batch: BatchIn) -> list[PostingIn | Code]:
    """The batch's postings, each validated on its own (a refused one is its code); the batch as a
    whole is refused (R016) with none or too many, before the service's state is looked at."""
    if not 1 <= len(batch.items) <= MAX_BATCH_ITEMS:
        raise FlowError(Code.INVALID_BATCH, 422)
    items: list[PostingIn | Code] = []
    for item in batch.items:
        try:
            items.append(PostingIn.model_validate(item))
        except ValidationError as exc:
            items.append(validation_code(exc.errors()))
    return items


async def post_batch(
    items: Annotated[list[PostingIn | Code], Depends(_batch_items)], state: State, caller: Caller, grant: ClientGrant
) -> BatchOut:
    verdicts = await _accept(state, items, caller, grant)
    out = [
        BatchItem(
            index=n,
            status=v.status,
            id=str(v.id) if v.id else None,
            tracekey=str(v.tracekey) if v.tracekey else None,
            code=v.code and v.code.value,
            message=v.code and v.code.text(state.settings.configured),
        )
        for n, v in enumerate(verdicts)
    ]
    return BatchOut(items=out, **{s: sum(v.status == s for v in verdicts) for s in ("accepted", "rejected", "failed")})


def router(auth: Authenticator) -> APIRouter:
    router = APIRouter(route_class=StrictJSONRoute, dependencies=[Depends(auth.require("flow.write"))])
    router.add_api_route(
        "/v1/transactions",
        post_transaction,
        methods=["POST"],
        status_code=202,
        response_model=Accepted,
        responses=errors(401, 403, 409, 413, 422, 503),
        summary="Accept one posting for asynchronous application",
    )
    router.add_api_route(
        "/v1/transactions/batch",
        post_batch,
        methods=["POST"],
        status_code=202,
        response_model=BatchOut,
        responses=errors(401, 403, 413, 422, 503),
        summary=f"Accept up to {MAX_BATCH_ITEMS:,} postings; each is judged on its own and gets its own answer",
    )
    return router
