"""Publishes queued callbacks on the FlowCallback topic."""

import asyncio
from dataclasses import dataclass
from uuid import UUID

__all__ = ["CallbackPublisher", "QueuedCallback"]

_SNS_BATCH_LIMIT = 10  # PublishBatch takes at most 10 entries


@dataclass(frozen=True)
class QueuedCallback:
    seq: int
    messageid: UUID
    tracekey: UUID
    status: str
    body: str


class CallbackPublisher:
    def __init__(self, sns_client, topic_arn: str) -> None:
        self._sns = sns_client
        self._topic_arn = topic_arn

    async def publish(self, callbacks: list[QueuedCallback]) -> set[int]:
        """Publishes what it can, ten at a time and concurrently; returns the seqs SNS accepted."""
        chunks = [callbacks[n:n + _SNS_BATCH_LIMIT] for n in range(0, len(callbacks), _SNS_BATCH_LIMIT)]
        results = await asyncio.gather(*(self._publish_chunk(chunk) for chunk in chunks), return_exceptions=True)
        accepted: set[int] = set()
        for result in results:
            if isinstance(result, BaseException):
                if not isinstance(result, Exception):
                    raise result
                continue
            accepted |= result
        return accepted

    async def _publish_chunk(self, chunk: list[QueuedCallback]) -> set[int]:
        response = await self._sns.publish_batch(
            TopicArn=self._topic_arn,
            PublishBatchRequestEntries=[
                {"Id": str(c.seq), "Message": c.body,
                 "MessageAttributes": {"tracekey": {"DataType": "String", "StringValue": str(c.tracekey)},
                                       "status": {"DataType": "String", "StringValue": c.status},
                                       "messageid": {"DataType": "String", "StringValue": str(c.messageid)}}}
                for c in chunk
            ],
        )
        return {int(entry["Id"]) for entry in response.get("Successful", [])}

    async def check(self) -> None:
        await self._sns.get_topic_attributes(TopicArn=self._topic_arn)
