"""Accepting postings: the checks ingest makes before publishing, the same for one posting and for a
batch, each posting judged on its own."""

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal
from uuid import UUID, uuid4

from prometheus_client import Counter

from flow_kit import tracing
from flow_kit.entitlements import Grant
from flow_kit.logs import tracekey_var
from flow_rules.codes import Code
from flow_rules.fingerprint import fingerprint, same_content
from flow_rules.judge import judge
from flow_rules.posting import Caller, PostingIn, PostingMessage

from .catalogue import EventCatalogue
from .idempotency import RequestLedger
from .publisher import RequestPublisher, encode
from .settings import IngestSettings

__all__ = ["Intake", "Verdict"]

_log = logging.getLogger(__name__)
POSTINGS = Counter("flow_ingest_postings_total", "Postings received by ingest", ["result", "code"])
# Every series shown at 0 from the start, so the first posting after a start counts in rate() and
# increase(): accepted, failed, and refused with each code a posting can get (R001-R014, R020-R030,
# R076-R077).
POSTINGS.labels("accepted", "")
POSTINGS.labels("failed", Code.UNAVAILABLE.value)
for _code in Code:
    if "R001" <= _code.value <= "R014" or "R020" <= _code.value <= "R030" or _code.value in ("R076", "R077"):
        POSTINGS.labels("rejected", _code.value)

# The HTTP status a single posting's refusal gets.
_STATUS = {Code.ID_REUSED: 409, Code.NOT_ENTITLED: 403, Code.UNAVAILABLE: 503}


@dataclass(frozen=True)
class Verdict:
    """One posting's answer: accepted (published), rejected (with its code), or failed (retry it)."""

    status: Literal["accepted", "rejected", "failed"]
    id: UUID | None = None
    tracekey: UUID | None = None
    code: Code | None = None

    @property
    def http_status(self) -> int:
        return 202 if self.status == "accepted" or self.code is None else _STATUS.get(self.code, 422)

    def count(self) -> "Verdict":
        POSTINGS.labels(self.status, self.code.value if self.code else "").inc()
        return self


class Intake:
    def __init__(
        self, settings: IngestSettings, catalogue: EventCatalogue, ledger: RequestLedger, publisher: RequestPublisher
    ) -> None:
        self._settings = settings
        self._catalogue = catalogue
        self._ledger = ledger
        self._publisher = publisher

    async def _check(self, posting: PostingIn, acceptedat: datetime, grant: Grant | None = None) -> Code | None:
        """The checks beyond the posting's own shape: the client's entitlements (`grant`: None when
        FLOW_ENTITLEMENTS is unset), its event, its date, the size of its details."""
        if grant is not None:
            if not grant.allows_branch(posting.branch):
                return Code.NOT_ENTITLED
            if not grant.allows_amount(posting.amount):
                return Code.OVER_CLIENT_LIMIT
        refused = judge(
            await self._catalogue.get(posting.eventcode),
            posting.debitcredit,
            posting.dateref,
            acceptedat,
            self._settings.retroactive_days,
        )
        if refused:
            return refused
        if posting.details is not None and len(json.dumps(posting.details)) > self._settings.max_details_bytes:
            return Code.INVALID_DETAILS
        return None

    async def accept(
        self, items: list[PostingIn | Code], caller: tuple[str, str | None] | None = None, grant: Grant | None = None
    ) -> list[Verdict]:
        """`items` are parsed postings, or the code an unparseable one got. One verdict per item.
        `caller` (the token's subject and client; None without authentication) travels with each posting."""
        posted_by = (
            None
            if caller is None
            else Caller(sub=caller[0].replace("\x00", ""), client=caller[1] and caller[1].replace("\x00", ""))
        )
        started = time.time_ns()
        acceptedat = datetime.now(UTC)
        verdicts: list[Verdict | None] = [None] * len(items)
        messages: dict[int, PostingMessage] = {}
        first_of: dict[UUID, int] = {}
        for n, item in enumerate(items):
            if isinstance(item, Code):
                verdicts[n] = Verdict("rejected", code=item)
                continue
            refused = await self._check(item, acceptedat, grant)
            if refused:
                verdicts[n] = Verdict("rejected", item.id, item.tracekey, refused)
                continue
            message = PostingMessage(
                **item.model_dump(exclude={"id", "tracekey"}),
                id=item.id or uuid4(),
                tracekey=item.tracekey or uuid4(),
                acceptedat=acceptedat,
                caller=posted_by,
                fingerprint=fingerprint(item),
            )
            try:  # accepted only as a message FlowRequest can carry: refused here, never failing a shared call
                encode(message)
            except ValueError:
                verdicts[n] = Verdict("rejected", message.id, message.tracekey, Code.INVALID_DETAILS)
                continue
            if message.id in first_of:  # the same id twice in one batch: judged like a retry
                earlier = messages[first_of[message.id]]
                same = earlier.fingerprint == message.fingerprint
                verdicts[n] = (
                    Verdict("accepted", earlier.id, earlier.tracekey)
                    if same
                    else Verdict("rejected", message.id, message.tracekey, Code.ID_REUSED)
                )
                continue
            first_of[message.id] = n
            messages[n] = message

        remembered = await self._ledger.remember(list(messages.values()))
        for n, message in list(messages.items()):
            before = remembered.get(message.id)
            if before is None:
                continue
            if not same_content(before.fingerprint, message, message.fingerprint):
                verdicts[n] = Verdict("rejected", message.id, message.tracekey, Code.ID_REUSED)
                del messages[n]
            else:  # a retry: answered as the first time, and published again (the engine applies an id once)
                messages[n] = message.model_copy(update={"tracekey": before.tracekey, "acceptedat": before.acceptedat})

        order, bodies = [], []
        for n in list(messages):
            try:  # the exact bytes published (a retry's tracekey and acceptedat are the first time's)
                bodies.append(encode(messages[n]))
                order.append(n)
            except ValueError:
                message = messages.pop(n)
                verdicts[n] = Verdict("rejected", message.id, message.tracekey, Code.INVALID_DETAILS)
        published = await self._publisher.publish_many([messages[n] for n in order], bodies) if order else set()
        for position, n in enumerate(order):
            message = messages[n]
            if position in published:
                verdicts[n] = Verdict("accepted", message.id, message.tracekey)
                tracekey_var.set(str(message.tracekey))
                _log.info("posting accepted", extra={"id": str(message.id)})
            else:
                verdicts[n] = Verdict("failed", message.id, message.tracekey, Code.UNAVAILABLE)
                _log.error("publish to FlowRequest failed", extra={"id": str(message.id)})
        tracekey_var.set(None)
        # Duplicates inside the batch follow their first copy's fate.
        for n, verdict in enumerate(verdicts):
            if verdict and verdict.status == "accepted" and n not in messages and verdict.id in first_of:
                first = verdicts[first_of[verdict.id]]
                verdicts[n] = first
        decided = [v for v in verdicts if v is not None]
        assert len(decided) == len(verdicts), "every item has its verdict"
        if tracing.enabled():
            _trace(decided, started)
        return [v.count() for v in decided]


def _trace(verdicts: list[Verdict], started: int) -> None:
    """A span per posting that carries a tracekey, in its tracekey's trace: what ingest answered."""
    finished = time.time_ns()
    for verdict in verdicts:
        if verdict.tracekey is not None:
            tracing.record_posting_span(
                "flow.ingest.accept",
                verdict.tracekey,
                started,
                finished,
                {
                    "flow.tracekey": str(verdict.tracekey),
                    "flow.posting.id": str(verdict.id or ""),
                    "flow.result": verdict.status,
                    "flow.code": verdict.code.value if verdict.code else "",
                },
                error=verdict.status == "failed",
            )
