"""An account's statement: its postings between two reference dates, oldest first, a page at a time,
each line with the balance after it; months that have left the database are read from the archive."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from flow_kit.answers import JSONAnswer
from flow_kit.auth import Authenticator

from ..archive import statement_page
from ..queries import STATEMENT_PAGE
from ..render import statement_answer
from ..schemas import Statement
from ..state import State
from ._shared import (
    ERRORS,
    AccountPath,
    BranchPath,
    FromQuery,
    LimitQuery,
    ToQuery,
    date_range,
    entitled_branch,
    reading_router,
)

__all__ = ["router"]


async def get_statement(
    branch: BranchPath,
    account: AccountPath,
    state: State,
    from_: FromQuery = None,
    to: ToQuery = None,
    limit: LimitQuery = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> JSONAnswer:
    from_, to = date_range(state.settings, from_, to)
    after = state.cursors.decode(cursor)  # checked in full before any query: a bad one costs no connection
    archived = await state.archive.archived_months(from_, to)
    if archived:  # some of the range has left the database: read those months from the archive
        items, more, last, opening, closing = await statement_page(
            state.archive, branch, account, from_, to, limit, after, archived, STATEMENT_PAGE
        )
        return statement_answer(
            branch,
            account,
            from_,
            to,
            opening,
            closing,
            items,
            state.cursors.encode(*last) if more else None,
            archived=True,
        )
    page = await state.reader.fetchrow(STATEMENT_PAGE, branch, account, from_, to, limit, *after)
    assert page is not None  # its aggregates answer one row, lines or none
    more = page["more"]
    return statement_answer(
        branch,
        account,
        from_,
        to,
        page["opening_balance"],
        page["closing_balance"],
        page["items"],
        state.cursors.encode(page["last_dateref"], page["last_createdat"], page["last_id"]) if more else None,
    )


def router(auth: Authenticator) -> APIRouter:
    router = reading_router(auth)
    router.add_api_route(
        "/v1/accounts/{branch}/{account}/statement",
        get_statement,
        methods=["GET"],
        response_model=Statement,
        responses=ERRORS,
        dependencies=[Depends(entitled_branch)],
        summary="An account's postings between two reference dates, oldest first, a page at a time, "
        "each line with the balance after it",
    )
    return router
