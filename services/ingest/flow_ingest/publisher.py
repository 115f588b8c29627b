"""Publishes accepted postings to the FlowRequest topic."""

import asyncio

from flow_kit.posting import PostingMessage

__all__ = ["RequestPublisher"]

_SNS_BATCH_LIMIT = 10  # PublishBatch takes at most 10 entries


def _attributes(message: PostingMessage) -> dict:
    return {"tracekey": {"DataType": "String", "StringValue": str(message.tracekey)}}


class RequestPublisher:
    def __init__(self, sns_client, topic_arn: str) -> None:
        self._sns = sns_client
        self._topic_arn = topic_arn

    async def publish_many(self, messages: list[PostingMessage]) -> set[int]:
        """Ten per call, the calls concurrent; returns the indexes SNS accepted."""
        async def chunk(start: int) -> set[int]:
            response = await self._sns.publish_batch(TopicArn=self._topic_arn, PublishBatchRequestEntries=[
                {"Id": str(n), "Message": m.model_dump_json(), "MessageAttributes": _attributes(m)}
                for n, m in enumerate(messages[start:start + _SNS_BATCH_LIMIT], start)])
            return {int(entry["Id"]) for entry in response.get("Successful", [])}

        results = await asyncio.gather(*(chunk(n) for n in range(0, len(messages), _SNS_BATCH_LIMIT)),
                                       return_exceptions=True)
        return set().union(*(r for r in results if isinstance(r, set)))

    async def check(self) -> None:
        await self._sns.get_topic_attributes(TopicArn=self._topic_arn)
