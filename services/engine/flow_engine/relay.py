"""The outbox relay: publishes the callbacks the engine queued in flow.callback_outbox and deletes
each one SNS accepted. Rows are claimed with SKIP LOCKED, so every engine process can relay at
once; a row whose publish fails stays and is tried again with backoff, so an SNS outage delays
callbacks and loses none, and a crash between commit and publish only means a later publish."""

import asyncio
import logging

from prometheus_client import Counter, Gauge
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from .callbacks import CallbackPublisher, QueuedCallback

__all__ = ["CallbackRelay"]

_log = logging.getLogger(__name__)

PUBLISHED = Counter("flow_engine_callbacks_published_total", "Callbacks SNS accepted")
FAILED = Counter("flow_engine_callback_publish_failures_total", "Callbacks SNS did not accept (retried)")
OLDEST = Gauge("flow_engine_callback_outbox_oldest_seconds", "Age of the oldest callback waiting in the outbox")

_CLAIM = text(
    """SELECT seq, messageid, tracekey, status, body, extract(epoch FROM now() - createdat) AS age
       FROM flow.callback_outbox
       ORDER BY seq
       LIMIT :limit
       FOR UPDATE SKIP LOCKED"""
)
_DELETE = text("DELETE FROM flow.callback_outbox WHERE seq = ANY(CAST(:seqs AS bigint[]))")


class CallbackRelay:
    def __init__(self, db: AsyncEngine, publisher: CallbackPublisher, batch_size: int = 200,
                 idle_seconds: float = 0.5, max_backoff_seconds: float = 30.0) -> None:
        self._db = db
        self._publisher = publisher
        self._batch_size = batch_size
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
        """Publishes one claimed batch; returns (published, failed)."""
        async with self._db.begin() as conn:
            rows = (await conn.execute(_CLAIM, {"limit": self._batch_size})).all()
            if not rows:
                OLDEST.set(0)
                return 0, 0
            OLDEST.set(float(rows[0].age))
            accepted = await self._publisher.publish(
                [QueuedCallback(r.seq, r.messageid, r.tracekey, r.status, r.body) for r in rows])
            if accepted:
                await conn.execute(_DELETE, {"seqs": sorted(accepted)})
        PUBLISHED.inc(len(accepted))
        FAILED.inc(len(rows) - len(accepted))
        return len(accepted), len(rows) - len(accepted)

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
                try:
                    await asyncio.wait_for(self._wake.wait(), self._idle_seconds)
                except asyncio.TimeoutError:
                    pass
