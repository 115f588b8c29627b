"""Publishes accepted postings to the FlowRequest topic, ten to a PublishBatch call (AWS's limit),
the postings of concurrent requests sharing calls (see coalesce.py). A request gets its 202 only once
SNS accepted its postings."""

import logging

from prometheus_client import Histogram

from flow_kit.posting import PostingMessage

from .coalesce import Coalescer

__all__ = ["RequestPublisher"]

_log = logging.getLogger(__name__)

_SNS_BATCH_LIMIT = 10  # PublishBatch takes at most 10 entries

ENTRIES_PER_CALL = Histogram("flow_ingest_publish_entries", "Postings per PublishBatch call to FlowRequest",
                             buckets=(1, 2, 5, 10))


def _attributes(message: PostingMessage) -> dict:
    return {"tracekey": {"DataType": "String", "StringValue": str(message.tracekey)}}


class RequestPublisher:
    def __init__(self, sns_client, topic_arn: str, max_in_flight: int = 8) -> None:
        self._sns = sns_client
        self._topic_arn = topic_arn
        self._calls = Coalescer(self._publish, _SNS_BATCH_LIMIT, max_in_flight)

    async def publish_many(self, messages: list[PostingMessage]) -> set[int]:
        """Returns the indexes of `messages` that SNS accepted."""
        accepted = await self._calls.submit(messages)
        return {n for n, ok in enumerate(accepted) if ok}

    async def _publish(self, messages: list[PostingMessage]) -> list[bool]:
        ENTRIES_PER_CALL.observe(len(messages))
        try:
            response = await self._sns.publish_batch(TopicArn=self._topic_arn, PublishBatchRequestEntries=[
                {"Id": str(n), "Message": m.model_dump_json(), "MessageAttributes": _attributes(m)}
                for n, m in enumerate(messages)])
        except Exception:  # the requests answer "failed" (503 for one posting): their clients send again
            _log.exception("PublishBatch to FlowRequest failed")
            return [False] * len(messages)
        accepted = {int(entry["Id"]) for entry in response.get("Successful", [])}
        return [n in accepted for n in range(len(messages))]

    async def check(self) -> None:
        await self._sns.get_topic_attributes(TopicArn=self._topic_arn)
