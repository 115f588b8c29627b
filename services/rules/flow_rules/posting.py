"""What a posting is, shared by ingest (which accepts it) and the engine (which applies it)."""

import json
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator, StringConstraints, WithJsonSchema
from pydantic_core import PydanticCustomError

from .codes import Code
from .limits import (
    ACCOUNT_PATTERN,
    AMOUNT_PATTERN,
    BRANCH_PATTERN,
    DATE_PATTERN,
    MAX_AMOUNT_DIGITS,
    MAX_DETAILS_DEPTH,
    MAX_EVENTCODE,
    MAX_TEXT,
    TEXT_PATTERN,
    UUID_PATTERN,
    anchored,
)

__all__ = [
    "Account",
    "Amount",
    "Branch",
    "CanonicalUUID",
    "Caller",
    "decimal_integer",
    "IsoDate",
    "JsonObject",
    "Text",
    "PostingIn",
    "PostingMessage",
    "validation_code",
]

# Every field takes exactly one JSON type, in one canonical form, and nothing is coerced (no number
# read from a string or written as one, no bool as an int, no timestamp as a date): the rules of the
# README's API section. Values FLOW itself builds in Python (UUID, date, Decimal objects) pass too.
Branch = Annotated[str, StringConstraints(strict=True, pattern=BRANCH_PATTERN)]
Account = Annotated[str, StringConstraints(strict=True, pattern=ACCOUNT_PATTERN)]
Text = Annotated[str, StringConstraints(strict=True, pattern=TEXT_PATTERN)]

_AMOUNT = re.compile(anchored(AMOUNT_PATTERN))
_UUID = re.compile(anchored(UUID_PATTERN))
_DATE = re.compile(anchored(DATE_PATTERN))
_CENTS = Decimal("0.01")


def _amount(value: Any) -> Decimal:
    """Money as a JSON string in its one canonical form, `^(0|[1-9][0-9]{0,12})\\.[0-9]{2}$` above 0
    (numeric(15,2)): "150.25", "10.00"; never a JSON number (it would pass through a binary float),
    no sign, exponent, blank, leading zero, nor another number of decimals. Read straight into a Decimal."""
    if type(value) is str and _AMOUNT.match(value):
        amount = Decimal(value)
        if amount > 0:
            return amount
    elif (
        type(value) is Decimal
        and value.is_finite()
        and 0 < value < 10**MAX_AMOUNT_DIGITS
        and value == value.quantize(_CENTS)
    ):
        return value.quantize(_CENTS)
    raise PydanticCustomError("amount_form", Code.INVALID_AMOUNT.message)


def _uuid_form(value: Any) -> Any:
    """A UUID as 36 lowercase characters, 8-4-4-4-12 hexadecimal digits and hyphens (RFC 9562's form),
    nothing else: no capitals, braces, urn:uuid: or 32 digits without hyphens. (pydantic then reads it.)"""
    if (type(value) is str and _UUID.match(value)) or type(value) is UUID:
        return value
    raise PydanticCustomError("uuid_form", "must be a UUID in lowercase 8-4-4-4-12 form")


def _date_form(value: Any) -> Any:
    """A calendar date as YYYY-MM-DD exactly: no time, week or ordinal forms, no timestamps. (pydantic
    then reads it, and refuses a day the calendar does not have.)"""
    if (type(value) is str and _DATE.match(value)) or type(value) is date:
        return value
    raise PydanticCustomError("date_form", "must be a calendar date as YYYY-MM-DD")


_STRICT_JSON = json.JSONEncoder(ensure_ascii=False, allow_nan=False)  # refuses NaN and infinities
_MAX_DOUBLE = 1.7976931348623157e308
_LONG_DIGITS = re.compile(r"[0-9]{309}")


def _huge_int(value: Any) -> bool:
    """Whether `value` holds an integer beyond a double's range (which JSON readers cannot take)."""
    if type(value) is int:
        return not -_MAX_DOUBLE <= value <= _MAX_DOUBLE
    if type(value) in (dict, list):
        return any(_huge_int(inner) for inner in (value.values() if type(value) is dict else value))
    return False


def _nesting(value: Any, limit: int) -> bool:
    """Whether objects and arrays in `value` nest at most `limit` deep."""
    level, here = 0, [value]
    while here:
        level += 1
        if level > limit:
            return False
        here = [
            inner
            for outer in here
            for inner in (outer.values() if type(outer) is dict else outer)
            if type(inner) in (dict, list)
        ]
    return True


def _json_object(value: Any) -> dict[str, Any]:
    """A JSON object whose every value JSON can carry: no NaN or infinities, no number beyond a double's
    range, no lone surrogate in a string (the strict body parser leaves those for the field to refuse),
    objects and arrays nested at most MAX_DETAILS_DEPTH deep."""
    if type(value) is dict:
        try:
            text = _STRICT_JSON.encode(value)
            text.encode()
        except (TypeError, ValueError, RecursionError):
            pass
        else:
            if (len(text) < 2 * MAX_DETAILS_DEPTH or _nesting(value, MAX_DETAILS_DEPTH)) and not (
                _LONG_DIGITS.search(text) and _huge_int(value)
            ):
                return value
    raise PydanticCustomError(
        "json_object",
        "must be a JSON object of JSON values (no NaN, infinity or number beyond "
        f"a double's range), nested at most {MAX_DETAILS_DEPTH} deep",
    )


_DECIMAL_INTEGER = re.compile(r"(0|[1-9][0-9]{0,9})\Z")


def decimal_integer(low: int, high: int) -> tuple[PlainValidator, WithJsonSchema]:
    """A path or query parameter that is an integer from `low` to `high`, written in plain decimal
    digits: no sign, blank, leading zero, underscore, exponent or fraction ("+5", " 5", "05", "5.0").
    Its metadata, for `Annotated[int, *decimal_integer(1, 1000), Query()]`."""

    def check(value: Any) -> int:
        if type(value) is str and _DECIMAL_INTEGER.match(value):
            value = int(value)
        if type(value) is int and low <= value <= high:
            return value
        raise PydanticCustomError(
            "decimal_integer",
            "must be an integer from {low} to {high} in plain decimal digits",
            {"low": low, "high": high},
        )

    return PlainValidator(check), WithJsonSchema({"type": "integer", "minimum": low, "maximum": high})


Amount = Annotated[
    Decimal,
    PlainValidator(_amount),
    WithJsonSchema({"type": "string", "pattern": AMOUNT_PATTERN, "examples": ["150.25"]}),
]
CanonicalUUID = Annotated[
    UUID, BeforeValidator(_uuid_form), WithJsonSchema({"type": "string", "format": "uuid", "pattern": UUID_PATTERN})
]
IsoDate = Annotated[
    date, BeforeValidator(_date_form), WithJsonSchema({"type": "string", "format": "date", "pattern": DATE_PATTERN})
]
JsonObject = Annotated[
    dict[str, Any], PlainValidator(_json_object), WithJsonSchema({"type": "object", "additionalProperties": True})
]
# What the queue carries (PostingMessage): numeric(15,2), as the engine (flow_engine.message) decodes it.
_QueuedAmount = Annotated[Decimal, Field(gt=0, max_digits=MAX_AMOUNT_DIGITS + 2, decimal_places=2, allow_inf_nan=False)]


class PostingIn(BaseModel):
    """A debit or credit impact on one account, as a client posts it."""

    model_config = ConfigDict(extra="forbid")

    id: CanonicalUUID | None = Field(None, description="Idempotency key; ingest draws one when absent")
    branch: Branch = Field(examples=["0001"])
    account: Account = Field(examples=["000123456"])
    amount: Amount
    debitcredit: Literal["D", "C"]
    eventcode: int = Field(strict=True, gt=0, le=MAX_EVENTCODE)
    description: Text | None = Field(None, max_length=MAX_TEXT)
    tracekey: CanonicalUUID | None = Field(
        None, description="Ties every record of one execution together; drawn when absent"
    )
    details: JsonObject | None = Field(None, description="Extra data owned by the origin")
    dateref: IsoDate = Field(description="Reference date; retroactive up to the configured window")


class Caller(BaseModel):
    """Who posted, as ingest verified the token: its subject and its client (azp, client_id or appid)."""

    model_config = ConfigDict(extra="forbid")

    sub: Text | None = None
    client: Text | None = None


class PostingMessage(PostingIn):
    """A posting as it travels on FlowRequest: id and tracekey settled, when ingest accepted it, and
    who posted it (`caller`: absent in older messages, and when authentication is disabled).

    Ingest builds it from a PostingIn it accepted; it keeps the rules messages already on the queue
    were written under (the engine's decoder, flow_engine.message, is tied to it by tests/test_message.py).
    """

    id: UUID
    tracekey: UUID
    amount: _QueuedAmount
    eventcode: int = Field(gt=0, le=MAX_EVENTCODE)
    details: dict[str, Any] | None = None
    dateref: date
    acceptedat: datetime
    caller: Caller | None = None  # not part of the fingerprint: a retry by another caller is the same posting
    # The content's fingerprint (flow_rules.fingerprint), computed once, by ingest; absent in messages
    # written before it travelled (the engine computes it for those).
    fingerprint: UUID | None = None


_LOCATIONS = {"body", "path", "query", "header"}
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


def validation_code(
    errors: Sequence[Mapping[str, Any]], field_codes: dict[str, Code] = _FIELD_CODES, default: Code = Code.INVALID_BODY
) -> Code:
    """The code for the first validation error (pydantic's error list, as FastAPI reports it)."""
    for error in errors:
        if error.get("type") == "extra_forbidden":
            return Code.UNKNOWN_FIELD
        fields = [part for part in error.get("loc", ()) if isinstance(part, str) and part not in _LOCATIONS]
        if fields and fields[0] in field_codes:
            return field_codes[fields[0]]
    return default
