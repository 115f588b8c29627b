"""The queue depth metrics: the engine samples FlowTransaction and the dead-letter queue its
RedrivePolicy names, and reports them on /metrics."""

import json
import re
import uuid

import httpx
import pytest

from flow_engine.queue_depth import QUEUE_MESSAGES, QueueDepth
from tests.waiting import wait_until_async


def _gauge(queue: str, state: str) -> float:
    return QUEUE_MESSAGES.labels(queue, state)._value.get()


async def _queue(sqs, name: str, **attributes: str) -> str:
    return (await sqs.create_queue(QueueName=f"{name}-{uuid.uuid4().hex[:10]}", Attributes=attributes))["QueueUrl"]


@pytest.mark.integration
async def test_the_queue_and_its_dead_letter_queue_are_counted_by_state(sqs):
    dlq = await _queue(sqs, "depth-dlq")
    dlq_arn = (await sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"]))["Attributes"]["QueueArn"]
    work = await _queue(sqs, "depth", VisibilityTimeout="60",
                        RedrivePolicy=json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}))
    for n in range(5):
        await sqs.send_message(QueueUrl=work, MessageBody=f"posting {n}")
    await sqs.send_message(QueueUrl=work, MessageBody="later", DelaySeconds=60)
    for n in range(2):
        await sqs.send_message(QueueUrl=dlq, MessageBody=f"poison {n}")
    received = await sqs.receive_message(QueueUrl=work, MaxNumberOfMessages=2)
    assert len(received["Messages"]) == 2

    await QueueDepth(sqs, work, interval_seconds=1).sample()
    assert [_gauge("FlowTransaction", s) for s in ("visible", "in_flight", "delayed")] == [3, 2, 1]
    assert [_gauge("FlowTransactionDlq", s) for s in ("visible", "in_flight", "delayed")] == [2, 0, 0]

    # A queue without a dead-letter queue: only its own counts.
    lone = await _queue(sqs, "depth-lone")
    await sqs.send_message(QueueUrl=lone, MessageBody="x")
    QUEUE_MESSAGES.clear()
    await QueueDepth(sqs, lone, interval_seconds=1).sample()
    assert _gauge("FlowTransaction", "visible") == 1
    assert {labels["queue"] for metric in QUEUE_MESSAGES.collect() for labels in
            (sample.labels for sample in metric.samples)} == {"FlowTransaction"}
    for url in (work, dlq, lone):
        await sqs.delete_queue(QueueUrl=url)


@pytest.mark.integration
async def test_the_running_engine_reports_both_queues(stack):
    """The stack's engine samples every second (FLOW_ENGINE_QUEUE_STATS_SECONDS in conftest)."""
    wanted = re.compile(r'^flow_engine_queue_messages\{queue="(FlowTransaction|FlowTransactionDlq)",'
                        r'state="(visible|in_flight|delayed)"\} \d+\.0$', re.M)
    async with httpx.AsyncClient() as http:

        async def reported() -> list[tuple[str, str]]:
            return wanted.findall((await http.get(f"http://127.0.0.1:{stack.config.engine_port}/metrics")).text)

        found = await wait_until_async(reported, "both queues' three states on the engine's /metrics", 10,
                                       holds=lambda got: len(got) == 6)
    assert sorted(found) == sorted((q, s) for q in ("FlowTransaction", "FlowTransactionDlq")
                                   for s in ("visible", "in_flight", "delayed"))
