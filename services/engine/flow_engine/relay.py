"""The outbox relay: publishes the callbacks the engine queued in flow.callback_outbox (one row per
applied batch: the outcomes' ids, tracekeys and codes, and their figures, rendered into messages here) and deletes each
row once SNS accepted all of it; a partly published row keeps only what is left. Rows are claimed
with SKIP LOCKED, so every engine process can relay at once; what fails to publish stays and is tried
again with backoff, so an SNS outage delays callbacks and loses none, and a crash between commit and
publish only means a later (possibly repeated) publish."""

import asyncio
import contextlib
import logging
import time
from itertools import repeat
from typing import NamedTuple
from uuid import UUID

from prometheus_client import Counter, Gauge
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from flow_kit import tracing
from flow_rules.codes import Code

from .callbacks import CallbackPublisher
from .outcome import Outcome, figures

__all__ = ["CallbackRelay"]

_log = logging.getLogger(__name__)

PUBLISHED = Counter("flow_engine_callbacks_published_total", "Callbacks SNS accepted")
FAILED = Counter("flow_engine_callback_publish_failures_total", "Callbacks SNS did not accept (retried)")
OLDEST = Gauge("flow_engine_callback_outbox_oldest_seconds", "Age of the oldest callback waiting in the outbox")

_CLAIM = text(
    """SELECT seq, ids, tracekeys, codes, balances, availables, extract(epoch FROM now() - createdat) AS age
       FROM flow.callback_outbox
       ORDER BY seq
       LIMIT :limit
       FOR UPDATE SKIP LOCKED"""
)
# A debit refused for funds: its figures, kept with its outcome (only batches with such refusals ask).
_REFUSALS = text("""SELECT id, available, shortfall, breakday FROM flow.outcome
                    WHERE id = ANY(CAST(:ids AS uuid[])) AND code = :code""")
_DELETE = text("DELETE FROM flow.callback_outbox WHERE seq = ANY(CAST(:seqs AS bigint[]))")
_KEEP_REST = text(
    """UPDATE flow.callback_outbox
       SET ids = CAST(:ids AS uuid[]), tracekeys = CAST(:tracekeys AS uuid[]), codes = CAST(:codes AS text[]),
           balances = CAST(:balances AS numeric[]), availables = CAST(:availables AS numeric[])
       WHERE seq = :seq"""
)


class CallbackRelay:
    def __init__(
        self,
        db: AsyncEngine,
        publisher: CallbackPublisher,
        rows_per_claim: int = 5,
        idle_seconds: float = 0.5,
        max_backoff_seconds: float = 30.0,
    ) -> None:
        self._db = db
        self._publisher = publisher
        self._rows_per_claim = rows_per_claim
        self._idle_seconds = idle_seconds
        self._max_backoff = max_backoff_seconds
        self._wake = asyncio.Event()
        self._stopping = False

    def nudge(self) -> None:
        """New callbacks were committed: relay now rather than at the next idle tick."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def relay_once(self) -> tuple[int, int]:
        """Publishes the callbacks of a few claimed rows; returns (published, failed)."""
        async with self._db.begin() as conn:
            rows = (await conn.execute(_CLAIM, {"limit": self._rows_per_claim})).all()
            if not rows:
                OLDEST.set(0)
                return 0, 0
            OLDEST.set(float(rows[0].age))
            claimed = await claimed_outcomes(conn, rows)
            flat = [c.outcome.callback() for _, outcomes in claimed for c in outcomes]
            started = time.time_ns()
            accepted = await self._publisher.publish(flat)
            if tracing.enabled():
                _trace([flat[n] for n in sorted(accepted)], started)
            done, start = [], 0
            for seq, outcomes in claimed:
                rest = [o for n, o in enumerate(outcomes, start) if n not in accepted]
                start += len(outcomes)
                if rest:
                    await conn.execute(
                        _KEEP_REST,
                        {
                            "seq": seq,
                            "ids": [o.outcome.id for o in rest],
                            "tracekeys": [o.outcome.tracekey for o in rest],
                            "codes": [o.outcome.code.value for o in rest],
                            **_kept_figures(rest),
                        },
                    )
                else:
                    done.append(seq)
            if done:
                await conn.execute(_DELETE, {"seqs": done})
        PUBLISHED.inc(len(accepted))
        FAILED.inc(len(flat) - len(accepted))
        return len(accepted), len(flat) - len(accepted)

    async def run(self) -> None:
        backoff = 0.0
        while not self._stopping:
            try:
                published, failed = await self.relay_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                _log.exception("callback relay failed; retrying")
                published, failed = 0, 1
            if failed:
                backoff = min(self._max_backoff, max(0.2, backoff * 2))
                _log.warning("callbacks not accepted by SNS; retrying in %.1f s", backoff, extra={"failed": failed})
                await asyncio.sleep(backoff)
                continue
            backoff = 0.0
            if published == 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._idle_seconds)


_APPLIED_COLUMNS = ("balances", "availables")  # one per applied outcome, in order (or null)


class _Claimed(NamedTuple):
    outcome: Outcome
    facts: tuple  # an applied outcome's (balance, available): kept with it if not published


async def claimed_outcomes(conn, rows) -> list[tuple[int, list[_Claimed]]]:
    """Each claimed outbox row's seq and outcomes, with their figures."""
    short = [
        id_
        for row in rows
        for id_, code in zip(row.ids, row.codes, strict=True)
        if code == Code.INSUFFICIENT_FUNDS.value
    ]
    refusals = (
        {
            r.id: tuple(r)[1:]
            for r in await conn.execute(_REFUSALS, {"ids": short, "code": Code.INSUFFICIENT_FUNDS.value})
        }
        if short
        else {}
    )
    return [(row.seq, _outcomes(row, refusals)) for row in rows]


def _outcomes(row, refusals: dict) -> list[_Claimed]:
    """A claimed outbox row's outcomes, each with its figures (`refusals`: a funds refusal's, by id)."""
    # A null column is an endless repeat(None): not strict.
    applied = zip(*(getattr(row, name) or repeat(None) for name in _APPLIED_COLUMNS), strict=False)
    claimed = []
    codes = map(Code, row.codes)
    for id_, tracekey, code in zip(row.ids, row.tracekeys, codes, strict=True):
        facts = next(applied, (None, None)) if code is Code.APPLIED else (None, None)
        claimed.append(
            _Claimed(Outcome(id_, tracekey, code, figures(code, *facts, *refusals.get(id_, (None,) * 3))), facts)
        )
    return claimed


def _kept_figures(rest: list[_Claimed]) -> dict:
    """The figure columns of the outcomes a partly published row keeps."""
    applied = [c.facts for c in rest if c.outcome.code is Code.APPLIED]
    return {name: [facts[n] for facts in applied] for n, name in enumerate(_APPLIED_COLUMNS)}


def _trace(published: list[dict], started: int) -> None:
    """A span per callback SNS accepted, in its posting's tracekey's trace."""
    finished = time.time_ns()
    for callback in published:
        tracing.record_posting_span(
            "flow.engine.callback",
            UUID(callback["tracekey"]),
            started,
            finished,
            {
                "flow.tracekey": callback["tracekey"],
                "flow.posting.id": callback["id"],
                "flow.code": callback["code"],
                "flow.messageid": callback["messageid"],
            },
        )
