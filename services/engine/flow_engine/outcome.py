"""What happened to one posting, as recorded in flow.outcome and announced on FlowCallback."""

from typing import NamedTuple
from uuid import UUID, uuid5

from flow_kit.codes import Code

__all__ = ["Outcome"]

_MESSAGE_IDS = UUID("6f1c0e52-3b0e-4d6c-9a57-0c2b8f1f4d10")  # namespace of callback message ids


class Outcome(NamedTuple):  # a tuple: the engine makes one per posting
    id: UUID
    tracekey: UUID
    code: Code

    @property
    def status(self) -> str:
        return "applied" if self.code is Code.APPLIED else "rejected"

    @property
    def messageid(self) -> UUID:
        """The same for every announcement of this outcome, so consumers can drop repeats."""
        return uuid5(_MESSAGE_IDS, f"{self.id}:{self.code.value}:{self.tracekey}")

    def callback(self) -> dict:
        """The message announced on FlowCallback."""
        return {"messageid": str(self.messageid), "id": str(self.id), "tracekey": str(self.tracekey),
                "status": self.status, "code": self.code.value, "message": self.code.message}
