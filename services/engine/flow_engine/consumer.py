"""The queue consumer: long-polls FlowTransaction, applies each batch in one database
transaction, announces the outcomes, and only then deletes the messages.

A message is deleted only after its effect is committed and its outcome published; anything that
fails before that returns through the visibility timeout, and the outcome table makes the second
delivery change nothing (its stored outcome is announced again). A message that cannot be parsed
is never deleted, so SQS moves it to the dead-letter queue after maxReceiveCount.
"""

import asyncio
import logging
import time

from prometheus_client import Counter, Histogram
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from flow_kit.codes import Code
from flow_kit.logs import tracekey_var
from flow_kit.posting import PostingMessage

from .apply import apply_batch
from .callbacks import CallbackPublisher
from .outcome import Outcome
from .settings import EngineSettings

__all__ = ["Consumer"]

_log = logging.getLogger(__name__)
_SQS_BATCH_LIMIT = 10  # ReceiveMessage and DeleteMessageBatch take at most 10

OUTCOMES = Counter("flow_engine_outcomes_total", "Postings handled by the engine", ["status", "code"])
POISON = Counter("flow_engine_unparseable_messages_total", "Queue messages that are not valid postings")
BATCH_SECONDS = Histogram("flow_engine_batch_seconds", "Time to apply one batch, commit included")
RECEIVE_COUNT = Histogram("flow_engine_message_receive_count", "ApproximateReceiveCount of handled messages",
                          buckets=(1, 2, 3, 5, 10))
# PostgreSQL SQLSTATEs worth another try: serialization failure, deadlock, and lost connections.
_TRANSIENT_SQLSTATES = {"40001", "40P01", "57P01", "08000", "08003", "08006"}


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        return getattr(exc.orig, "sqlstate", None) in _TRANSIENT_SQLSTATES
    return isinstance(exc, (ConnectionError, OSError, asyncio.TimeoutError))


class Consumer:
    def __init__(self, settings: EngineSettings, db: AsyncEngine, sqs_client, callbacks: CallbackPublisher) -> None:
        self._settings = settings
        self._db = db
        self._sqs = sqs_client
        self._callbacks = callbacks
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self, poller: int) -> None:
        """One poller: receive, handle, repeat until stopped. Failures are logged and the loop goes on."""
        while not self._stopping.is_set():
            try:
                response = await self._sqs.receive_message(
                    QueueUrl=self._settings.queue_url,
                    MaxNumberOfMessages=_SQS_BATCH_LIMIT,
                    WaitTimeSeconds=self._settings.wait_seconds,
                    MessageSystemAttributeNames=["ApproximateReceiveCount"],
                )
                messages = response.get("Messages", [])
                if messages:
                    await self.handle(messages)
            except asyncio.CancelledError:
                raise
            except Exception:
                _log.exception("batch failed; its messages return after the visibility timeout", extra={"poller": poller})
                await asyncio.sleep(1)

    async def handle(self, messages: list[dict]) -> None:
        postings: list[PostingMessage] = []
        handles: list[str] = []
        for message in messages:
            RECEIVE_COUNT.observe(int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1)))
            try:
                postings.append(PostingMessage.model_validate_json(message["Body"]))
                handles.append(message["ReceiptHandle"])
            except ValidationError:
                POISON.inc()
                _log.error("unparseable message left for the dead-letter queue",
                           extra={"code": Code.UNPARSEABLE_MESSAGE.value, "message_id": message.get("MessageId")})
        if not postings:
            return
        outcomes = await self._apply(postings)
        await self._callbacks.publish(outcomes)
        for outcome in outcomes:
            OUTCOMES.labels(outcome.status, outcome.code.value).inc()
            tracekey_var.set(str(outcome.tracekey))
            _log.info("posting %s", outcome.status, extra={"id": str(outcome.id), "code": outcome.code.value})
        tracekey_var.set(None)
        await self._delete(handles)

    async def _apply(self, postings: list[PostingMessage]) -> list[Outcome]:
        started = time.perf_counter()
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(self._settings.db_retry_attempts),
            wait=wait_exponential_jitter(0.05, 2),
            retry=retry_if_exception(_is_transient),
            reraise=True,
        ):
            with attempt:
                async with self._db.begin() as conn:
                    outcomes = await apply_batch(conn, postings, self._settings.retroactive_days)
        BATCH_SECONDS.observe(time.perf_counter() - started)
        return outcomes

    async def _delete(self, handles: list[str]) -> None:
        response = await self._sqs.delete_message_batch(
            QueueUrl=self._settings.queue_url,
            Entries=[{"Id": str(n), "ReceiptHandle": h} for n, h in enumerate(handles)],
        )
        if response.get("Failed"):
            # Harmless: the message comes back and its stored outcome is announced again.
            _log.warning("some messages were not deleted", extra={"failed": len(response["Failed"])})

    async def check(self) -> None:
        await self._sqs.get_queue_attributes(QueueUrl=self._settings.queue_url, AttributeNames=["QueueArn"])
