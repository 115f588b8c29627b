"""What happened to one posting, as recorded in flow.outcome and announced on FlowCallback."""

import json
from dataclasses import dataclass
from uuid import UUID

from flow_kit.codes import Code

__all__ = ["Outcome"]


@dataclass(frozen=True)
class Outcome:
    id: UUID
    tracekey: UUID
    code: Code

    @property
    def status(self) -> str:
        return "applied" if self.code is Code.APPLIED else "rejected"

    def callback_json(self) -> str:
        return json.dumps(
            {"id": str(self.id), "tracekey": str(self.tracekey), "status": self.status,
             "code": self.code.value, "message": self.code.message}
        )
