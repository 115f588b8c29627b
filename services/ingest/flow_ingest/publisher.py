"""Publishes accepted postings to the FlowRequest topic."""

import json

from flow_kit.posting import PostingMessage

__all__ = ["RequestPublisher"]


class RequestPublisher:
    def __init__(self, sns_client, topic_arn: str) -> None:
        self._sns = sns_client
        self._topic_arn = topic_arn

    async def publish(self, message: PostingMessage) -> None:
        await self._sns.publish(
            TopicArn=self._topic_arn,
            Message=message.model_dump_json(),
            MessageAttributes={"tracekey": {"DataType": "String", "StringValue": str(message.tracekey)}},
        )

    async def check(self) -> None:
        await self._sns.get_topic_attributes(TopicArn=self._topic_arn)
