"""What happened to one posting, as recorded in flow.outcome and announced on FlowCallback."""

from datetime import date
from decimal import Decimal
from typing import NamedTuple
from uuid import UUID, uuid5

from flow_rules.codes import Code

__all__ = ["Outcome", "figures"]

_MESSAGE_IDS = UUID("6f1c0e52-3b0e-4d6c-9a57-0c2b8f1f4d10")  # namespace of callback message ids


class Outcome(NamedTuple):  # a tuple: the engine makes one per posting
    id: UUID
    tracekey: UUID
    code: Code
    # Figures for clients, money as strings: an applied posting's `balance` and `available` (its
    # account's, as of today after its batch; available null without a limit); a debit refused for
    # funds (R028) its `available`, `shortfall` and `breakday`. None: none recorded.
    figures: dict | None = None

    @property
    def status(self) -> str:
        return "applied" if self.code is Code.APPLIED else "rejected"

    @property
    def messageid(self) -> UUID:
        """The same for every announcement of this outcome, so consumers can drop repeats."""
        return uuid5(_MESSAGE_IDS, f"{self.id}:{self.code.value}:{self.tracekey}")

    def callback(self) -> dict:
        """The message announced on FlowCallback."""
        message = {
            "messageid": str(self.messageid),
            "id": str(self.id),
            "tracekey": str(self.tracekey),
            "status": self.status,
            "code": self.code.value,
            "message": self.code.message,
        }
        if self.figures:
            message.update(self.figures)
        return message


def figures(
    code: Code,
    balance: Decimal | None,
    available: Decimal | None,
    refused_available: Decimal | None,
    shortfall: Decimal | None,
    breakday: date | None,
) -> dict | None:
    """The figures a callback carries, from the outbox's columns (see Outcome.figures)."""
    if code is Code.APPLIED and balance is not None:
        return {"balance": str(balance), "available": None if available is None else str(available)}
    if code is Code.INSUFFICIENT_FUNDS and shortfall is not None:
        return {
            "available": str(refused_available),
            "shortfall": str(shortfall),
            "breakday": None if breakday is None else breakday.isoformat(),
        }
    return None
