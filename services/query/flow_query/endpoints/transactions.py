"""Postings, by id or by tracekey: applied (with their content, from the archive when their month has
left the database) or rejected (with their code)."""

import time
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path, Query

from flow_kit import tracing
from flow_kit.answers import JSONAnswer, answer
from flow_kit.auth import Authenticator
from flow_kit.errors import FlowError
from flow_rules.codes import Code
from flow_rules.posting import CanonicalUUID

from ..queries import OUTCOME_BY_ID, OUTCOMES_BY_TRACEKEY, TRANSACTION_BY_ID
from ..schemas import CallerOut, TransactionList, TransactionOut
from ..state import QueryState, State
from ._shared import ERRORS, Entitled, LimitQuery, reading_router

__all__ = ["router"]

IdPath = Annotated[CanonicalUUID, Path(description="A UUID in lowercase 8-4-4-4-12 form")]
TracekeyQuery = Annotated[CanonicalUUID, Query(description="A UUID in lowercase 8-4-4-4-12 form")]
# A debit refused for funds (R028) carries these figures, kept on its outcome.
_REFUSAL_FIGURES = ("available", "shortfall", "breakday")


def _applied(row) -> TransactionOut:
    row = dict(row)
    caller = CallerOut.of(row.pop("callersub"), row.pop("callerclient"))
    return TransactionOut(**row, caller=caller, status="applied", code=Code.APPLIED.value, message=Code.APPLIED.message)


def _rejected(
    id: UUID,
    tracekey: UUID,
    code: str,
    createdat: datetime,
    callersub: str | None = None,
    callerclient: str | None = None,
) -> TransactionOut:
    return TransactionOut(
        id=id,
        tracekey=tracekey,
        createdat=createdat,
        status="rejected",
        code=code,
        message=Code(code).message,
        caller=CallerOut.of(callersub, callerclient),
    )


async def get_transaction(id: IdPath, state: State, entitled: Entitled) -> JSONAnswer:
    started = time.time_ns()
    row = await state.reader.fetchrow(TRANSACTION_BY_ID, id)
    if row and not entitled.sees(row["branch"]):  # another branch's: as if it did not exist
        raise FlowError(Code.TRANSACTION_NOT_FOUND, 404)
    if row:
        found = _applied(row)
    else:
        outcome = await state.reader.fetchrow(OUTCOME_BY_ID, id)
        if outcome is None:
            raise FlowError(Code.TRANSACTION_NOT_FOUND, 404)
        if outcome["code"] == Code.APPLIED.value:  # applied, its month archived
            archived = await state.archive.posting(id, outcome["dateref"])
            if archived is None or not entitled.sees(archived["branch"]):
                raise FlowError(Code.TRANSACTION_NOT_FOUND, 404)
            found = _applied(
                {**archived, "callersub": outcome["callersub"], "callerclient": outcome["callerclient"]}
            ).model_copy(update={"archived": True})
        elif not entitled.sees(None, outcome.get("callerclient")):
            raise FlowError(Code.TRANSACTION_NOT_FOUND, 404)
        else:
            found = _rejected(
                outcome["id"],
                outcome["tracekey"],
                outcome["code"],
                outcome["createdat"],
                outcome["callersub"],
                outcome["callerclient"],
            ).model_copy(update={name: outcome[name] for name in _REFUSAL_FIGURES})
    if tracing.enabled():  # a client read the posting: a span in its trace
        tracing.record_posting_span(
            "flow.query.transaction",
            found.tracekey,
            started,
            time.time_ns(),
            {"flow.tracekey": str(found.tracekey), "flow.posting.id": str(id), "flow.status": found.status},
        )
    return answer(found)


async def _from_archive(state: QueryState, row) -> dict[str, Any]:
    """A tracekey's applied posting whose month is archived: its content from the archive."""
    found = await state.archive.posting(row["outcome_id"], row["outcome_dateref"])
    if found is None:  # an applied posting neither in the database nor in the archive
        raise FlowError(Code.INTERNAL_ERROR, 500)
    return {**dict(row), **found, "callersub": row["callersub"], "callerclient": row["callerclient"], "archived": True}


async def find_transactions(
    tracekey: TracekeyQuery, state: State, entitled: Entitled, limit: LimitQuery = 100
) -> JSONAnswer:
    started = time.time_ns()
    rows = [
        await _from_archive(state, row) if row["id"] is None and row["code"] == Code.APPLIED.value else dict(row)
        for row in await state.reader.fetch(OUTCOMES_BY_TRACEKEY, tracekey, limit)
    ]
    # Postings of branches the client is not entitled to are left out, as if they did not exist.
    rows = [row for row in rows if entitled.sees(row["branch"], row.get("callerclient"))]
    if tracing.enabled():
        tracing.record_posting_span(
            "flow.query.tracekey",
            tracekey,
            started,
            time.time_ns(),
            {"flow.tracekey": str(tracekey), "flow.found": len(rows)},
        )
    return answer(
        TransactionList(
            items=[
                _applied(
                    {k: v for k, v in row.items() if not k.startswith("outcome_") and k not in ("code", "archived")}
                ).model_copy(update={"archived": row.get("archived", False)})
                if row["id"]
                else _rejected(
                    row["outcome_id"],
                    row["outcome_tracekey"],
                    row["code"],
                    row["outcome_createdat"],
                    row["callersub"],
                    row["callerclient"],
                ).model_copy(update={name: row[f"outcome_{name}"] for name in _REFUSAL_FIGURES})
                for row in rows
            ]
        )
    )


def router(auth: Authenticator) -> APIRouter:
    router = reading_router(auth)
    router.add_api_route(
        "/v1/transactions/{id}",
        get_transaction,
        methods=["GET"],
        response_model=TransactionOut,
        responses=ERRORS,
        summary="A posting by id: applied (with its content) or rejected (with its code)",
    )
    router.add_api_route(
        "/v1/transactions",
        find_transactions,
        methods=["GET"],
        response_model=TransactionList,
        responses=ERRORS,
        summary="Every posting that carried a tracekey, applied or rejected (at most `limit`), as by id",
    )
    return router
