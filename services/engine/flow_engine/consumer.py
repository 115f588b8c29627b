"""The queue consumer: long-polls FlowTransaction, gathers up to `batch_size` messages, applies
them in one database transaction (their callbacks go into the outbox in that same transaction),
and only after the commit deletes the messages.

Anything that fails before the commit returns through the visibility timeout, and the outcome
table makes the second delivery change nothing; a crash after the commit and before the delete
gives the same. A message that cannot be parsed is never deleted: it is made visible again at once
and SQS moves it to the dead-letter queue after maxReceiveCount, without holding up the rest.

Every posting is decided, none is stuck behind another:
- a batch the database refuses (after retries of what is transient) is applied in halves, down to
  single postings, so every good posting is applied at once; a posting refused alone for a ledger
  rule (apply.LEDGER_RULES) is rejected with its code; refused alone for any other reason (an
  overflow nobody foresaw, a missing partition, a permission lost in a bad migration) it is held:
  sent to the queue again, delayed by hold_seconds, and its delivery deleted, so it is tried again and
  again without nearing the dead-letter queue, counted (flow_engine_held_postings_total, an alert)
  and logged with R091 and its id until the cause is fixed;
- while the database is unreachable the pollers take no messages (they wait for it), so an outage of
  any length costs a queued posting at most one delivery, never its place in the queue.
"""

import asyncio
import collections
import logging
import time
from collections.abc import Callable

from opentelemetry.trace import Link
from prometheus_client import Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncEngine
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from flow_kit import tracing
from flow_kit.db import is_transient, ping
from flow_kit.logs import tracekey_var
from flow_rules.codes import Code

from .apply import LEDGER_RULES, apply_batch, ledger_rule
from .message import DecodeError, Posting, decode
from .outcome import Outcome
from .settings import EngineSettings

__all__ = ["Consumer"]

_log = logging.getLogger(__name__)
_SQS_BATCH_LIMIT = 10  # ReceiveMessage and DeleteMessageBatch take at most 10
_RECEIVES_AT_ONCE = 5  # ReceiveMessage calls under way at once while a batch fills

OUTCOMES = Counter("flow_engine_outcomes_total", "Postings handled by the engine", ["status", "code"])
# Every series shown at 0 from the start, so the first batch after a start counts in rate() and increase().
OUTCOMES.labels("applied", Code.APPLIED.value)
for _code in (
    Code.DATEREF_TOO_OLD,
    Code.DATEREF_IN_FUTURE,
    Code.EVENT_NOT_FOUND,
    Code.EVENT_INACTIVE,
    Code.EVENT_DISALLOWS_DEBIT,
    Code.EVENT_DISALLOWS_CREDIT,
    Code.ID_REUSED,
    *LEDGER_RULES.values(),
):
    OUTCOMES.labels("rejected", _code.value)
POISON = Counter("flow_engine_unparseable_messages_total", "Queue messages that are not valid postings")
BATCH_SECONDS = Histogram("flow_engine_batch_seconds", "Time to apply one batch, commit included")
BATCH_SIZE = Histogram(
    "flow_engine_batch_postings", "Postings per applied batch", buckets=(1, 10, 50, 100, 250, 500, 1000)
)
RECEIVE_COUNT = Histogram(
    "flow_engine_message_receive_count", "ApproximateReceiveCount of handled messages", buckets=(1, 2, 3, 5, 10)
)
RETRIES = Counter("flow_engine_batch_retries_total", "Batches tried again after a transient database fault")
HELD = Counter(
    "flow_engine_held_postings_total",
    "Postings the database refused alone for a reason that is not a ledger rule: held, tried again later",
)
_DATABASE_CHECK_SECONDS = 2  # while the database is unreachable, how often a poller looks again


class Consumer:
    def __init__(
        self, settings: EngineSettings, db: AsyncEngine, sqs_client, on_commit: Callable[[], None] = lambda: None
    ) -> None:
        self._settings = settings
        self._db = db
        self._sqs = sqs_client
        self._on_commit = on_commit
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def _receive(self, wait_seconds: int, count: int) -> list[dict]:
        response = await self._sqs.receive_message(
            QueueUrl=self._settings.queue_url,
            MaxNumberOfMessages=count,
            WaitTimeSeconds=wait_seconds,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return response.get("Messages", [])

    async def gather_batch(self) -> list[dict]:
        """Long-polls for the first messages, then takes what is already waiting, up to batch_size:
        several calls at once (each takes at most 10), until one comes back short."""
        size = self._settings.batch_size
        messages = await self._receive(self._settings.wait_seconds, min(_SQS_BATCH_LIMIT, size))
        while messages and len(messages) < size and not self._stopping.is_set():
            room = size - len(messages)
            counts = [min(_SQS_BATCH_LIMIT, room - n) for n in range(0, room, _SQS_BATCH_LIMIT)][:_RECEIVES_AT_ONCE]
            replies = await asyncio.gather(*(self._receive(0, count) for count in counts))
            for more in replies:
                messages += more
            if any(len(more) < count for more, count in zip(replies, counts, strict=True)):
                break
        return messages

    async def run(self, poller: int) -> None:
        """One poller: gather, handle, repeat until stopped. Failures are logged and the loop goes on."""
        while not self._stopping.is_set():
            try:
                messages = await self.gather_batch()
                if messages:
                    await self.handle(messages)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.exception(
                    "batch failed; its messages return after the visibility timeout", extra={"poller": poller}
                )
                await asyncio.sleep(1)
                if is_transient(exc):
                    await self._wait_for_database(poller)

    async def _wait_for_database(self, poller: int) -> None:
        """Takes no message while the database cannot be reached: a delivery it cannot apply would
        only bring the message nearer the dead-letter queue."""
        while not self._stopping.is_set():
            try:
                await ping(self._db)
                return
            except Exception:
                _log.warning("database unreachable; not polling until it answers", extra={"poller": poller})
                await asyncio.sleep(_DATABASE_CHECK_SECONDS)

    async def handle(self, messages: list[dict]) -> None:
        postings: list[Posting] = []
        handles: list[str] = []
        messages_by_posting: list[dict] = []
        poison: list[str] = []
        for message in messages:
            RECEIVE_COUNT.observe(int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1)))
            try:
                postings.append(decode(message["Body"]))
                handles.append(message["ReceiptHandle"])
                messages_by_posting.append(message)
            except DecodeError:
                POISON.inc()
                poison.append(message["ReceiptHandle"])
                _log.error(
                    "unparseable message left for the dead-letter queue",
                    extra={"code": Code.UNPARSEABLE_MESSAGE.value, "message_id": message.get("MessageId")},
                )
        if poison:
            await self._entries("change_message_visibility_batch", poison, VisibilityTimeout=0)
        if not postings:
            return
        started = time.time_ns()
        outcomes, held = await self._apply_isolating(postings, list(range(len(postings))))
        if held:
            await self._hold([messages_by_posting[n] for n in held])
            kept = set(held)
            handles = [handle for n, handle in enumerate(handles) if n not in kept]
        self._on_commit()
        if tracing.enabled():
            _trace(outcomes, started)
        for code, count in collections.Counter(outcome.code for outcome in outcomes).items():
            OUTCOMES.labels("applied" if code is Code.APPLIED else "rejected", code.value).inc(count)
        if _log.isEnabledFor(logging.INFO):
            for outcome in outcomes:
                tracekey_var.set(str(outcome.tracekey))
                _log.info("posting %s", outcome.status, extra={"id": str(outcome.id), "code": outcome.code.value})
            tracekey_var.set(None)
        await self._entries("delete_message_batch", handles)

    async def _apply_isolating(self, postings: list[Posting], positions: list[int]) -> tuple[list[Outcome], list[int]]:
        """Applies the postings, in halves when the database refuses them together, down to single
        postings. Returns the outcomes, and the positions (of `positions`) of the postings held."""
        try:
            return await self._apply(postings), []
        except Exception as exc:
            if is_transient(exc):  # the database is away, not refusing: nothing to isolate
                raise
            if len(postings) > 1:
                _log.warning(
                    "the database refused a batch of %d postings; applying it in halves",
                    len(postings),
                    extra={"error": type(exc).__name__},
                )
                half = len(postings) // 2
                first = await self._apply_isolating(postings[:half], positions[:half])
                second = await self._apply_isolating(postings[half:], positions[half:])
                return first[0] + second[0], first[1] + second[1]
            [posting], refusal = postings, exc
        rule = ledger_rule(refusal)
        if rule is not None:
            try:
                return await self._apply(postings, refuse=rule), []
            except Exception as exc:
                if is_transient(exc):
                    raise
                refusal = exc
        HELD.inc()
        tracekey_var.set(str(posting.tracekey))
        # The error's type and SQLSTATE only: its text may quote the posting's values.
        _log.error(
            "posting held: the database refused it for a reason that is not a ledger rule; it is tried again in %d s",
            self._settings.hold_seconds,
            extra={
                "code": Code.POSTING_HELD.value,
                "id": str(posting.id),
                "error": type(refusal).__name__,
                "sqlstate": getattr(getattr(refusal, "orig", None), "sqlstate", None),
            },
        )
        tracekey_var.set(None)
        return [], positions

    async def _hold(self, messages: list[dict]) -> None:
        """Sends held postings to the queue again, delayed, and only then deletes their deliveries:
        a new message starts its receive count anew, so a held posting never reaches the dead-letter
        queue. A crash between the two leaves two copies, and the engine applies an id once."""
        sent: list[str] = []

        async def chunk(start: int) -> None:
            part = messages[start : start + _SQS_BATCH_LIMIT]
            response = await self._sqs.send_message_batch(
                QueueUrl=self._settings.queue_url,
                Entries=[
                    {"Id": str(n), "MessageBody": m["Body"], "DelaySeconds": self._settings.hold_seconds}
                    for n, m in enumerate(part)
                ],
            )
            sent.extend(part[int(entry["Id"])]["ReceiptHandle"] for entry in response.get("Successful", []))

        await asyncio.gather(*(chunk(start) for start in range(0, len(messages), _SQS_BATCH_LIMIT)))
        if sent:
            await self._entries("delete_message_batch", sent)

    async def _apply(self, postings: list[Posting], refuse: Code | None = None) -> list[Outcome]:
        started = time.perf_counter()
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(self._settings.db_retry_attempts),
            wait=wait_exponential_jitter(multiplier=0.05, max=2),
            retry=retry_if_exception(is_transient),
            before_sleep=lambda state: RETRIES.inc(),
            reraise=True,
        ):
            with attempt:
                async with self._db.begin() as conn:
                    outcomes = await apply_batch(
                        conn,
                        postings,
                        self._settings.retroactive_days,
                        refuse,
                        reject_unknown=self._settings.unknown_accounts == "reject",
                    )
        BATCH_SECONDS.observe(time.perf_counter() - started)
        BATCH_SIZE.observe(len(postings))
        return outcomes

    async def _entries(self, operation: str, handles: list[str], **extra) -> None:
        """Deletes or re-shows messages, ten per call, the calls side by side. A failure is harmless:
        the message comes back and changes nothing the second time."""
        call = getattr(self._sqs, operation)

        async def chunk(start: int) -> None:
            entries = [
                {"Id": str(n), "ReceiptHandle": h, **extra}
                for n, h in enumerate(handles[start : start + _SQS_BATCH_LIMIT])
            ]
            response = await call(QueueUrl=self._settings.queue_url, Entries=entries)
            if response.get("Failed"):
                _log.warning("%s: %d entries failed", operation, len(response["Failed"]))

        await asyncio.gather(*(chunk(start) for start in range(0, len(handles), _SQS_BATCH_LIMIT)))

    async def check(self) -> None:
        await self._sqs.get_queue_attributes(QueueUrl=self._settings.queue_url, AttributeNames=["QueueArn"])


def _trace(outcomes: list[Outcome], started: int) -> None:
    """A span for the batch, and one per posting in its tracekey's trace, linked to the batch's: from
    the batch's start to its commit."""
    committed = time.time_ns()
    batch = tracing.tracer().start_span(
        "flow.engine.batch", start_time=started, attributes={"flow.batch.postings": len(outcomes)}
    )
    batch.end(end_time=committed)
    link = [Link(batch.get_span_context())]
    for outcome in outcomes:
        tracing.record_posting_span(
            "flow.engine.apply",
            outcome.tracekey,
            started,
            committed,
            {
                "flow.tracekey": str(outcome.tracekey),
                "flow.posting.id": str(outcome.id),
                "flow.status": outcome.status,
                "flow.code": outcome.code.value,
                "flow.batch.postings": len(outcomes),
            },
            links=link,
        )
