"""Publishes callback messages on the FlowCallback topic."""

import asyncio
import json

__all__ = ["CallbackPublisher"]

_SNS_BATCH_LIMIT = 10  # PublishBatch takes at most 10 entries


class CallbackPublisher:
    def __init__(self, sns_client, topic_arn: str) -> None:
        self._sns = sns_client
        self._topic_arn = topic_arn

    async def publish(self, callbacks: list[dict]) -> set[int]:
        """Publishes what it can, ten at a time and concurrently; returns the indexes SNS accepted."""
        starts = range(0, len(callbacks), _SNS_BATCH_LIMIT)
        results = await asyncio.gather(*(self._publish_chunk(callbacks, n) for n in starts), return_exceptions=True)
        accepted: set[int] = set()
        for result in results:
            if isinstance(result, Exception):
                continue  # not accepted: tried again later
            if isinstance(result, BaseException):
                raise result
            accepted |= result
        return accepted

    async def _publish_chunk(self, callbacks: list[dict], start: int) -> set[int]:
        response = await self._sns.publish_batch(
            TopicArn=self._topic_arn,
            PublishBatchRequestEntries=[
                {
                    "Id": str(n),
                    "Message": json.dumps(c),
                    "MessageAttributes": {
                        name: {"DataType": "String", "StringValue": c[name]}
                        for name in ("tracekey", "status", "messageid")
                    },
                }
                for n, c in enumerate(callbacks[start : start + _SNS_BATCH_LIMIT], start)
            ],
        )
        return {int(entry["Id"]) for entry in response.get("Successful", [])}

    async def check(self) -> None:
        await self._sns.get_topic_attributes(TopicArn=self._topic_arn)
