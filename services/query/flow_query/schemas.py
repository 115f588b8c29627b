"""What the query API answers. Money is a decimal string, dates ISO-8601, timestamps UTC."""

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, Field

__all__ = ["BalanceDay", "BalanceDays", "Statement", "StatementLine", "TransactionOut"]


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
    createdat: datetime


class StatementLine(BaseModel):
    id: UUID
    dateref: date
    amount: Decimal
    debitcredit: Literal["D", "C"]
    eventcode: int
    description: str | None
    tracekey: UUID
    createdat: datetime


class Statement(BaseModel):
    branch: str
    account: str
    from_: date = Field(serialization_alias="from")
    to: date
    items: list[StatementLine]


class BalanceDay(BaseModel):
    dateref: date
    totaldebit: Decimal
    totalcredit: Decimal
    accumulateddebit: Decimal
    accumulatedcredit: Decimal
    balance: Decimal  # accumulatedcredit - accumulateddebit
    updatedat: datetime


class BalanceDays(BaseModel):
    branch: str
    account: str
    from_: date = Field(serialization_alias="from")
    to: date
    items: list[BalanceDay]
