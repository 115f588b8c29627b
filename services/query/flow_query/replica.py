"""The read replica the query service reads from: how far its replay is behind the primary.

The lag is 0 on a primary (not in recovery) and on a replica that has replayed all the WAL it
received; otherwise it is the time since the last transaction it replayed committed on the primary.
`lag_check` makes a readiness check of it, so a replica too far behind stops taking reads.
"""

from prometheus_client import Gauge
from sqlalchemy.ext.asyncio import AsyncEngine

from flow_kit.health import Check

from .reads import Reader

__all__ = ["LAG_SQL", "REPLICA_LAG", "ReplicaLagging", "lag_check", "replica_lag_seconds"]

REPLICA_LAG = Gauge(
    "flow_query_replica_lag_seconds",
    "How far the database the query service reads from replays behind the primary, in seconds "
    "(0 on a primary or a replica that has replayed all it received); set by each readiness check",
)

LAG_SQL = """
    SELECT CASE
           WHEN NOT pg_is_in_recovery() THEN 0
           WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
           ELSE greatest(0, coalesce(extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()), 0))
       END::float8 AS lag"""
_LAG = LAG_SQL


class ReplicaLagging(RuntimeError):
    """The replica replays further behind the primary than the service accepts."""


async def replica_lag_seconds(engine: AsyncEngine) -> float:
    row = await Reader(engine).fetchrow(_LAG)
    if row is None:  # the statement always answers one row
        raise RuntimeError("the replica lag statement answered no row")
    return float(row["lag"])


def lag_check(engine: AsyncEngine, max_lag_seconds: float) -> Check:
    """A readiness check: sets the gauge, and raises when the lag is over `max_lag_seconds`."""

    async def check() -> None:
        lag = await replica_lag_seconds(engine)
        REPLICA_LAG.set(lag)
        if lag > max_lag_seconds:
            raise ReplicaLagging(
                f"replica replays {lag:.1f} s behind the primary (at most {max_lag_seconds:g} s allowed)"
            )

    return check
