"""Faults around the engine: poison messages, an SNS outage, a crash between commit and publish,
and the partitions the transaction table needs."""

import uuid

import pytest
from sqlalchemy import text

from flow_engine.callbacks import CallbackPublisher
from flow_engine.relay import CallbackRelay
from flow_kit.db import create_engine
from tests.conftest import TopicListener, aws_session
from tests.engine_helpers import TODAY, apply, posting
from tests.waiting import wait_until_async


@pytest.mark.integration
async def test_a_poison_message_ends_in_the_dlq_without_blocking_the_rest(stack, callbacks):
    good = posting(branch="0003")
    async with aws_session().client("sqs", endpoint_url=stack.aws_endpoint) as sqs:
        queue = stack.outputs["QueueUrl"]
        await sqs.send_message(QueueUrl=queue, MessageBody="{not json")
        await sqs.send_message(QueueUrl=queue, MessageBody=good.model_dump_json())
        seen = await callbacks.collect({str(good.tracekey)}, timeout=30)
        assert seen[str(good.tracekey)][0]["status"] == "applied"
        bodies: list[str] = []

        async def dead_lettered() -> list[str]:
            got = await sqs.receive_message(QueueUrl=stack.outputs["DlqUrl"], WaitTimeSeconds=1, MaxNumberOfMessages=10)
            bodies.extend(m["Body"] for m in got.get("Messages", []))
            return bodies

        await wait_until_async(dead_lettered, "the poison message in the dead-letter queue", 60,
                               holds=lambda got: "{not json" in got, interval=0)


async def _outbox(db) -> list[tuple]:
    """Every callback waiting in the outbox (id, tracekey, code), oldest first."""
    async with db.connect() as conn:
        rows = await conn.execute(text("SELECT ids, tracekeys, codes FROM flow.callback_outbox ORDER BY seq"))
        return [facts for row in rows for facts in zip(row.ids, row.tracekeys, row.codes)]


@pytest.mark.integration
async def test_an_sns_outage_delays_callbacks_and_loses_none(stack, fresh_database):
    """Outcomes committed while their topic is unreachable wait in the outbox; a relay started later
    (as after a crash between commit and publish) publishes them all and cleans up."""
    name = f"FlowCallbackOutage{uuid.uuid4().hex[:6]}"
    topic_arn = f"arn:aws:sns:us-east-1:000000000000:{name}"
    db = create_engine(fresh_database, 2)
    sent = [posting(account=f"{n:09d}") for n in range(25)] + [posting(eventcode=99)]
    await apply(db, sent)
    async with aws_session().client("sns", endpoint_url=stack.aws_endpoint) as sns, \
            aws_session().client("sqs", endpoint_url=stack.aws_endpoint) as sqs:
        relay = CallbackRelay(db, CallbackPublisher(sns, topic_arn))
        assert await relay.relay_once() == (0, 26)  # SNS refuses: the topic is not there
        assert len(await _outbox(db)) == 26

        await sns.create_topic(Name=name)
        queue_url = (await sqs.create_queue(QueueName=f"outage-{uuid.uuid4().hex[:8]}"))["QueueUrl"]
        arn = (await sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"]))["Attributes"]["QueueArn"]
        await sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
        fresh_relay = CallbackRelay(db, CallbackPublisher(sns, topic_arn))
        assert await fresh_relay.relay_once() == (26, 0)
        assert await _outbox(db) == []

        listener = TopicListener(sqs, queue_url)
        seen = await listener.collect({str(p.tracekey) for p in sent}, timeout=30)
        assert len(seen) == 26
        rejected = seen[str(sent[-1].tracekey)][0]
        assert (rejected["status"], rejected["code"]) == ("rejected", "R020")
        assert all(str(uuid.UUID(m["messageid"])) == m["messageid"] for ms in seen.values() for m in ms)
    await db.dispose()


async def test_a_redelivery_does_not_queue_a_second_callback(fresh_database):
    db = create_engine(fresh_database, 2)
    first = posting()
    await apply(db, [first])
    await apply(db, [first])
    assert len(await _outbox(db)) == 1
    reused = first.model_copy(update={"amount": first.amount + 1, "tracekey": uuid.uuid4()})
    await apply(db, [reused])
    queued = await _outbox(db)
    assert [code for _, _, code in queued] == ["R000", "R030"]
    assert queued[1][:2] == (reused.id, reused.tracekey)
    await db.dispose()


async def test_transaction_partitions_exist_ahead_and_are_kept(fresh_database):
    db = create_engine(fresh_database, 2)
    async with db.begin() as conn:
        await conn.execute(text("SELECT flow.maintain_transaction_partitions()"))
        bounds = (await conn.execute(text(
            """SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
               WHERE i.inhparent = 'flow.transaction'::regclass"""))).scalars().all()
        month = TODAY.replace(day=1)
        for ahead in range(4):
            year, index = divmod(month.month - 1 + ahead, 12)
            start = month.replace(year=month.year + year, month=index + 1).isoformat()
            assert any(f"FROM ('{start}')" in b for b in bounds), (start, bounds)
        # The native path, used where pg_partman is missing, makes a month on demand.
        created = (await conn.execute(text("SELECT flow.create_transaction_partitions(DATE '2031-05-17', 1)"))).scalar()
        assert created == 1
        assert (await conn.execute(text("SELECT to_regclass('flow.transaction_p203105') IS NOT NULL"))).scalar()
    # A posting lands in its month's partition (pg_partman names it _pYYYY_MM, the native path _pYYYYMM).
    await apply(db, [posting()])
    async with db.connect() as conn:
        where = (await conn.execute(text("SELECT tableoid::regclass::text FROM flow.transaction"))).scalar()
    assert where.replace("_", "").endswith(TODAY.strftime("p%Y%m")), where
    await db.dispose()
