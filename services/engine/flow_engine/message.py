"""Decoding FlowRequest messages: the engine's hot path, so msgspec rather than pydantic.

Ingest validates every posting with `flow_rules.posting.PostingMessage` (pydantic) and publishes it;
the engine decodes each body again, to set aside what is not a posting (it goes to the DLQ) and to
get typed values. msgspec does that about four times faster. The rules are PostingMessage's, checked
against it by tests/test_message.py: whatever this accepts, PostingMessage accepts with equal values,
so nothing that PostgreSQL could refuse reaches a batch. It is stricter on lax forms ingest never
writes (numbers in strings, dates as timestamps), which go to the DLQ.
"""

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec

from flow_rules.limits import (
    ACCOUNT_PATTERN,
    BRANCH_PATTERN,
    MAX_AMOUNT_DIGITS,
    MAX_EVENTCODE,
    MAX_TEXT,
    TEXT_PATTERN,
    UUID_PATTERN,
    anchored,
)
from flow_rules.posting import PostingMessage

__all__ = ["DecodeError", "Posting", "QueuedCaller", "QueuedPosting", "decode"]

DecodeError = msgspec.DecodeError  # ValidationError is one too

# PostingIn's patterns, in Python's re (msgspec's engine): anchored by \A and \Z, because `$` would
# let a trailing newline through where pydantic's Rust regex does not.
_Branch = Annotated[str, msgspec.Meta(pattern=anchored(BRANCH_PATTERN))]
_Account = Annotated[str, msgspec.Meta(pattern=anchored(ACCOUNT_PATTERN))]
_Text = Annotated[str, msgspec.Meta(pattern=anchored(TEXT_PATTERN), max_length=MAX_TEXT)]
_EventCode = Annotated[int, msgspec.Meta(gt=0, le=MAX_EVENTCODE)]
_CENT, _TOO_BIG = Decimal("0.01"), Decimal(10) ** MAX_AMOUNT_DIGITS  # numeric(15,2): 13 whole digits, 2 places


_CallerText = Annotated[str, msgspec.Meta(pattern=anchored(TEXT_PATTERN))]
# The fingerprint in the one form ingest writes (PostgreSQL reads it as uuid). Kept as text: the engine
# only passes it on, and a uuid.UUID a posting is one more object for the garbage collector to track.
_Fingerprint = Annotated[str, msgspec.Meta(pattern=anchored(UUID_PATTERN))]


class QueuedCaller(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """Who posted; the attributes of flow_rules.posting.Caller."""

    sub: _CallerText | None = None
    client: _CallerText | None = None


class QueuedPosting(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A posting as it travels on FlowRequest; the attributes of PostingMessage."""

    id: UUID
    tracekey: UUID
    branch: _Branch
    account: _Account
    amount: Decimal
    debitcredit: Literal["D", "C"]
    eventcode: _EventCode
    dateref: date
    acceptedat: datetime
    description: _Text | None = None
    details: dict[str, Any] | None = None
    caller: QueuedCaller | None = None  # absent in messages written before callers were recorded
    fingerprint: _Fingerprint | None = None  # absent in messages written before it travelled

    def __post_init__(self) -> None:
        _check_amount(self.amount)


def _check_amount(amount: Decimal) -> None:
    """pydantic's Decimal(gt=0, max_digits=15, decimal_places=2), which judges the normalized value:
    for a positive amount, 13 whole digits at most is `< 10**13`, 2 places at most is a whole number
    of cents (and 150.2500 is fine)."""
    if not amount.is_finite() or amount <= 0:
        raise ValueError("amount must be a number greater than 0")
    if amount >= _TOO_BIG:
        raise ValueError("amount must have at most 13 digits before the decimal point")
    if amount != amount.quantize(_CENT):
        raise ValueError("amount must have at most 2 decimal places")


_DECODER = msgspec.json.Decoder(QueuedPosting)


def decode(body: str | bytes) -> QueuedPosting:
    """The posting in a queue message body; raises DecodeError when it is not one."""
    return _DECODER.decode(body)


# What the engine applies: decoded messages, or PostingMessage objects (tests and tools build those).
Posting = QueuedPosting | PostingMessage
