"""Publishes accepted postings to the FlowRequest topic, ten to a PublishBatch call (AWS's limit),
the postings of concurrent requests sharing calls (see coalesce.py). A request gets its 202 only once
SNS accepted its postings."""

import logging

from prometheus_client import Histogram

from flow_rules.posting import PostingMessage

from .coalesce import Coalescer

__all__ = ["MAX_MESSAGE_BYTES", "RequestPublisher", "encode"]

_log = logging.getLogger(__name__)

_SNS_BATCH_LIMIT = 10  # PublishBatch takes at most 10 entries

ENTRIES_PER_CALL = Histogram(
    "flow_ingest_publish_entries", "Postings per PublishBatch call to FlowRequest", buckets=(1, 2, 5, 10)
)


def _attributes(message: PostingMessage) -> dict:
    return {"tracekey": {"DataType": "String", "StringValue": str(message.tracekey)}}


# What an entry's message may weigh: SNS takes 256 KiB per message (and per call; postings are far
# smaller: details are capped at 4 KiB).
MAX_MESSAGE_BYTES = 256 * 1024
# Refusals that say the call cannot be published as it is (something an entry holds), as opposed to
# SNS being unavailable or slow: only these make the call be split to find the culprit.
_NOT_RETRYABLE = {
    "InvalidParameter",
    "InvalidParameterValue",
    "ValidationError",
    "BatchRequestTooLong",
    "InvalidBatchEntryId",
    "BatchEntryIdsNotDistinct",
    "EmptyBatchRequest",
}


def encode(message: PostingMessage) -> str:
    """The exact message FlowRequest carries for `message`; raises ValueError when it cannot be one."""
    try:
        body = message.model_dump_json()
        size = len(body.encode())  # UTF-8, as SNS will send it: fails on a lone surrogate
    except Exception as exc:  # pydantic's serialisation errors, UnicodeEncodeError, RecursionError
        raise ValueError(f"posting cannot be serialised: {type(exc).__name__}") from None
    if size > MAX_MESSAGE_BYTES:
        raise ValueError("posting too large for one message")
    return body


def _splittable(exc: Exception) -> bool:
    response = getattr(exc, "response", None)
    return isinstance(response, dict) and response.get("Error", {}).get("Code") in _NOT_RETRYABLE


class RequestPublisher:
    def __init__(self, sns_client, topic_arn: str, max_in_flight: int = 8) -> None:
        self._sns = sns_client
        self._topic_arn = topic_arn
        self._calls = Coalescer(self._publish, _SNS_BATCH_LIMIT, max_in_flight)

    async def publish_many(self, messages: list[PostingMessage], bodies: list[str] | None = None) -> set[int]:
        """Returns the indexes of `messages` that SNS accepted. `bodies` are their encoded messages when
        the caller has them already (see `encode`). A message that cannot be encoded is not published
        (and fails alone): nothing one posting holds can fail the others sharing its call."""
        entries: list[tuple[PostingMessage, str]] = []
        positions: list[int] = []
        for n, message in enumerate(messages):
            try:
                entries.append((message, bodies[n] if bodies is not None else encode(message)))
            except ValueError:
                _log.error("posting could not be encoded for FlowRequest", extra={"id": str(message.id)})
                continue
            positions.append(n)
        accepted = await self._calls.submit(entries) if entries else []
        return {positions[k] for k, ok in enumerate(accepted) if ok}

    async def _publish(self, entries: list[tuple[PostingMessage, str]]) -> list[bool]:
        ENTRIES_PER_CALL.observe(len(entries))
        try:
            response = await self._sns.publish_batch(
                TopicArn=self._topic_arn,
                PublishBatchRequestEntries=[
                    {"Id": str(n), "Message": body, "MessageAttributes": _attributes(m)}
                    for n, (m, body) in enumerate(entries)
                ],
            )
        except Exception as exc:  # the requests answer "failed" (503 for one posting): their clients send again
            if len(entries) > 1 and _splittable(exc):
                # SNS refused the call for something one entry holds: halves, until only the culprit fails.
                _log.warning("PublishBatch to FlowRequest refused; splitting it", extra={"entries": len(entries)})
                half = len(entries) // 2
                return await self._publish(entries[:half]) + await self._publish(entries[half:])
            _log.exception("PublishBatch to FlowRequest failed")
            return [False] * len(entries)
        accepted = {int(entry["Id"]) for entry in response.get("Successful", [])}
        return [n in accepted for n in range(len(entries))]

    async def check(self) -> None:
        await self._sns.get_topic_attributes(TopicArn=self._topic_arn)
