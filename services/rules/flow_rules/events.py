"""An event of the catalogue as the APIs answer it (ingest writes the catalogue, query reads it)."""

from datetime import datetime

from pydantic import BaseModel

__all__ = ["EventOut"]


class EventOut(BaseModel):
    code: int
    description: str
    active: bool  # inactive events receive no new postings
    allowdebit: bool
    allowcredit: bool
    forced: bool = False  # its debits are applied whatever the account's overdraft limit (not its status)
    createdat: datetime
    updatedat: datetime
