"""Publishes accepted postings to the FlowRequest topic.

Postings are sent with PublishBatch, ten per call. Postings that arrive while earlier calls are in
flight wait and leave together: an idle ingest publishes a lone posting at once, a busy one makes a
tenth of the calls (one request per posting no longer means one SNS call per posting).
"""

import asyncio

from flow_kit.posting import PostingMessage

__all__ = ["RequestPublisher"]

_SNS_BATCH_LIMIT = 10  # PublishBatch takes at most 10 entries


def _attributes(message: PostingMessage) -> dict:
    return {"tracekey": {"DataType": "String", "StringValue": str(message.tracekey)}}


class RequestPublisher:
    def __init__(self, sns_client, topic_arn: str, max_calls_in_flight: int = 16) -> None:
        self._sns = sns_client
        self._topic_arn = topic_arn
        self._max_in_flight = max_calls_in_flight
        self._in_flight: set[asyncio.Task] = set()
        self._waiting: list[tuple[PostingMessage, asyncio.Future]] = []

    async def publish_many(self, messages: list[PostingMessage]) -> set[int]:
        """Returns the indexes of the messages SNS accepted."""
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in messages]
        self._waiting += zip(messages, futures)
        self._send_waiting()
        accepted = await asyncio.gather(*futures)
        return {n for n, ok in enumerate(accepted) if ok}

    def _send_waiting(self) -> None:
        while self._waiting and len(self._in_flight) < self._max_in_flight:
            chunk, self._waiting = self._waiting[:_SNS_BATCH_LIMIT], self._waiting[_SNS_BATCH_LIMIT:]
            task = asyncio.create_task(self._send(chunk))
            self._in_flight.add(task)
            task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task) -> None:
        self._in_flight.discard(task)
        self._send_waiting()

    async def _send(self, chunk: list[tuple[PostingMessage, asyncio.Future]]) -> None:
        try:
            response = await self._sns.publish_batch(TopicArn=self._topic_arn, PublishBatchRequestEntries=[
                {"Id": str(n), "Message": m.model_dump_json(), "MessageAttributes": _attributes(m)}
                for n, (m, _) in enumerate(chunk)])
            accepted = {int(entry["Id"]) for entry in response.get("Successful", [])}
        except Exception:  # not accepted: the caller answers "failed, retry"
            accepted = set()
        for n, (_, future) in enumerate(chunk):
            if not future.done():  # a caller that went away leaves a cancelled future
                future.set_result(n in accepted)

    async def check(self) -> None:
        await self._sns.get_topic_attributes(TopicArn=self._topic_arn)
