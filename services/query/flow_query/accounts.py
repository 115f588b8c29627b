"""An account as the query API answers it: its registry row (or the defaults of an account opened by
its first posting), its balance and available balance as of today, and how far behind the primary
the replica was when it answered (one statement, so all of it is one snapshot); and its registry's
audit trail (flow.account_audit, sql/0012), a page at a time."""

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from flow_kit.errors import FlowError
from flow_rules.codes import Code

from .cursor import CursorCodec
from .reads import Reader
from .replica import LAG_SQL
from .schemas import CallerOut

__all__ = [
    "ACCOUNT",
    "ACCOUNT_HISTORY",
    "AccountChange",
    "AccountHistory",
    "AccountState",
    "read_account",
    "read_history",
]

ACCOUNT = f"""
    SELECT a.status, a.blockdebit, a.blockcredit, a.overdraftlimit, a.holder, a.reason, a.createdat, a.updatedat,
           b.balance, b.dateref AS lastmovement, ({LAG_SQL}) AS lag
    FROM (SELECT) one
    LEFT JOIN flow.account a ON a.branch = $1 AND a.account = $2
    LEFT JOIN LATERAL (
        SELECT accumulatedcredit - accumulateddebit AS balance, dateref FROM flow.balance
        WHERE branch = $1 AND account = $2 ORDER BY dateref DESC LIMIT 1) b ON true"""


class AccountState(BaseModel):
    branch: str
    account: str
    registered: bool = Field(description="false: opened by its first posting, not in the registry (active, no limit)")
    status: str = Field(description="active, blocked or closed")
    blockdebit: bool
    blockcredit: bool
    limit: Decimal | None = Field(description="overdraft limit: how far below zero the balance may go; null: none")
    holder: str | None
    reason: str | None = Field(description="why the status last changed")
    balance: Decimal = Field(description="the balance as of today")
    available: Decimal | None = Field(description="balance + limit: what a debit dated today may take; null: no limit")
    lastmovement: date | None = Field(description="the last day with postings")
    createdat: datetime | None
    updatedat: datetime | None
    replica_lag_seconds: float = Field(description="how far the replica that answered replayed behind the primary")


async def read_account(reader: Reader, branch: str, account: str) -> AccountState:
    row = await reader.fetchrow(ACCOUNT, branch, account)  # one row always: the query aggregates
    if row is None or (row["status"] is None and row["balance"] is None):
        raise FlowError(Code.ACCOUNT_NOT_FOUND, 404)
    balance = row["balance"] if row["balance"] is not None else Decimal("0.00")
    limit = row["overdraftlimit"]
    return AccountState(
        branch=branch,
        account=account,
        registered=row["status"] is not None,
        status=row["status"] or "active",
        blockdebit=bool(row["blockdebit"]),
        blockcredit=bool(row["blockcredit"]),
        limit=limit,
        holder=row["holder"],
        reason=row["reason"],
        balance=balance,
        available=None if limit is None else balance + limit,
        lastmovement=row["lastmovement"],
        createdat=row["createdat"],
        updatedat=row["updatedat"],
        replica_lag_seconds=float(row["lag"]),
    )


# One page of an account's trail, oldest first, and one change more (whether a page follows): keyset
# pagination on the trail's id ($3: the last id of the page before, 0 for the first page).
ACCOUNT_HISTORY = """
    SELECT id, change, changedat, callersub, callerclient, tracekey, reason, before::text AS before,
           after::text AS after
    FROM flow.account_audit
    WHERE branch = $1 AND account = $2 AND id > $3
    ORDER BY id
    LIMIT $4::int + 1"""

_MAX_ID = 2**63 - 1  # a bigserial's largest
_FIELD_NAMES = {"overdraftlimit": "limit"}  # the registry's column names, as the API calls them

AccountChangeKind = Literal["open", "change", "block", "unblock", "close", "update", "delete"]


class AccountChange(BaseModel):
    change: AccountChangeKind = Field(
        description="what the admin API did: open, change (limit or holder), block, unblock, close; update or "
        "delete: a change made outside the admin API"
    )
    changedat: datetime
    caller: CallerOut | None = Field(description="who made it (the admin token's subject and client); null: not named")
    tracekey: UUID | None = Field(description="the change's tracekey (the account's updatetracekey); null: a delete")
    reason: str | None = Field(description="the reason given with a block, an unblock or a close")
    before: dict[str, Any] | None = Field(
        description="the fields it changed (status, blockdebit, blockcredit, limit, holder) as they were; every "
        "one of them for a delete, null for an open"
    )
    after: dict[str, Any] | None = Field(
        description="the same fields as they became; every one of them for an open, null for a delete"
    )


class AccountHistory(BaseModel):
    branch: str
    account: str
    items: list[AccountChange] = Field(description="the registry's changes to the account, oldest first")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


def _fields(text: str | None) -> dict[str, Any] | None:
    """A trail row's fields as the API writes them: `limit` for overdraftlimit, money as decimal strings."""
    if text is None:
        return None
    values = json.loads(text, parse_float=Decimal)
    return {
        _FIELD_NAMES.get(name, name): f"{value:.2f}" if name == "overdraftlimit" and value is not None else value
        for name, value in values.items()
    }


async def read_history(
    reader: Reader, cursors: CursorCodec, branch: str, account: str, limit: int, cursor: str | None
) -> AccountHistory:
    # The statements' cursor form carries the last change seen: its day, its time and its id (as a UUID).
    last_id = cursors.decode(cursor)[2].int
    if last_id > _MAX_ID:  # a statement's cursor, not one of a history page
        raise FlowError(Code.INVALID_CURSOR, 422)
    rows = await reader.fetch(ACCOUNT_HISTORY, branch, account, last_id, limit)
    page = rows[:limit]
    items = [
        AccountChange(
            change=row["change"],
            changedat=row["changedat"],
            caller=CallerOut.of(row["callersub"], row["callerclient"]),
            tracekey=row["tracekey"],
            reason=row["reason"],
            before=_fields(row["before"]),
            after=_fields(row["after"]),
        )
        for row in page
    ]
    last = page[-1] if len(rows) > limit else None
    next_cursor = (
        None if last is None else cursors.encode(last["changedat"].date(), last["changedat"], UUID(int=last["id"]))
    )
    return AccountHistory(branch=branch, account=account, items=items, next_cursor=next_cursor)
