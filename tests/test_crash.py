"""Engines killed with SIGKILL again and again while postings flow: at the end every posting is
decided exactly once (applied, or refused for funds on the accounts with an overdraft limit),
reconciliation finds nothing wrong, no limited account's day ends below its limit, and every
outcome reached FlowCallback."""

import asyncio
import json
import random
import signal
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from flow_kit.db import create_engine
from tests.conftest import aws_session
from tests.engine_helpers import assert_matches_reference, balance_rows
from tests.reference import Posted, ReferenceLedger
from tools.devstack.processes import free_port
from tools.devstack.stack import Stack

pytestmark = pytest.mark.integration

POSTINGS = 20_000
ACCOUNTS = 500
LIMITED = 50  # the first accounts are registered with an overdraft limit: their debits race it
LIMIT = Decimal("1000.00")
EXTRA_ENGINES = 2
_COUNT_DECIDED = text("SELECT count(*) FROM flow.outcome WHERE id = ANY(CAST(:ids AS uuid[]))")
_DECIDED = text("SELECT id::text, code FROM flow.outcome WHERE id = ANY(CAST(:ids AS uuid[]))")


def _messages(branch: str, rng: random.Random) -> list[dict]:
    now = datetime.now(UTC)
    return [{
        "id": str(uuid.uuid4()), "tracekey": str(uuid.uuid4()), "branch": branch,
        "account": f"{rng.randrange(ACCOUNTS):09d}", "amount": f"{rng.randrange(1, 10**6) / 100:.2f}",
        "debitcredit": rng.choice("DC"), "eventcode": 1,
        "dateref": (now.date() - timedelta(days=rng.choice([0, 0, 0, 1, 3, 7]))).isoformat(),
        "acceptedat": now.isoformat(),
    } for _ in range(POSTINGS)]


async def _publish_all(stack: Stack, messages: list[dict]) -> None:
    """What ingest does, ten at a time and in parallel, to put volume on the queue quickly."""
    session = aws_session()
    async with session.client("sns", endpoint_url=stack.aws_endpoint) as sns:
        chunks = [messages[n:n + 10] for n in range(0, len(messages), 10)]
        limit = asyncio.Semaphore(8)

        async def send(chunk):
            async with limit:
                response = await sns.publish_batch(TopicArn=stack.outputs["RequestTopicArn"], PublishBatchRequestEntries=[
                    {"Id": str(n), "Message": json.dumps(m)} for n, m in enumerate(chunk)])
                assert not response.get("Failed")

        await asyncio.gather(*(send(chunk) for chunk in chunks))


def _dlq_depth(stack: Stack) -> str:
    import boto3

    sqs = boto3.client("sqs", endpoint_url=stack.aws_endpoint, region_name="us-east-1",
                       aws_access_key_id="test", aws_secret_access_key="test")
    return sqs.get_queue_attributes(QueueUrl=stack.outputs["DlqUrl"],
                                    AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]["ApproximateNumberOfMessages"]


async def test_sigkilled_engines_lose_and_double_nothing(stack, callbacks, report):
    rng = random.Random(7)
    branch = f"K{uuid.uuid4().hex[:8]}"
    messages = _messages(branch, rng)
    ports = [free_port() for _ in range(EXTRA_ENGINES)]
    engines = {port: stack.start_engine(port) for port in ports}
    db = create_engine(stack.database_url, 2)
    limited = {f"{n:09d}" for n in range(LIMITED)}
    ids = [uuid.UUID(m["id"]) for m in messages]
    async with db.begin() as conn:
        await conn.exec_driver_sql(
            "INSERT INTO flow.account (branch, account, overdraftlimit, tracekey, updatetracekey) "
            f"SELECT '{branch}', lpad(n::text, 9, '0'), {LIMIT}, gen_random_uuid(), gen_random_uuid() "
            f"FROM generate_series(0, {LIMITED - 1}) AS n")
    kills = 0
    started = time.perf_counter()
    try:
        publishing = asyncio.create_task(_publish_all(stack, messages))
        collecting = asyncio.create_task(callbacks.collect({m["tracekey"] for m in messages}, timeout=400, pollers=6))
        while True:
            await asyncio.sleep(rng.uniform(1.0, 2.5))
            async with db.connect() as conn:
                done = (await conn.execute(_COUNT_DECIDED, {"ids": ids})).scalar()
            if done >= POSTINGS and publishing.done():
                break
            assert time.perf_counter() - started < 400, \
                f"only {done} of {POSTINGS} applied; dead-letter queue holds {_dlq_depth(stack)}"
            port = rng.choice(ports)
            engines[port].send_signal(signal.SIGKILL)
            engines[port].wait()
            stack.engines.remove(engines[port])
            kills += 1
            engines[port] = await asyncio.to_thread(stack.start_engine, port)
        await publishing
        applied_at = time.perf_counter()
        outcomes = await collecting
        reported_at = time.perf_counter()

        async with db.connect() as conn:
            codes = dict((await conn.execute(_DECIDED, {"ids": ids})).all())
        refused = {m["id"] for m in messages if codes[m["id"]] == "R028"}
        assert set(codes.values()) <= {"R000", "R028"} and len(refused) > 100
        assert all(m["account"] in limited and m["debitcredit"] == "D" for m in messages if m["id"] in refused)
        reference = ReferenceLedger()
        for m in messages:
            if m["id"] not in refused:
                reference.apply(Posted(m["id"], branch, m["account"], Decimal(m["amount"]),
                                       m["debitcredit"], datetime.fromisoformat(m["dateref"]).date()))
        rows = await balance_rows(db, branch)
        # A debit is applied only if every day from its dateref on holds; credits only raise balances.
        assert all(credit - debit >= -LIMIT for (account, _), (_, _, debit, credit) in rows.items() if account in limited)
        await assert_matches_reference(db, reference, branch)
        missing = [m for m in messages if m["tracekey"] not in outcomes]
        assert not missing, f"{len(missing)} outcomes never reached FlowCallback"
        assert all(o["code"] == codes[m["id"]] for m in messages for o in outcomes[m["tracekey"]])
        repeats = sum(len(outcomes[m["tracekey"]]) - 1 for m in messages)
        report(f"crash: {POSTINGS} postings ({len(refused)} refused for funds), {kills} SIGKILLs of {EXTRA_ENGINES} "
               f"extra engines: all decided once after "
               f"{applied_at - started:.1f} s, all callbacks after {reported_at - started:.1f} s "
               f"({repeats} repeated callbacks, deduplicable by messageid)")
    finally:
        for proc in engines.values():
            if proc in stack.engines:
                stack.engines.remove(proc)
            proc.kill()
            proc.wait()
        await db.dispose()
