"""Ingest's request ledger on the real database: the postings of concurrent requests share
transactions, and every request gets the answer it would have had alone, including two requests
carrying one id in the same transaction."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy.exc import IntegrityError

from flow_ingest.idempotency import RequestLedger
from flow_kit.db import create_engine
from flow_rules.fingerprint import fingerprint
from flow_rules.posting import PostingMessage


def message(id: uuid.UUID | None = None, amount: str = "1.00") -> PostingMessage:
    """A posting as ingest builds it: with its fingerprint."""
    at = datetime.now(UTC)
    built = PostingMessage(id=id or uuid.uuid4(), tracekey=uuid.uuid4(), branch="0008", account="000000001",
                           amount=Decimal(amount), debitcredit="C", eventcode=1, dateref=at.date(), acceptedat=at)
    return built.model_copy(update={"fingerprint": fingerprint(built)})


class CountingDb:
    """The real engine, counting the transactions begun on it."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.transactions = 0

    def begin(self):
        self.transactions += 1
        return self.engine.begin()


@pytest.fixture
async def db(fresh_database):
    engine = create_engine(fresh_database, 5)
    yield CountingDb(engine)
    await engine.dispose()


async def test_concurrent_requests_share_transactions_and_get_their_own_answers(db):
    ledger = RequestLedger(db, max_in_flight=1)
    before = message()
    assert await ledger.remember([before]) == {}
    assert db.transactions == 1

    # The same posting sent again: a client's retry may carry another tracekey, and is accepted later.
    retried = message(id=before.id).model_copy(update={"acceptedat": before.acceptedat + timedelta(seconds=5)})
    fresh = [message() for _ in range(20)]
    twice = message()
    again = twice.model_copy(update={"tracekey": uuid.uuid4()})  # same id, same content, other request
    reused = message(id=twice.id, amount="2.00")  # same id, other content

    answers = await asyncio.gather(*(ledger.remember([m]) for m in fresh[:10]), ledger.remember([retried]),
                                   ledger.remember(fresh[10:] + [twice]), ledger.remember([again]),
                                   ledger.remember([reused]))
    # The first request went alone; the other 13 waited for it and then shared one transaction.
    assert db.transactions == 3
    assert answers[:10] == [{}] * 10 and answers[11] == {}
    assert answers[10][before.id].fingerprint == fingerprint(before)
    assert answers[10][before.id].tracekey == before.tracekey and answers[10][before.id].acceptedat == before.acceptedat
    # Both later requests for `twice`'s id find it, as if they had come after it.
    for answer in answers[12:]:
        assert answer[twice.id].fingerprint == fingerprint(twice) and answer[twice.id].tracekey == twice.tracekey
    assert fingerprint(again) == fingerprint(twice) and fingerprint(reused) != fingerprint(twice)

    # What was recorded is what the requests were told.
    assert await ledger.remember([message(id=fresh[3].id)]) != {}
    assert (await ledger.remember([again]))[twice.id].tracekey == twice.tracekey


async def test_a_failed_transaction_fails_every_request_in_it_and_records_nothing(db):
    ledger = RequestLedger(db, max_in_flight=1)
    sharing = [message() for _ in range(3)]
    async with db.engine.begin() as conn:  # a rule the schema lacks, which one of the postings breaks
        await conn.exec_driver_sql(f"ALTER TABLE flow.request ADD CONSTRAINT test_refuse CHECK (id <> '{sharing[1].id}')")
    first = asyncio.create_task(ledger.remember([message()]))
    await asyncio.sleep(0)  # its transaction is under way: the next three wait and then share one
    results = await asyncio.gather(*(ledger.remember([m]) for m in sharing), return_exceptions=True)
    assert await first == {}
    assert db.transactions == 2
    assert all(isinstance(r, IntegrityError) for r in results), results
    async with db.engine.begin() as conn:
        await conn.exec_driver_sql("ALTER TABLE flow.request DROP CONSTRAINT test_refuse")
    # Nothing of the failed transaction stayed: each id is new when sent again.
    assert await ledger.remember(sharing) == {}
