"""Database credentials from Secrets Manager (the stack's LocalStack) against the stack's real
PostgreSQL, which asks every role but the superuser for its password: the secret's credentials are
used, a refused login reads the secret again, a rotation needs no restart and loses no posting."""

import asyncio
import json
import logging
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from flow_kit.db import create_database, create_engine
from flow_kit.migrations import asyncpg_dsn
from flow_kit.secrets import Credentials, DatabaseCredentials
from flow_kit.settings import DatabaseSettings
from tests.conftest import aws_session
from tests.engine_helpers import apply, posting
from tools.devstack.approle import APP_ROLE, PRIMARY_SECRET, REPLICA_SECRET, grant_sql, login_sql, new_password


@pytest.fixture(autouse=True)
def _local_aws(monkeypatch, stack):
    """LocalStack's credentials for the in-process AWS clients (AwsClients reads the environment)."""
    if not stack.replica:
        pytest.skip("the stack runs on an external PostgreSQL: no app role, no secrets")
    for name, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
async def secretsmanager(stack):
    session = aws_session()
    async with session.client("secretsmanager", endpoint_url=stack.aws_endpoint) as client:
        yield client


async def _superuser(stack, sql: str, *args, url: str | None = None):
    """Rows of `sql` run as postgres on the primary (`url`: another of its databases); without
    arguments `sql` may be several statements, and nothing is returned."""
    conn = await asyncpg.connect(asyncpg_dsn(url or stack.database_url))
    try:
        return await conn.fetch(sql, *args) if args else await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
async def role(stack):
    """A login role of the test's own (the services' flow_app is left alone), dropped afterwards."""
    name, password = f"t_{uuid.uuid4().hex[:10]}", new_password()
    await _superuser(stack, f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
    yield name, password
    await _superuser(stack, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", name)
    await _superuser(stack, f"DROP ROLE IF EXISTS {name}")


@pytest.fixture
def secret(stack, secretsmanager):
    """`await secret(value)`: a new secret holding `value` (a dict, as JSON); returns its id."""
    async def make(value: dict) -> str:
        name = f"test/{uuid.uuid4().hex[:10]}"
        await secretsmanager.create_secret(Name=name, SecretString=json.dumps(value))
        return name
    return make


def _settings(stack, secret_id: str, url: str | None = None, refresh: float = 300) -> DatabaseSettings:
    return DatabaseSettings(database_url=url or f"postgresql+asyncpg://127.0.0.1:{stack.postgres.port}/flow",
                            database_secret_id=secret_id, database_pool_size=1, aws_endpoint_url=stack.aws_endpoint,
                            database_secret_refresh_seconds=refresh)


async def _whoami(engine) -> tuple:
    async with engine.connect() as conn:
        row = (await conn.execute(text(
            "SELECT current_user, current_database(), pg_is_in_recovery(), pg_backend_pid(), "
            "current_setting('application_name'), current_setting('TimeZone')"))).one()
    return tuple(row)


async def test_create_database_logs_in_with_the_secrets_credentials(stack, role, secret):
    name, password = role
    # The secret names the server: it wins over the URL's host, port and database (here: the replica's).
    full = await secret({"username": name, "password": password, "host": "127.0.0.1",
                         "port": stack.postgres.port, "dbname": "flow"})
    elsewhere = f"postgresql+asyncpg://127.0.0.1:{stack.replica.port}/postgres"
    engine = create_database(_settings(stack, full, elsewhere), "t-a")
    try:
        who, database, in_recovery, _, application, zone = await _whoami(engine)
        assert (who, database, in_recovery, application, zone) == (name, "flow", False, "t-a", "UTC")
        assert engine.url.password is None and password not in repr(engine.url)
    finally:
        await engine.dispose()
    # A secret with only the credentials: the URL says where (the replica, this time).
    bare = await secret({"username": name, "password": password})
    engine = create_database(_settings(stack, bare, f"postgresql+asyncpg://127.0.0.1:{stack.replica.port}/flow"), "t-b")
    try:
        who, database, in_recovery, *_ = await _whoami(engine)
        assert (who, database, in_recovery) == (name, "flow", True)
    finally:
        await engine.dispose()


async def test_a_replica_shares_the_primarys_secret_and_keeps_its_own_server(stack, role, secret):
    # flow_app's secret on RDS names the primary; query, told so, takes only the login from it.
    name, password = role
    primarys = await secret({"username": name, "password": password, "host": "127.0.0.1",
                             "port": stack.postgres.port, "dbname": "flow"})
    settings = _settings(stack, primarys, f"postgresql+asyncpg://127.0.0.1:{stack.replica.port}/flow")
    for server_from_secret, expected_in_recovery in ((True, False), (False, True)):
        engine = create_database(settings.model_copy(update={"database_server_from_secret": server_from_secret}),
                                 "t-replica")
        try:
            who, database, in_recovery, *_ = await _whoami(engine)
            assert (who, database, in_recovery) == (name, "flow", expected_in_recovery)
        finally:
            await engine.dispose()


async def test_without_a_secret_it_is_create_engine(stack):
    settings = DatabaseSettings(database_url=stack.database_url, database_pool_size=3)
    engine, plain = create_database(settings, "t-plain"), create_engine(stack.database_url, 3, "t-plain")
    try:
        assert (engine.url, engine.pool.size(), engine.pool._pre_ping) == \
            (plain.url, plain.pool.size(), plain.pool._pre_ping)
        assert (await _whoami(engine))[0] == "postgres"
    finally:
        await engine.dispose()
        await plain.dispose()


async def test_a_wrong_password_in_the_secret_is_refused_after_one_more_read(stack, role, secret):
    name, _ = role
    secret_id = await secret({"username": name, "password": "not-the-password"})
    settings = _settings(stack, secret_id)
    credentials = DatabaseCredentials(settings, min_refresh_interval=0.2)
    engine = create_database(settings, "t-wrong", credentials)
    try:
        with pytest.raises(DBAPIError, match="password authentication failed"):
            await _whoami(engine)
        assert credentials.fetches == 2  # the first read, and one more after the refusal: then it gives up
    finally:
        await engine.dispose()


async def test_a_rotation_needs_no_new_engine(stack, role, secret, secretsmanager, caplog):
    caplog.set_level(logging.DEBUG)
    name, old = role
    secret_id = await secret({"username": name, "password": old, "host": "127.0.0.1", "port": stack.postgres.port})
    settings = _settings(stack, secret_id)
    credentials = DatabaseCredentials(settings, min_refresh_interval=0.2)
    engine = create_database(settings, "t-rotate", credentials)
    try:
        before = await _whoami(engine)
        new = new_password()
        await _superuser(stack, f"ALTER ROLE {name} PASSWORD '{new}'")
        await secretsmanager.put_secret_value(SecretId=secret_id, SecretString=json.dumps(
            {"username": name, "password": new, "host": "127.0.0.1", "port": stack.postgres.port}))
        # The pooled session outlives the rotation.
        assert await _whoami(engine) == before
        # A new one (the old one ended, as after a failover or a pool recycle) is refused with the
        # cached password, reads the secret again and logs in with the new one.
        await _superuser(stack, "SELECT pg_terminate_backend($1)", before[3])
        after = await _whoami(engine)
        assert after[0] == name and after[3] != before[3]
        assert credentials.fetches == 2
        with pytest.raises(asyncpg.InvalidPasswordError):  # the old password is really gone
            await asyncpg.connect(host="127.0.0.1", port=stack.postgres.port, user=name, password=old, database="flow")
    finally:
        await engine.dispose()
    logged = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "authentication failed" in logged or "login refused" in logged
    leaks = [f"{r.name}: {r.getMessage()[:300]}" for r in caplog.records
             if old in f"{r.getMessage()} {r.__dict__}" or new in f"{r.getMessage()} {r.__dict__}"]
    assert not leaks, leaks


async def test_the_secret_is_read_again_after_the_refresh_period(stack, role, secret, secretsmanager):
    name, password = role
    secret_id = await secret({"username": name, "password": password})
    credentials = DatabaseCredentials(_settings(stack, secret_id, refresh=0.3))
    first = await credentials.current()
    assert await credentials.current() is first and credentials.fetches == 1  # cached
    await secretsmanager.put_secret_value(SecretId=secret_id,
                                          SecretString=json.dumps({"username": name, "password": "p2"}))
    await asyncio.sleep(0.35)
    assert (await credentials.current()).password == "p2" and credentials.fetches == 2
    assert password not in repr(first) and "p2" not in repr(await credentials.current())
    assert Credentials.from_secret("x", json.dumps({"username": "u", "password": "p", "port": "5432"})).port == 5432


async def test_the_app_role_can_do_the_services_work_and_owns_nothing(stack, fresh_database):
    """flow_app's grants, on a database of the test's own and a role of the test's own: it applies a
    batch (advisory locks, COPY, the outbox), creates a missing partition through partition upkeep
    (which runs with its owner's rights), and can neither drop nor create tables."""
    name, password = f"t_{uuid.uuid4().hex[:10]}", new_password()
    database = fresh_database.rsplit("/", 1)[1]
    await _superuser(stack, grant_sql(name, database), url=fresh_database)
    await _superuser(stack, login_sql(password, name), url=fresh_database)
    latest = (await _superuser(stack, "SELECT max(c.relname::text) FROM pg_inherits i "
                                      "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::text::regclass",
                               "flow.transaction", url=fresh_database))[0][0]
    await _superuser(stack, f"DROP TABLE flow.{latest}", url=fresh_database)
    engine = create_engine(f"postgresql+asyncpg://{name}:{password}@127.0.0.1:{stack.postgres.port}/{database}", 2)
    try:
        (outcome,) = await apply(engine, [posting()])
        assert outcome.status == "applied"
        async with engine.begin() as conn:
            await conn.execute(text("SELECT flow.maintain_transaction_partitions()"))
            assert (await conn.execute(text(f"SELECT to_regclass('flow.{latest}') IS NOT NULL"))).scalar_one()
            assert (await conn.execute(text("SELECT pg_get_userbyid(relowner) FROM pg_class "
                                            f"WHERE oid = 'flow.{latest}'::regclass"))).scalar_one() == "postgres"
        for forbidden in ("DROP TABLE flow.balance", "CREATE TABLE flow.mine (id int)",
                          "SELECT flow.create_transaction_partitions('2040-01-01', 1)"):
            with pytest.raises(Exception, match="permission denied|must be owner"):
                async with engine.begin() as conn:
                    await conn.execute(text(forbidden))
    finally:
        await engine.dispose()
        await _superuser(stack, f"DROP OWNED BY {name}", url=fresh_database)
        await _superuser(stack, f"DROP ROLE {name}")


async def poster_once(branch: str, today: str, http, ingest_url: str) -> None:
    body = {"branch": branch, "account": "warmup", "amount": "1.00", "debitcredit": "C", "eventcode": 1,
            "dateref": today}
    response = await http.post(f"{ingest_url}/v1/transactions", json=body)
    assert response.status_code == 202, response.text


async def test_a_password_rotation_under_load_loses_no_posting(stack, ingest_url, http, callbacks, secretsmanager):
    """flow_app's password changes (ALTER ROLE on the primary, then the secrets) while postings flow,
    and its sessions end, as they do when a rotation makes them reconnect: every posting is accepted
    and applied, with no restart."""
    old = json.loads((await secretsmanager.get_secret_value(SecretId=PRIMARY_SECRET))["SecretString"])
    assert old["username"] == APP_ROLE
    for service in ("ingest", "engine", "query"):
        assert old["password"] not in json.dumps(stack.service_env(service))
    branch, today = f"ROT{uuid.uuid4().hex[:6]}", datetime.now(UTC).date().isoformat()
    sent: list[dict] = []
    answers: list[int] = []
    stopping = asyncio.Event()

    async def poster(n: int) -> None:
        while not stopping.is_set():
            body = {"branch": branch, "account": f"{n:09d}", "amount": "1.00", "debitcredit": "C", "eventcode": 1,
                    "dateref": today, "tracekey": str(uuid.uuid4())}
            sent.append(body)
            answers.append((await http.post(f"{ingest_url}/v1/transactions", json=body)).status_code)
            await asyncio.sleep(0.02)

    # One request first: concurrent first requests to a cold ingest are refused with 503 R090 while it
    # fetches the issuer's keys (flow_kit.auth), which has nothing to do with the database.
    await poster_once(branch, today, http, ingest_url)
    posters = [asyncio.create_task(poster(n)) for n in range(4)]
    try:
        await asyncio.sleep(1.0)
        new = new_password()
        await _superuser(stack, login_sql(new))
        rotated = datetime.now(UTC)
        for secret_id, port in ((PRIMARY_SECRET, stack.postgres.port), (REPLICA_SECRET, stack.replica.port)):
            await secretsmanager.put_secret_value(SecretId=secret_id,
                                                  SecretString=json.dumps({**old, "password": new, "port": port}))
        ended = await _superuser(stack, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                        "WHERE usename = $1 AND (state = 'idle' OR application_name = 'flow-engine')",
                                 APP_ROLE)
        assert ended[0][0] > 0  # the engine's sessions (at least) were there to end
        await asyncio.sleep(2.0)
    finally:
        stopping.set()
        await asyncio.gather(*posters)
    assert answers and set(answers) == {202}, sorted(set(answers))
    started = time.monotonic()
    outcomes = await callbacks.collect({b["tracekey"] for b in sent}, timeout=60)
    statuses = {o["status"] for b in sent for o in outcomes.get(b["tracekey"], [{"status": "missing"}])}
    assert statuses == {"applied"}, statuses
    # The engine logged in again, with the new password (the old one no longer works).
    fresh = await _superuser(stack, "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 "
                                    "AND application_name = 'flow-engine' AND backend_start > $2", APP_ROLE, rotated)
    assert fresh[0][0] > 0
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(host="127.0.0.1", port=stack.postgres.port, user=APP_ROLE, password=old["password"],
                              database="flow")
    assert (await http.get(f"http://127.0.0.1:{stack.config.engine_port}/readyz")).status_code == 200
    # Neither password is in any log of the stack (services and PostgreSQL).
    logs = [*Path(stack.config.log_dir).glob("*.log"), stack.postgres.log, stack.replica.log]
    for log in logs:
        content = log.read_text(errors="replace")
        assert old["password"] not in content and new not in content, log
    print(f"{len(sent)} postings around the rotation, all applied {time.monotonic() - started:.1f} s after the last")
