"""An account as the query API answers it: its registry row (or the defaults of an account opened by
its first posting), its balance and available balance as of today, and how far behind the primary
the replica was when it answered (one statement, so all of it is one snapshot)."""

from datetime import date, datetime
from decimal import Decimal

from pydantic import BaseModel, Field

from flow_rules.codes import Code
from flow_kit.errors import FlowError

from .replica import LAG_SQL
from .reads import Reader

__all__ = ["ACCOUNT", "AccountState", "read_account"]

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
    row = await reader.fetchrow(ACCOUNT, branch, account)
    if row["status"] is None and row["balance"] is None:
        raise FlowError(Code.ACCOUNT_NOT_FOUND, 404)
    balance = row["balance"] if row["balance"] is not None else Decimal("0.00")
    limit = row["overdraftlimit"]
    return AccountState(
        branch=branch, account=account, registered=row["status"] is not None, status=row["status"] or "active",
        blockdebit=bool(row["blockdebit"]), blockcredit=bool(row["blockcredit"]), limit=limit, holder=row["holder"],
        reason=row["reason"], balance=balance, available=None if limit is None else balance + limit,
        lastmovement=row["lastmovement"], createdat=row["createdat"],
        updatedat=row["updatedat"], replica_lag_seconds=float(row["lag"]))
