"""Announces outcomes on the FlowCallback topic."""

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from .outcome import Outcome

__all__ = ["CallbackPublisher"]

_SNS_BATCH_LIMIT = 10  # PublishBatch takes at most 10 entries


class CallbackNotPublished(Exception):
    pass


class CallbackPublisher:
    def __init__(self, sns_client, topic_arn: str, attempts: int = 5) -> None:
        self._sns = sns_client
        self._topic_arn = topic_arn
        self._attempts = attempts

    async def publish(self, outcomes: list[Outcome]) -> None:
        """Publishes every outcome or raises; entries SNS refused are retried with backoff."""
        for start in range(0, len(outcomes), _SNS_BATCH_LIMIT):
            pending = {str(n): o for n, o in enumerate(outcomes[start:start + _SNS_BATCH_LIMIT])}
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self._attempts), wait=wait_exponential_jitter(0.1, 5),
                retry=retry_if_exception_type(Exception), reraise=True,
            ):
                with attempt:
                    pending = await self._publish_batch(pending)  # what SNS refused, retried alone
                    if pending:
                        raise CallbackNotPublished(f"{len(pending)} callback(s) refused by SNS")

    async def _publish_batch(self, pending: dict[str, Outcome]) -> dict[str, Outcome]:
        response = await self._sns.publish_batch(
            TopicArn=self._topic_arn,
            PublishBatchRequestEntries=[
                {"Id": key, "Message": o.callback_json(),
                 "MessageAttributes": {"tracekey": {"DataType": "String", "StringValue": str(o.tracekey)},
                                       "status": {"DataType": "String", "StringValue": o.status}}}
                for key, o in pending.items()
            ],
        )
        return {entry["Id"]: pending[entry["Id"]] for entry in response.get("Failed", [])}

    async def check(self) -> None:
        await self._sns.get_topic_attributes(TopicArn=self._topic_arn)
