"""What ingest has accepted, by posting id, so a retried request gets the first answer."""

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from flow_rules.posting import PostingMessage

from .coalesce import Coalescer

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

    fingerprint: UUID  # flow_rules.fingerprint, in either of its forms
    tracekey: UUID
    acceptedat: datetime


class RequestLedger:
    """Records are written in transactions the postings of concurrent requests share (see
    coalesce.py): one commit for many requests under load."""

    def __init__(self, db: AsyncEngine, max_in_flight: int, max_items: int = 1000) -> None:
        self._db = db
        self._transactions = Coalescer(self._remember, max_items, max_in_flight)

    async def remember(self, messages: list[PostingMessage]) -> dict[UUID, Earlier]:
        """Records the new ids; returns what was recorded earlier for the others (ids must be unique)."""
        earlier = await self._transactions.submit(messages)
        return {m.id: found for m, found in zip(messages, earlier, strict=True) if found is not None}

    async def _remember(self, messages: list[PostingMessage]) -> list[Earlier | None]:
        """One transaction for postings of several requests. Two requests may carry one id: the first
        is recorded and the second finds it, as if it had come after."""
        first: dict[UUID, PostingMessage] = {}
        for m in messages:
            first.setdefault(m.id, m)
        async with self._db.begin() as conn:
            new = {
                row.id
                for row in await conn.execute(
                    _REMEMBER,
                    {
                        "id": list(first),
                        "fingerprint": [m.fingerprint for m in first.values()],
                        "tracekey": [m.tracekey for m in first.values()],
                        "acceptedat": [m.acceptedat for m in first.values()],
                    },
                )
            }
            seen = [id for id in first if id not in new]
            stored = (
                {
                    row.id: Earlier(row.fingerprint, row.tracekey, row.acceptedat)
                    for row in await conn.execute(_RECALL, {"ids": seen})
                }
                if seen
                else {}
            )
        results: list[Earlier | None] = []
        for m in messages:
            if m.id in stored:
                results.append(stored[m.id])
            elif first[m.id] is not m:  # recorded just now for an earlier request of this group
                recorded = first[m.id]
                assert recorded.fingerprint is not None  # inserted above: flow.request.fingerprint is NOT NULL
                results.append(Earlier(recorded.fingerprint, recorded.tracekey, recorded.acceptedat))
            else:
                results.append(None)
        return results
