"""The engine's queue consumer on a queue of its own in LocalStack: a batch fills up to batch_size from
several receive calls at once and no further, and a handled batch is applied and every one of its
messages deleted."""

import uuid

import pytest
from sqlalchemy import text

from flow_engine.consumer import Consumer
from flow_engine.settings import EngineSettings
from flow_kit.db import create_engine
from tests.engine_helpers import posting


@pytest.fixture
async def queue(sqs):
    url = (await sqs.create_queue(QueueName=f"test-consumer-{uuid.uuid4().hex[:12]}",
                                  Attributes={"VisibilityTimeout": "60"}))["QueueUrl"]
    yield url
    await sqs.delete_queue(QueueUrl=url)


def consumer(stack, sqs, queue: str, database_url: str, batch_size: int) -> Consumer:
    settings = EngineSettings(database_url=database_url, queue_url=queue, batch_size=batch_size, wait_seconds=1,
                              callback_topic_arn=stack.outputs["CallbackTopicArn"])
    return Consumer(settings, create_engine(database_url, 2), sqs)


async def send(sqs, queue: str, bodies: list[str]) -> None:
    for start in range(0, len(bodies), 10):
        await sqs.send_message_batch(QueueUrl=queue, Entries=[
            {"Id": str(n), "MessageBody": body} for n, body in enumerate(bodies[start:start + 10])])


async def waiting(sqs, queue: str) -> int:
    attributes = (await sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]))["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


async def test_a_batch_fills_up_to_its_size_and_no_further(stack, sqs, queue, fresh_database):
    await send(sqs, queue, [posting(account=f"{n:09d}").model_dump_json() for n in range(73)])
    gathered = []
    for size in (25, 7, 60):
        batch = await consumer(stack, sqs, queue, fresh_database, size).gather_batch()
        assert len(batch) == min(size, 73 - len(gathered))
        gathered += batch
    assert len({m["MessageId"] for m in gathered}) == 73


async def test_a_handled_batch_is_applied_and_every_message_deleted(stack, sqs, queue, fresh_database):
    sent = [posting(account=f"{n:09d}") for n in range(47)]
    await send(sqs, queue, [p.model_dump_json() for p in sent])
    engine = consumer(stack, sqs, queue, fresh_database, 100)
    batch = await engine.gather_batch()
    assert len(batch) == 47
    await engine.handle(batch)
    assert await waiting(sqs, queue) == 0
    db = create_engine(fresh_database, 1)
    async with db.connect() as conn:
        applied = await conn.scalar(text("SELECT count(*) FROM flow.transaction"))
    await db.dispose()
    assert applied == 47
