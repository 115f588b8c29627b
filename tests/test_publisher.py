"""Ingest's publisher, against LocalStack's SNS: postings that arrive while a publish is in flight
leave together (PublishBatch takes ten), a lone one leaves at once, and each caller learns its own fate."""

import asyncio
import uuid

import aioboto3

from flow_ingest.publisher import RequestPublisher
from tests.conftest import _listen
from tests.engine_helpers import posting


class CountingSns:
    """The real SNS client, counting PublishBatch calls."""

    def __init__(self, sns) -> None:
        self._sns = sns
        self.calls: list[int] = []

    async def publish_batch(self, **request):
        self.calls.append(len(request["PublishBatchRequestEntries"]))
        return await self._sns.publish_batch(**request)


async def test_postings_waiting_for_a_call_in_flight_leave_together(stack):
    session = aioboto3.Session(region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    async with session.client("sns", endpoint_url=stack.aws_endpoint) as sns:
        topic_arn = (await sns.create_topic(Name=f"publisher-{uuid.uuid4().hex[:8]}"))["TopicArn"]
        async for listener in _listen(stack, topic_arn):
            counting = CountingSns(sns)
            publisher = RequestPublisher(counting, topic_arn, max_calls_in_flight=1)

            lone = posting()
            assert await publisher.publish_many([lone]) == {0}
            assert counting.calls == [1]

            many = [posting() for _ in range(40)]
            answers = await asyncio.gather(*(publisher.publish_many([m]) for m in many))
            assert answers == [{0}] * 40
            assert counting.calls[1:] == [1, 10, 10, 10, 9]  # the first left alone; the rest waited for it

            seen = await listener.collect({str(m.tracekey) for m in [lone, *many]}, timeout=30)
            assert len(seen) == 41


async def test_a_refused_publish_is_answered_not_raised(stack):
    session = aioboto3.Session(region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    async with session.client("sns", endpoint_url=stack.aws_endpoint) as sns:
        publisher = RequestPublisher(sns, "arn:aws:sns:us-east-1:000000000000:NoSuchTopic")
        assert await publisher.publish_many([posting(), posting()]) == set()
