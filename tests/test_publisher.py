"""Ingest's publisher against LocalStack's SNS: postings of concurrent requests share PublishBatch
calls, each request hears about its own postings, and when SNS refuses, every waiting request is
answered (none hangs)."""

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from flow_ingest.publisher import RequestPublisher
from flow_rules.posting import PostingMessage
from tests.conftest import aws_session


class CountingSns:
    """The real SNS client, noting the size of every PublishBatch call."""

    def __init__(self, sns) -> None:
        self._sns = sns
        self.calls: list[int] = []
        self.under_way = self.most_at_once = 0

    async def publish_batch(self, **call):
        self.calls.append(len(call["PublishBatchRequestEntries"]))
        self.under_way += 1
        self.most_at_once = max(self.most_at_once, self.under_way)
        try:
            return await self._sns.publish_batch(**call)
        finally:
            self.under_way -= 1


def message() -> PostingMessage:
    now = datetime.now(UTC)
    return PostingMessage(id=uuid.uuid4(), tracekey=uuid.uuid4(), branch="0007", account="000000001",
                          amount=Decimal("1.00"), debitcredit="C", eventcode=1, dateref=now.date(), acceptedat=now)


@pytest.fixture
async def sns(stack):
    session = aws_session()
    async with session.client("sns", endpoint_url=stack.aws_endpoint) as client:
        yield CountingSns(client)


async def test_concurrent_requests_share_calls_and_each_hears_its_own(stack, sns, requests_topic):
    publisher = RequestPublisher(sns, stack.outputs["RequestTopicArn"], max_in_flight=1)
    singles = [message() for _ in range(25)]
    batch = [message() for _ in range(13)]
    answers = await asyncio.wait_for(asyncio.gather(
        *(publisher.publish_many([m]) for m in singles), publisher.publish_many(batch)), 60)

    # The first request went alone; the rest queued behind it and left in tens as soon as ten waited,
    # the last seven once no call was under way.
    assert sns.calls == [1, 10, 10, 10, 7]
    assert answers == [{0}] * 25 + [set(range(13))]
    sent = {str(m.tracekey) for m in singles + batch}
    arrived = await requests_topic.collect(sent)
    assert sent <= arrived.keys()


async def test_a_lone_request_is_not_kept_waiting_for_company(stack, sns):
    publisher = RequestPublisher(sns, stack.outputs["RequestTopicArn"])
    assert await publisher.publish_many([message()]) == {0}
    assert await publisher.publish_many([message(), message()]) == {0, 1}
    assert sns.calls == [1, 2]


async def test_a_batch_request_sends_its_tens_side_by_side(stack, sns):
    publisher = RequestPublisher(sns, stack.outputs["RequestTopicArn"], max_in_flight=1)
    assert await publisher.publish_many([message() for _ in range(35)]) == set(range(35))
    assert sns.calls == [10, 10, 10, 5]
    assert sns.most_at_once == 3  # the three full calls at once; the last five once they were done


async def test_when_sns_refuses_every_waiting_request_is_answered(stack, sns):
    missing = stack.outputs["RequestTopicArn"].rsplit(":", 1)[0] + ":NoSuchTopic"
    publisher = RequestPublisher(sns, missing, max_in_flight=2)
    answers = await asyncio.wait_for(asyncio.gather(*(publisher.publish_many([message()]) for _ in range(15)),
                                                    publisher.publish_many([message() for _ in range(12)])), 60)
    assert answers == [set()] * 16
    assert sum(sns.calls) == 27


async def test_a_request_that_goes_away_does_not_hold_up_the_others(stack, sns):
    publisher = RequestPublisher(sns, stack.outputs["RequestTopicArn"], max_in_flight=1)
    first = asyncio.create_task(publisher.publish_many([message()]))
    await asyncio.sleep(0)  # its call is in flight now
    gone = asyncio.create_task(publisher.publish_many([message()]))
    later = asyncio.create_task(publisher.publish_many([message()]))
    await asyncio.sleep(0)
    gone.cancel()
    assert await asyncio.wait_for(first, 30) == {0}
    assert await asyncio.wait_for(later, 30) == {0}
    assert gone.cancelled()


def unencodable() -> PostingMessage:
    """A posting that passed validation by some other road and cannot be serialised (a lone surrogate:
    UTF-8 cannot carry it); parsing refuses it today, the publisher must not depend on that."""
    good = message()
    return PostingMessage.model_construct(**{**dict(good), "details": {"note": "\ud800"}})


class RefusingSns(CountingSns):
    """SNS refusing, as a whole, any PublishBatch call carrying a poisoned posting (as it does with an
    entry it cannot take), and taking the others."""

    def __init__(self, sns, poison: str) -> None:
        super().__init__(sns)
        self.poison = poison

    async def publish_batch(self, **call):
        if any(self.poison in entry["Message"] for entry in call["PublishBatchRequestEntries"]):
            self.calls.append(len(call["PublishBatchRequestEntries"]))
            from botocore.exceptions import ClientError
            raise ClientError({"Error": {"Code": "InvalidParameter", "Message": "Invalid parameter: Message"}},
                              "PublishBatch")
        return await super().publish_batch(**call)


async def test_a_posting_that_cannot_be_serialised_fails_alone(stack, sns, requests_topic):
    publisher = RequestPublisher(sns, stack.outputs["RequestTopicArn"], max_in_flight=1)
    first = [message()]
    others = [message() for _ in range(9)]
    answers = await asyncio.wait_for(asyncio.gather(
        publisher.publish_many(first), *(publisher.publish_many([m]) for m in others[:4]),
        publisher.publish_many([unencodable()]), *(publisher.publish_many([m]) for m in others[4:])), 60)
    assert answers == [{0}] * 5 + [set()] + [{0}] * 5
    assert sns.calls == [1, 9]  # the other nine shared a call, without it
    sent = {str(m.tracekey) for m in first + others}
    assert sent <= (await requests_topic.collect(sent)).keys()


async def test_a_posting_sns_refuses_fails_alone_and_not_its_call(stack, sns, requests_topic):
    refusing = RefusingSns(sns._sns, poison="poisoned-posting")
    publisher = RequestPublisher(refusing, stack.outputs["RequestTopicArn"], max_in_flight=1)
    poisoned = message().model_copy(update={"details": {"note": "poisoned-posting"}})
    first = message()
    shared = [message() for _ in range(4)] + [poisoned] + [message() for _ in range(5)]
    answers = await asyncio.wait_for(asyncio.gather(
        publisher.publish_many([first]), *(publisher.publish_many([m]) for m in shared)), 60)
    assert answers == [{0}] * 5 + [set()] + [{0}] * 5
    assert refusing.calls[:2] == [1, 10]  # the ten shared one call, which SNS refused, then were split
    sent = {str(m.tracekey) for m in [first] + shared if m is not poisoned}
    assert sent <= (await requests_topic.collect(sent)).keys()
