"""What ingest has accepted, by posting id, so a retried request gets the first answer."""

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from flow_kit.posting import PostingMessage, fingerprint

__all__ = ["RequestLedger"]

_REMEMBER = text(
    """INSERT INTO flow.request (id, fingerprint, tracekey, acceptedat)
       SELECT * FROM unnest(CAST(:id AS uuid[]), CAST(:fingerprint AS uuid[]), CAST(:tracekey AS uuid[]),
                            CAST(:acceptedat AS timestamptz[]))
       ON CONFLICT (id) DO NOTHING
       RETURNING id"""
)
_RECALL = text("SELECT id, fingerprint, tracekey, acceptedat FROM flow.request WHERE id = ANY(CAST(:ids AS uuid[]))")


@dataclass(frozen=True)
class Earlier:
    """A posting accepted before under the same id."""
    fingerprint: UUID
    tracekey: UUID
    acceptedat: datetime


class RequestLedger:
    def __init__(self, db: AsyncEngine) -> None:
        self._db = db

    async def remember(self, messages: list[PostingMessage]) -> dict[UUID, Earlier]:
        """Records the new ids; returns what was recorded earlier for the others (ids must be unique)."""
        if not messages:
            return {}
        async with self._db.begin() as conn:
            new = {row.id for row in await conn.execute(_REMEMBER, {
                "id": [m.id for m in messages], "fingerprint": [fingerprint(m) for m in messages],
                "tracekey": [m.tracekey for m in messages], "acceptedat": [m.acceptedat for m in messages]})}
            seen = [m.id for m in messages if m.id not in new]
            if not seen:
                return {}
            rows = await conn.execute(_RECALL, {"ids": seen})
            return {row.id: Earlier(row.fingerprint, row.tracekey, row.acceptedat) for row in rows}
