"""The archive job's state as metrics. The job (flow-archive) is a CronJob nobody scrapes: it records
each run in flow.archive_run and each month in flow.archive_month, and the engine, always running,
reads them into gauges for the dashboard and the alert that the archive has stopped succeeding."""

import asyncio
import logging

from prometheus_client import Gauge
from sqlalchemy import text

__all__ = ["ArchiveStats"]

_log = logging.getLogger(__name__)

MONTHS_ARCHIVED = Gauge(
    "flow_archive_months_archived", "Months of flow.transaction archived (in the data lake, out of the database)"
)
LAST_SUCCESS = Gauge(
    "flow_archive_last_success_timestamp_seconds",
    "When the last archive run that succeeded finished (Unix time; 0: none yet)",
)
FAILED_RUNS = Gauge("flow_archive_failed_runs", "Archive runs that failed since the last one that succeeded")

_STATS = text("""SELECT (SELECT count(*) FROM flow.archive_month WHERE state = 'archived') AS months,
                        coalesce(extract(epoch FROM (SELECT max(finishedat) FROM flow.archive_run
                                                     WHERE status = 'succeeded')), 0)::float8 AS last_success,
                        (SELECT count(*) FROM flow.archive_run WHERE status = 'failed' AND startedat >
                             coalesce((SELECT max(startedat) FROM flow.archive_run WHERE status = 'succeeded'),
                                      '-infinity')) AS failed""")


class ArchiveStats:
    def __init__(self, db, interval_seconds: float) -> None:
        self._db = db
        self._interval = interval_seconds

    async def sample(self) -> None:
        async with self._db.connect() as conn:
            row = (await conn.execute(_STATS)).one()
        MONTHS_ARCHIVED.set(row.months)
        LAST_SUCCESS.set(row.last_success)
        FAILED_RUNS.set(row.failed)

    async def run(self) -> None:
        while True:
            try:
                await self.sample()
            except Exception:
                _log.warning("archive stats not read; trying again later", exc_info=True)
            await asyncio.sleep(self._interval)
