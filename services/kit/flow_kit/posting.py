"""What a posting is, shared by ingest (which accepts it) and the engine (which applies it)."""

import hashlib
import json
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from .codes import Code

__all__ = ["Account", "Branch", "Text", "PostingIn", "PostingMessage", "check_dateref", "fingerprint", "validation_code"]

Branch = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{1,10}$")]
Account = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{1,20}$")]
# Free text PostgreSQL can store: no NUL characters.
Text = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$")]
# numeric(15,2): at most 13 integer digits and 2 decimals.
Amount = Annotated[Decimal, Field(gt=0, max_digits=15, decimal_places=2, allow_inf_nan=False)]


class PostingIn(BaseModel):
    """A debit or credit impact on one account, as a client posts it."""

    model_config = ConfigDict(extra="forbid")

    id: UUID | None = Field(None, description="Idempotency key; ingest draws one when absent")
    branch: Branch = Field(examples=["0001"])
    account: Account = Field(examples=["000123456"])
    amount: Amount = Field(examples=["150.25"])
    debitcredit: Literal["D", "C"]
    eventcode: int = Field(gt=0, le=2_147_483_647)
    description: Text | None = Field(None, max_length=200)
    tracekey: UUID | None = Field(None, description="Ties every record of one execution together; drawn when absent")
    details: dict[str, Any] | None = Field(None, description="Extra data owned by the origin")
    dateref: date = Field(description="Reference date; retroactive up to the configured window")


class PostingMessage(PostingIn):
    """A posting as it travels on FlowRequest: id and tracekey settled, and when ingest accepted it."""

    id: UUID
    tracekey: UUID
    acceptedat: datetime


_LOCATIONS = {"body", "path", "query", "header"}
_CENTS = Decimal("0.01")
# Which code a validation failure of each field gets.
_FIELD_CODES = {
    "branch": Code.INVALID_BRANCH,
    "account": Code.INVALID_ACCOUNT,
    "amount": Code.INVALID_AMOUNT,
    "debitcredit": Code.INVALID_DEBITCREDIT,
    "eventcode": Code.INVALID_EVENTCODE,
    "description": Code.INVALID_DESCRIPTION,
    "tracekey": Code.INVALID_TRACEKEY,
    "details": Code.INVALID_DETAILS,
    "id": Code.INVALID_ID,
    "dateref": Code.INVALID_DATEREF,
}


def validation_code(errors: list[dict], field_codes: dict[str, Code] = _FIELD_CODES,
                    default: Code = Code.INVALID_BODY) -> Code:
    """The code for the first validation error (pydantic's error list, as FastAPI reports it)."""
    for error in errors:
        if error.get("type") == "extra_forbidden":
            return Code.UNKNOWN_FIELD
        fields = [part for part in error.get("loc", ()) if isinstance(part, str) and part not in _LOCATIONS]
        if fields and fields[0] in field_codes:
            return field_codes[fields[0]]
    return default


def check_dateref(dateref: date, acceptedat: datetime, window_days: int) -> Code | None:
    """The retroactive window, judged against when the posting was accepted (UTC days)."""
    accepted_day = acceptedat.date()
    if dateref > accepted_day:
        return Code.DATEREF_IN_FUTURE
    if dateref < accepted_day - timedelta(days=window_days):
        return Code.DATEREF_TOO_OLD
    return None


def fingerprint(posting: PostingIn) -> UUID:
    """The posting's content, hashed to 128 bits: tells a redelivery from an id reused for another
    posting. tracekey and acceptedat are left out: a client retrying the same posting may draw new ones.
    """
    details = "" if posting.details is None else json.dumps(posting.details, sort_keys=True, separators=(",", ":"))
    content = "\x1f".join((
        posting.branch, posting.account, str(posting.amount.quantize(_CENTS)), posting.debitcredit,
        str(posting.eventcode), "\x00" if posting.description is None else posting.description, details,
        posting.dateref.isoformat(),
    ))
    return UUID(bytes=hashlib.blake2b(content.encode(), digest_size=16).digest())
