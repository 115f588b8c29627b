"""Parallel appliers on one database: the balances equal a serial apply, and nobody deadlocks,
whether the load is spread over many accounts or every posting hits one hot account."""

import asyncio
import random
import uuid

import pytest

from flow_rules.codes import Code
from flow_kit.db import create_engine
from tests.engine_helpers import apply, assert_matches_reference, posting
from tests.reference import Posted, ReferenceLedger

APPLIERS = 4


@pytest.mark.parametrize(("load", "accounts", "postings"), [("uniform", 200, 4000), ("hot", 1, 2000)])
async def test_parallel_appliers_equal_the_reference_without_deadlocks(fresh_database, load, accounts, postings):
    rng = random.Random(load)
    branch = f"C{uuid.uuid4().hex[:8]}"
    sent = [posting(account=f"{rng.randrange(accounts):09d}", amount=f"{rng.randrange(1, 10**7) / 100:.2f}",
                    debitcredit=rng.choice("DC"), days_back=rng.choice([0, 0, 0, 0, 1, 2, 3, 5, 7]), branch=branch)
            for _ in range(postings)]
    # Every posting is delivered twice, to different appliers, as SQS may do.
    deliveries = sent + rng.sample(sent, len(sent))
    queue = [deliveries[n:n + 50] for n in range(0, len(deliveries), 50)]
    rng.shuffle(queue)
    db = create_engine(fresh_database, APPLIERS + 1)

    async def applier() -> list:
        outcomes = []
        while queue:
            # No retry here: a deadlock or serialization failure would fail the test.
            outcomes += await apply(db, queue.pop())
        return outcomes

    try:
        results = await asyncio.gather(*(applier() for _ in range(APPLIERS)))
        reference = ReferenceLedger()
        for p in sent:
            reference.apply(Posted(str(p.id), branch, p.account, p.amount, p.debitcredit, p.dateref))
        assert all(o.code is Code.APPLIED for outcomes in results for o in outcomes)
        await assert_matches_reference(db, reference, branch)
    finally:
        await db.dispose()
