"""Every accepted posting is decided, and none waits behind another: a posting the database refuses
is isolated from its batch (the rest applied in the same pass) and held, never dead-lettered; one
that breaks a ledger limit is rejected with its code and announced; a database outage longer than
visibility timeout x maxReceiveCount sends nothing to the dead-letter queue."""

import asyncio
import json
import shutil
import tempfile
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text

from flow_engine.consumer import Consumer
from flow_engine.settings import EngineSettings
from flow_kit.db import create_engine
from tests.engine_helpers import TODAY, posting
from tests.test_consumer import send, waiting
from tests.waiting import wait_until_async
from tools.devstack.postgres import PostgresCluster
from tools.devstack.processes import free_port
from tools.devstack.stack import new_database

LARGEST = "9999999999999.99"  # the largest posting


async def queue_with_dlq(sqs, visibility: int, max_receives: int) -> tuple[str, str]:
    name = f"test-decided-{uuid.uuid4().hex[:10]}"
    dlq = (await sqs.create_queue(QueueName=f"{name}-dlq"))["QueueUrl"]
    dlq_arn = (await sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"]))["Attributes"]["QueueArn"]
    queue = (await sqs.create_queue(QueueName=name, Attributes={
        "VisibilityTimeout": str(visibility),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receives)})}))["QueueUrl"]
    return queue, dlq


def engine_for(stack, sqs, queue: str, database_url: str, **settings) -> Consumer:
    settings = EngineSettings(database_url=database_url, queue_url=queue, wait_seconds=1,
                              callback_topic_arn=stack.outputs["CallbackTopicArn"], **settings)
    return Consumer(settings, create_engine(database_url, 3), sqs)


async def gather_all(engine: Consumer, count: int) -> list[dict]:
    """Batches received until `count` messages are in hand (one batch may not bring them all)."""
    batch: list[dict] = []

    async def received() -> int:
        batch.extend(await engine.gather_batch())
        return len(batch)

    await wait_until_async(received, f"{count} messages received", 60, holds=lambda n: n >= count, interval=0)
    return batch


def held_total() -> float:
    return REGISTRY.get_sample_value("flow_engine_held_postings_total") or 0.0


async def test_a_posting_the_database_refuses_is_held_and_the_rest_of_its_batch_applied(stack, sqs, fresh_database):
    db = create_engine(fresh_database, 1)
    async with db.begin() as conn:  # the database refuses one posting, for a reason FLOW does not know
        await conn.execute(text("""
            CREATE FUNCTION flow.refuse_me() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'refused for the test' USING ERRCODE = 'XX001'; END $$"""))
        await conn.execute(text("""
            CREATE TRIGGER refuse_me BEFORE INSERT ON flow.transaction
                FOR EACH ROW WHEN (NEW.description = 'refuse me') EXECUTE FUNCTION flow.refuse_me()"""))
    queue, dlq = await queue_with_dlq(sqs, visibility=30, max_receives=1)
    sent = [posting(account=f"{n % 40:09d}", description="refuse me" if n == 321 else None) for n in range(500)]
    await send(sqs, queue, [p.model_dump_json() for p in sent])
    engine = engine_for(stack, sqs, queue, fresh_database, batch_size=500, hold_seconds=2)
    before = held_total()

    batch = await gather_all(engine, 500)
    await engine.handle(batch)  # one pass: 499 applied, one held

    async with db.connect() as conn:
        applied = {r.id for r in await conn.execute(text("SELECT id FROM flow.transaction"))}
        outcomes = (await conn.execute(text("SELECT count(*) FROM flow.outcome"))).scalar()
    assert applied == {p.id for p in sent} - {sent[321].id} and outcomes == 499
    assert held_total() == before + 1
    await asyncio.sleep(3)  # the held posting is back in the queue, as a new message: not dead-lettered
    assert await waiting(sqs, queue) == 1 and await waiting(sqs, dlq) == 0

    again = await engine.gather_batch()  # still refused: held again, still not dead-lettered
    assert [json.loads(m["Body"])["id"] for m in again] == [str(sent[321].id)]
    await engine.handle(again)
    assert held_total() == before + 2
    async with db.begin() as conn:  # the cause is fixed
        await conn.execute(text("DROP TRIGGER refuse_me ON flow.transaction"))
    await asyncio.sleep(3)
    await engine.handle(await engine.gather_batch())
    async with db.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM flow.transaction"))).scalar() == 500
    assert await waiting(sqs, queue) == 0 and await waiting(sqs, dlq) == 0
    await db.dispose()


async def test_a_failed_batch_quotes_no_posting_content(stack, sqs, fresh_database):
    db = create_engine(fresh_database, 1)
    async with db.begin() as conn:  # every posting refused: the error is what the engine would log
        await conn.execute(text("CREATE FUNCTION flow.refuse_all() RETURNS trigger LANGUAGE plpgsql AS $$ "
                                "BEGIN RAISE EXCEPTION 'refused' USING ERRCODE = 'XX001'; END $$"))
        await conn.execute(text("CREATE TRIGGER refuse_all BEFORE INSERT ON flow.transaction "
                                "FOR EACH ROW EXECUTE FUNCTION flow.refuse_all()"))
    await db.dispose()
    engine = engine_for(stack, sqs, "http://unused", fresh_database)
    secret = posting(description="salary of A. Person", details={"iban": "GB33BUKB20201555555555"})
    with pytest.raises(Exception) as failed:
        await engine._apply([secret])
    assert "refused" in str(failed.value)
    assert "A. Person" not in str(failed.value) and "GB33" not in str(failed.value)


async def test_a_posting_beyond_the_ledger_limit_is_rejected_with_its_code_and_the_rest_applied(stack, sqs, fresh_database):
    queue, dlq = await queue_with_dlq(sqs, visibility=30, max_receives=1)
    # 100 of the largest credits reach 999,999,999,999,999.00 (the first two alone overflowed numeric(15,2));
    # one more would pass the limit, and a debit after it is fine again.
    sent = [posting(account="000000001", amount=LARGEST) for _ in range(101)]
    sent.append(posting(account="000000001", amount="5.00", debitcredit="D"))
    await send(sqs, queue, [p.model_dump_json() for p in sent])
    engine = engine_for(stack, sqs, queue, fresh_database, batch_size=200)
    batch = await gather_all(engine, len(sent))
    await engine.handle(batch)
    db = create_engine(fresh_database, 1)
    async with db.connect() as conn:
        codes = dict((r.code, r.n) for r in await conn.execute(
            text("SELECT code, count(*) AS n FROM flow.outcome GROUP BY code")))
        balance = (await conn.execute(text("SELECT accumulatedcredit - accumulateddebit FROM flow.balance"))).scalar()
        callbacks = (await conn.execute(text("SELECT array_agg(c) FROM flow.callback_outbox, unnest(codes) c"))).scalar()
    await db.dispose()
    assert codes == {"R000": 101, "R024": 1}
    assert balance == Decimal(LARGEST) * 100 - Decimal("5.00")
    assert sorted(callbacks) == ["R000"] * 101 + ["R024"]  # every outcome announced (no relay runs here)
    assert await waiting(sqs, queue) == 0 and await waiting(sqs, dlq) == 0


async def test_the_ledger_limit_through_the_running_stack(ingest_url, query_url, http, callbacks):
    branch, account = f"L{uuid.uuid4().hex[:6]}", "000000001"
    bodies = [{"id": str(uuid.uuid4()), "tracekey": str(uuid.uuid4()), "branch": branch, "account": account,
               "amount": LARGEST, "debitcredit": "C", "eventcode": 1, "dateref": TODAY.isoformat()} for _ in range(101)]
    response = await http.post(f"{ingest_url}/v1/transactions/batch", json={"items": bodies})
    assert response.status_code == 202, response.text
    outcomes = await callbacks.collect({b["tracekey"] for b in bodies}, timeout=120)
    codes = sorted(o["code"] for b in bodies for o in outcomes[b["tracekey"]][:1])
    assert codes == ["R000"] * 100 + ["R024"]
    [rejected] = [b for b in bodies if outcomes[b["tracekey"]][0]["code"] == "R024"]
    read = (await http.get(f"{query_url}/v1/transactions/{rejected['id']}")).json()
    assert (read["status"], read["code"]) == ("rejected", "R024")
    await asyncio.sleep(1)
    balances = (await http.get(f"{query_url}/v1/accounts/{branch}/{account}/balances")).json()
    assert Decimal(balances["items"][-1]["balance"]) == Decimal(LARGEST) * 100


async def test_a_database_outage_longer_than_every_delivery_sends_nothing_to_the_dlq(stack, sqs):
    state = Path(tempfile.mkdtemp(prefix="flow-outage-"))
    state.chmod(0o755)
    cluster = PostgresCluster(state / "data", free_port(), fast=True)
    cluster.start()
    try:
        url = await new_database(cluster.url.rsplit("/", 1)[0], "flow")
        queue, dlq = await queue_with_dlq(sqs, visibility=2, max_receives=2)  # dead-lettered after 4 s of failing
        sent = [posting(account=f"{n:09d}") for n in range(50)]
        cluster.stop()
        await send(sqs, queue, [p.model_dump_json() for p in sent])
        engine = engine_for(stack, sqs, queue, url, pollers=1, db_retry_attempts=2)
        poller = asyncio.create_task(engine.run(0))
        await asyncio.sleep(15)  # the primary stays down for 3 x visibility x maxReceiveCount
        assert await waiting(sqs, dlq) == 0
        cluster.start()
        try:
            await wait_until_async(lambda: waiting(sqs, queue), "the queue to drain", 60, holds=lambda n: n == 0,
                                   interval=1)
        finally:
            engine.stop()
            await poller
        db = create_engine(url, 1)
        async with db.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM flow.transaction"))).scalar() == 50
        await db.dispose()
        assert await waiting(sqs, queue) == 0 and await waiting(sqs, dlq) == 0
    finally:
        cluster.stop()
        shutil.rmtree(state, ignore_errors=True)
