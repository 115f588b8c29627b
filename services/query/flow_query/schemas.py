"""What the query API answers. Money is a decimal string, dates ISO-8601, timestamps UTC."""

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field

from flow_rules.events import EventOut

__all__ = [
    "BalanceAt",
    "BalanceDay",
    "BalanceDays",
    "CallerOut",
    "EventList",
    "Statement",
    "StatementLine",
    "TransactionList",
    "TransactionOut",
]


class CallerOut(BaseModel):
    """Who posted: the token's subject and its client (azp, client_id or Entra's appid)."""

    sub: str | None
    client: str | None

    @classmethod
    def of(cls, sub: str | None, client: str | None) -> "CallerOut | None":
        return None if sub is None and client is None else cls(sub=sub, client=client)


class TransactionOut(BaseModel):
    id: UUID
    status: Literal["applied", "rejected"]
    code: str
    message: str
    tracekey: UUID
    branch: str | None = None
    account: str | None = None
    amount: Decimal | None = None
    debitcredit: Literal["D", "C"] | None = None
    eventcode: int | None = None
    description: str | None = None
    details: dict[str, Any] | None = None
    dateref: date | None = None
    acceptedat: datetime | None = None
    createdat: datetime = Field(description="When the engine handled it")
    caller: CallerOut | None = Field(
        None,
        description="Who posted it; null when not recorded (authentication "
        "disabled, or posted before callers were recorded)",
    )
    archived: bool = Field(False, description="Read from the archive (the data lake): its month has left the database")
    # A debit refused for funds (R028): the figures a program needs.
    available: Decimal | None = Field(
        None,
        description="R028: the most the account could have been debited on "
        "the posting's dateref (balance + limit, lowest day)",
    )
    shortfall: Decimal | None = Field(None, description="R028: amount - available")
    breakday: date | None = Field(None, description="R028: the first day whose balance would have fallen below -limit")


class TransactionList(BaseModel):
    items: list[TransactionOut]


class StatementLine(BaseModel):
    id: UUID
    dateref: date
    amount: Decimal
    debitcredit: Literal["D", "C"]
    eventcode: int
    description: str | None
    tracekey: UUID
    createdat: datetime
    balance: Decimal = Field(description="The account's balance just after this line")


class Statement(BaseModel):
    branch: str
    account: str
    from_: date = Field(serialization_alias="from")
    to: date
    opening_balance: Decimal = Field(description="Balance at the end of the day before `from`")
    closing_balance: Decimal = Field(description="Balance at the end of `to`")
    items: list[StatementLine]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")
    archived: bool = Field(False, description="Lines of archived months on this page were read from the archive")


class BalanceDay(BaseModel):
    dateref: date
    totaldebit: Decimal
    totalcredit: Decimal
    accumulateddebit: Decimal
    accumulatedcredit: Decimal
    balance: Decimal = Field(description="accumulatedcredit - accumulateddebit")
    updatedat: datetime


class BalanceDays(BaseModel):
    branch: str
    account: str
    from_: date = Field(serialization_alias="from")
    to: date
    items: list[BalanceDay]


_Date = date  # for BalanceAt's fields after its field named `date`


class BalanceAt(BaseModel):
    branch: str
    account: str
    date: date
    accumulateddebit: Decimal
    accumulatedcredit: Decimal
    balance: Decimal = Field(description="accumulatedcredit - accumulateddebit at the end of `date`")
    lastmovement: _Date | None = Field(description="The last day on or before `date` with postings")


class EventList(BaseModel):
    items: list[EventOut]
