"""Helpers for tests that drive the engine's SQL directly against a real database."""

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from flow_engine.apply import apply_batch
from flow_engine.outcome import Outcome
from flow_engine.reconcile import find_mismatches
from flow_rules.posting import PostingMessage

NOW = datetime.now(UTC)
TODAY = NOW.date()


def posting(account: str = "000000001", amount: str = "10.00", debitcredit: str = "C", days_back: int = 0,
            eventcode: int = 1, branch: str = "0001", id: uuid.UUID | None = None, **extra) -> PostingMessage:
    return PostingMessage(
        id=id or uuid.uuid4(), tracekey=uuid.uuid4(), branch=branch, account=account, amount=Decimal(amount),
        debitcredit=debitcredit, eventcode=eventcode, dateref=TODAY - timedelta(days=days_back), acceptedat=NOW,
        **extra,
    )


async def apply(db: AsyncEngine, postings: list[PostingMessage], window_days: int = 7) -> list[Outcome]:
    async with db.begin() as conn:
        return await apply_batch(conn, postings, window_days)


async def balance_rows(db: AsyncEngine, branch: str = "0001") -> dict[tuple[str, date], tuple[Decimal, ...]]:
    async with db.connect() as conn:
        rows = await conn.execute(
            text("SELECT account, dateref, totaldebit, totalcredit, accumulateddebit, accumulatedcredit "
                 "FROM flow.balance WHERE branch = :branch"), {"branch": branch})
        return {(r.account, r.dateref): (r.totaldebit, r.totalcredit, r.accumulateddebit, r.accumulatedcredit)
                for r in rows}


async def transaction_ids(db: AsyncEngine, branch: str = "0001") -> list[str]:
    async with db.connect() as conn:
        rows = await conn.execute(text("SELECT id FROM flow.transaction WHERE branch = :branch"), {"branch": branch})
        return sorted(str(r.id) for r in rows)


def expected_rows(reference) -> dict[tuple[str, date], tuple[Decimal, ...]]:
    rows = {}
    for branch, account in reference.accounts():
        for row in reference.daily(branch, account):
            rows[(account, date.fromisoformat(row["dateref"]))] = (
                row["totaldebit"], row["totalcredit"], row["accumulateddebit"], row["accumulatedcredit"])
    return rows


async def assert_matches_reference(db: AsyncEngine, reference, branch: str = "0001") -> None:
    """The database against the reference model (a tests.reference.ReferenceLedger of `branch`): the same
    postings, the same day rows, and nothing reconciliation would report."""
    assert await transaction_ids(db, branch) == sorted(reference.postings)
    assert await balance_rows(db, branch) == expected_rows(reference)
    async with db.connect() as conn:
        assert await find_mismatches(conn, branch=branch) == []
