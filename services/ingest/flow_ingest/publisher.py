"""Publishes accepted postings to the FlowRequest topic.

Every SNS call costs about the same CPU and round trip whether it carries 1 entry or 10
(PublishBatch's limit), so postings from concurrent requests share calls: each request queues its
postings and waits for their answers. Ten queued postings leave at once, in one call; fewer leave as
soon as fewer than `max_in_flight` calls are under way. So a lone request is sent at once, a batch
request's tens go out side by side, and under load single postings gather while calls are in flight
(as a database groups commits). A request gets its 202 only once SNS accepted its postings.
"""

import asyncio
import collections
import logging

from prometheus_client import Histogram

from flow_kit.posting import PostingMessage

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
        self._max_in_flight = max_in_flight
        self._in_flight = 0
        self._queued: collections.deque[tuple[PostingMessage, asyncio.Future]] = collections.deque()
        self._calls: set[asyncio.Task] = set()  # referenced until done, so none is garbage-collected

    async def publish_many(self, messages: list[PostingMessage]) -> set[int]:
        """Returns the indexes of `messages` that SNS accepted."""
        loop = asyncio.get_running_loop()
        answers = [loop.create_future() for _ in messages]
        self._queued.extend(zip(messages, answers))
        self._send_queued()
        accepted = await asyncio.gather(*answers)
        return {n for n, ok in enumerate(accepted) if ok}

    def _send_queued(self) -> None:
        while self._queued and (len(self._queued) >= _SNS_BATCH_LIMIT or self._in_flight < self._max_in_flight):
            entries = [self._queued.popleft() for _ in range(min(_SNS_BATCH_LIMIT, len(self._queued)))]
            self._in_flight += 1
            call = asyncio.create_task(self._send(entries))
            self._calls.add(call)
            call.add_done_callback(self._calls.discard)

    async def _send(self, entries: list[tuple[PostingMessage, asyncio.Future]]) -> None:
        accepted: set[int] = set()
        try:
            ENTRIES_PER_CALL.observe(len(entries))
            response = await self._sns.publish_batch(TopicArn=self._topic_arn, PublishBatchRequestEntries=[
                {"Id": str(n), "Message": m.model_dump_json(), "MessageAttributes": _attributes(m)}
                for n, (m, _) in enumerate(entries)])
            accepted = {int(entry["Id"]) for entry in response.get("Successful", [])}
        except Exception:  # the requests answer "failed" (503 for one posting): their clients send again
            _log.exception("PublishBatch to FlowRequest failed")
        finally:
            self._in_flight -= 1
            for n, (_, answer) in enumerate(entries):
                if not answer.done():  # a request cancelled meanwhile (its client went away) has no answer
                    answer.set_result(n in accepted)
            self._send_queued()

    async def check(self) -> None:
        await self._sns.get_topic_attributes(TopicArn=self._topic_arn)
