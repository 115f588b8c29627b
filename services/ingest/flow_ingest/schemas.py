"""What the ingest API takes and answers."""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from flow_rules.limits import MAX_BATCH_ITEMS, MAX_CHOSEN_EVENTCODE, MAX_TEXT
from flow_rules.posting import Text

__all__ = ["Accepted", "BatchIn", "BatchItem", "BatchOut", "EventIn", "EventPatch"]


class Accepted(BaseModel):
    id: str
    tracekey: str
    status: Literal["accepted"] = "accepted"


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    items: list[Any] = Field(
        description=f"Up to {MAX_BATCH_ITEMS:,} postings, each as for POST /v1/transactions; each is judged on its own"
    )


class BatchItem(BaseModel):
    index: int
    status: Literal["accepted", "rejected", "failed"]
    id: str | None = None
    tracekey: str | None = None
    code: str | None = None
    message: str | None = None


class BatchOut(BaseModel):
    accepted: int
    rejected: int
    failed: int = Field(description="Not published for a passing fault: send these items again (same id)")
    items: list[BatchItem]


class EventIn(BaseModel):
    # strict: code a JSON integer, flags JSON true or false, description a JSON string; nothing coerced.
    model_config = ConfigDict(extra="forbid", strict=True)

    code: int | None = Field(
        None, gt=0, le=MAX_CHOSEN_EVENTCODE, description=f"1 to {MAX_CHOSEN_EVENTCODE}; drawn when absent"
    )
    description: Text = Field(min_length=1, max_length=MAX_TEXT)
    active: bool = True
    allowdebit: bool = True
    allowcredit: bool = True
    forced: bool = Field(
        False,
        description="debits of this event (court orders, fees) are applied whatever the "
        "account's overdraft limit, never whatever its status",
    )


class EventPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    description: Text | None = Field(None, min_length=1, max_length=MAX_TEXT)
    active: bool | None = None
    allowdebit: bool | None = None
    allowcredit: bool | None = None
    forced: bool | None = None
