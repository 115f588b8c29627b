"""The archive (flow-archive, sql/0009, flow_query.archive) against the test stack's PostgreSQL, its
replica and LocalStack's S3 (the archive bucket of infra/cloudformation/archive.yaml):

two past months of real partitions with postings are archived, after which every statement page, read
by id and read by tracekey of them answers as before (from the archive, saying so), and reconciliation
finds nothing; crashes on the way (SIGKILL mid-run, a half-written export, S3 refusing) lose nothing
and the next run finishes; two runs at once drop each month once; a restore puts a month back.

The tests of this module build on each other, in order.
"""

import io
import random
import signal
import subprocess
import sys
import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import asyncpg
import boto3
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from flow_archive.job import LOCK_KEY, archivable_months
from flow_archive.settings import ArchiveSettings
from flow_engine.archive_stats import FAILED_RUNS, LAST_SUCCESS, MONTHS_ARCHIVED, ArchiveStats
from flow_engine.reconcile import find_mismatches
from flow_kit import lake
from flow_kit.db import create_engine
from flow_kit.migrations import asyncpg_dsn
from tests.waiting import wait_until_async

TODAY = datetime.now(UTC).date()


def month_back(n: int) -> date:
    month = TODAY.replace(day=1)
    for _ in range(n):
        month = (month - timedelta(days=1)).replace(day=1)
    return month


# Two months well past any retention the job accepts, and the run's retention: 60 days.
MONTHS = [month_back(6), month_back(5)]
RETENTION = "60"
BRANCH = f"A{uuid.uuid4().hex[:8]}"
ACCOUNTS = [f"{n:09d}" for n in range(1, 6)]


def run_archive(stack, *args: str, **settings) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flow_archive", *args], env=stack.archive_env(
        retention_days=RETENTION, file_rows=1000, row_group_rows=1000, **settings),
        capture_output=True, text=True, timeout=120)


def spawn_archive(stack, **settings) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "flow_archive", "run"], env=stack.archive_env(
        retention_days=RETENTION, file_rows=1000, row_group_rows=1000, **settings),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def s3(stack):
    return boto3.client("s3", endpoint_url=stack.aws_endpoint, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key="test")


async def sql(stack, query: str, *args):
    conn = await asyncpg.connect(asyncpg_dsn(stack.database_url))
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def partitions(stack) -> set[date]:
    rows = await sql(stack, "SELECT month FROM (SELECT unnest($1::date[]) AS month) m "
                            "WHERE flow.transaction_partition_of(month) IS NOT NULL", MONTHS)
    return {r["month"] for r in rows}


async def archived(stack) -> dict[date, str]:
    return {r["month"]: r["state"] for r in await sql(stack, "SELECT month, state FROM flow.archive_month "
                                                             "WHERE month = ANY($1)", MONTHS)}


def postings() -> list[dict]:
    """About 1,800 postings over the two months and this month, some sharing tracekeys."""
    rng = random.Random(18)
    shared = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(5)]
    days = [m + timedelta(days=d) for m in MONTHS for d in range(0, 28, 3)] + [TODAY - timedelta(days=1), TODAY]
    rows = []
    for n in range(1800):
        day = rng.choice(days)
        created = datetime.combine(day, time(rng.randrange(24), rng.randrange(60), rng.randrange(60),
                                             rng.choice([0, rng.randrange(1_000_000)])), tzinfo=UTC)
        rows.append({"id": uuid.UUID(int=rng.getrandbits(128)), "branch": BRANCH, "account": rng.choice(ACCOUNTS),
                     "amount": Decimal(rng.randrange(1, 10**7)) / 100, "debitcredit": rng.choice("DC"),
                     "eventcode": 1, "description": rng.choice([None, "café ☕ \"quoted\"\n", "rent"]),
                     "tracekey": shared[n % 5] if n % 97 == 0 else uuid.UUID(int=rng.getrandbits(128)),
                     "details": rng.choice([None, '{"invoice": 7, "lines": [1, 2.5, "x"]}', "{}"]),
                     "dateref": day, "acceptedat": created, "createdat": created, "callersub": "user-1",
                     "callerclient": rng.choice([None, "flow-dev"])})
    return rows


@pytest.fixture(scope="module")
async def ledger(stack):
    """The postings, written as the engine leaves them (transaction, outcome, day rows consistent: the
    reconciliation below proves it), in partitions of the two past months made for them."""
    rows = postings()
    conn = await asyncpg.connect(asyncpg_dsn(stack.database_url))
    try:
        await conn.execute("SELECT flow.create_transaction_partitions($1, 2)", MONTHS[0])
        async with conn.transaction():
            await conn.copy_records_to_table("transaction", schema_name="flow", columns=list(rows[0]),
                                             records=[tuple(r.values()) for r in rows])
            await conn.copy_records_to_table(
                "outcome", schema_name="flow",
                columns=["id", "tracekey", "fingerprint", "code", "createdat", "dateref", "callersub", "callerclient"],
                records=[(r["id"], r["tracekey"], uuid.uuid4(), "R000", r["createdat"], r["dateref"], r["callersub"],
                          r["callerclient"]) for r in rows])
            await conn.execute(
                """INSERT INTO flow.balance (branch, account, dateref, totaldebit, totalcredit, accumulateddebit,
                                             accumulatedcredit, tracekey, updatetracekey)
                   SELECT branch, account, dateref, debit, credit,
                          sum(debit) OVER w, sum(credit) OVER w, gen_random_uuid(), gen_random_uuid()
                   FROM (SELECT branch, account, dateref,
                                coalesce(sum(amount) FILTER (WHERE debitcredit = 'D'), 0) AS debit,
                                coalesce(sum(amount) FILTER (WHERE debitcredit = 'C'), 0) AS credit
                         FROM flow.transaction WHERE branch = $1 GROUP BY 1, 2, 3) d
                   WINDOW w AS (PARTITION BY branch, account ORDER BY dateref)""", BRANCH)
    finally:
        await conn.close()
    stack.wait_for_replica()
    return rows


async def reads(http, query_url, rows) -> dict:
    """Every read of the postings: by id, by tracekey, and statements (paged, across the archived months
    and into this month's; and one month alone), as the API answers them (less the `archived` flag)."""
    def plain(answer: dict) -> dict:
        answer.pop("archived", None)
        for item in answer.get("items", []):
            item.pop("archived", None)
        return answer

    found: dict = {}
    for row in rows[::20] + [r for r in rows if r["dateref"] < TODAY.replace(day=1) and r["id"].int % 29 == 0]:
        answer = await http.get(f"{query_url}/v1/transactions/{row['id']}")
        assert answer.status_code == 200, answer.text
        found[("id", row["id"])] = plain(answer.json())
    for tracekey in {r["tracekey"] for r in rows[::50]} | {r["tracekey"] for r in rows[:5]}:
        answer = await http.get(f"{query_url}/v1/transactions", params={"tracekey": str(tracekey)})
        found[("tracekey", tracekey)] = plain(answer.json())
    for account in ACCOUNTS:
        for start, end, limit in ((MONTHS[0], TODAY, 37), (MONTHS[1], MONTHS[1] + timedelta(days=27), 1000),
                                  (MONTHS[0] + timedelta(days=10), MONTHS[1] + timedelta(days=3), 5)):
            cursor, pages = None, []
            while True:
                params = {"from": start.isoformat(), "to": end.isoformat(), "limit": str(limit)}
                answer = await http.get(f"{query_url}/v1/accounts/{BRANCH}/{account}/statement",
                                        params=params | ({"cursor": cursor} if cursor else {}))
                assert answer.status_code == 200, answer.text
                pages.append(plain(answer.json()))
                cursor = pages[-1]["next_cursor"]
                if not cursor:
                    break
            found[("statement", account, start, end, limit)] = pages
    return found


async def reconciled(stack) -> list:
    engine = create_engine(stack.database_url, 1)
    try:
        async with engine.connect() as conn:
            return await find_mismatches(conn, branch=BRANCH)
    finally:
        await engine.dispose()


def test_retention_must_outlive_the_window_the_queue_and_a_margin():
    with pytest.raises(ValidationError, match="shorter than the retroactive window"):
        ArchiveSettings(bucket="bucket", database_url="postgresql+asyncpg://h/db", retention_days=27)
    assert ArchiveSettings(bucket="bucket", database_url="postgresql+asyncpg://h/db", retention_days=28).retention_days == 28
    assert archivable_months([date(2026, 8, 1), date(2026, 9, 1)], date(2026, 10, 29), 30) == [date(2026, 8, 1)]
    assert archivable_months([date(2026, 9, 1)], date(2026, 10, 31), 30) == [date(2026, 9, 1)]


async def test_pg_partmans_own_retention_stays_off(stack):
    if not (await sql(stack, "SELECT to_regclass('partman.part_config') IS NOT NULL AS partman"))[0]["partman"]:
        pytest.skip("pg_partman is not installed here: native partitions, nothing else drops them")
    rows = await sql(stack, "SELECT retention FROM partman.part_config WHERE parent_table = 'flow.transaction'")
    assert [r["retention"] for r in rows] == [None]  # only flow-archive drops partitions


BEFORE: dict = {}


async def test_archiving_two_months_survives_a_sigkill_and_reads_answer_as_before(stack, ledger, http, query_url):
    assert not await reconciled(stack)
    BEFORE.update(await reads(http, query_url, ledger))
    # SIGKILLed as soon as its first file is in S3: between export and drop.
    job = spawn_archive(stack)
    bucket, first = stack.outputs["ArchiveBucketName"], lake.month_prefix("flow/", MONTHS[0])
    client = s3(stack)

    def first_file_written() -> int:
        written = client.list_objects_v2(Bucket=bucket, Prefix=first).get("KeyCount", 0)
        assert written or job.poll() is None, job.stdout.read()
        return written

    await wait_until_async(first_file_written, f"flow-archive's first file under {first}", 60, interval=0.02,
                           describe=lambda _: job.stdout.read())
    job.send_signal(signal.SIGKILL)
    job.wait()
    assert await partitions(stack) == set(MONTHS)  # nothing dropped yet
    done = run_archive(stack, "run")
    assert done.returncode == 0, done.stdout + done.stderr
    assert await partitions(stack) == set()
    assert await archived(stack) == {m: "archived" for m in MONTHS}
    manifest = lake.Manifest.from_json(client.get_object(Bucket=bucket, Key=lake.manifest_key("flow/", MONTHS[0]))["Body"].read())
    assert manifest.postings == sum(1 for r in ledger if r["dateref"].replace(day=1) == MONTHS[0])
    assert manifest.schema_version == lake.SCHEMA_VERSION and manifest.sums and all(f.rows <= 1000 for f in manifest.files)
    table = pq.read_table(io.BytesIO(client.get_object(Bucket=bucket, Key=manifest.files[0].key)["Body"].read()))
    assert table.schema.equals(lake.SCHEMA)  # DECIMAL(15,2), UUID, DATE, timestamps typed
    stack.wait_for_replica()
    after = await reads(http, query_url, ledger)
    assert after == BEFORE
    answer = (await http.get(f"{query_url}/v1/transactions/{next(r['id'] for r in ledger if r['dateref'] < MONTHS[1])}")).json()
    assert answer["archived"] is True
    assert not await reconciled(stack)


async def test_a_late_change_to_a_verified_month_stops_its_drop(stack):
    """What the job checks under the partition's lock: the month as verified, or no drop."""
    month = month_back(4)
    with pytest.raises(asyncpg.PostgresError, match="changed since its export was verified|no partition"):
        await sql(stack, "SELECT flow.create_transaction_partitions($1, 1)", month)
        await sql(stack, "INSERT INTO flow.archive_month (month, state, partition_name, manifest_key, postings, "
                         "totaldebit, totalcredit) VALUES ($1, 'verified', 'x', 'k', 1, 0, 0)", month)
        await sql(stack, "SELECT flow.drop_archived_month($1)", month)
    await sql(stack, "DELETE FROM flow.archive_month WHERE month = $1", month)
    assert (await sql(stack, "SELECT flow.transaction_partition_of($1) IS NOT NULL AS kept", month))[0]["kept"]


async def test_a_restored_month_reads_as_before_from_the_database(stack, ledger, http, query_url):
    done = run_archive(stack, "restore", f"{MONTHS[1]:%Y-%m}")
    assert done.returncode == 0, done.stdout + done.stderr
    assert await partitions(stack) == {MONTHS[1]}
    assert await archived(stack) == {MONTHS[0]: "archived"}
    stack.wait_for_replica()
    assert await reads(http, query_url, ledger) == BEFORE
    assert not await reconciled(stack)


async def test_s3_refusing_loses_nothing_and_a_half_written_export_is_redone(stack, ledger, http, query_url):
    refused = run_archive(stack, "run", bucket="no-such-bucket")
    assert refused.returncode != 0
    assert await partitions(stack) == {MONTHS[1]}
    failed = await sql(stack, "SELECT status FROM flow.archive_run ORDER BY id DESC LIMIT 1")
    assert failed[0]["status"] == "failed"
    # An earlier export's file, half written (truncated): the run finds it does not match, exports again.
    client, bucket = s3(stack), stack.outputs["ArchiveBucketName"]
    manifest = lake.Manifest.from_json(client.get_object(Bucket=bucket, Key=lake.manifest_key("flow/", MONTHS[1]))["Body"].read())
    whole = client.get_object(Bucket=bucket, Key=manifest.files[0].key)["Body"].read()
    client.put_object(Bucket=bucket, Key=manifest.files[0].key, Body=whole[: len(whole) // 2])
    done = run_archive(stack, "run")
    assert done.returncode == 0, done.stdout + done.stderr
    assert await partitions(stack) == set()
    assert client.get_object(Bucket=bucket, Key=manifest.files[0].key)["Body"].read() == whole
    stack.wait_for_replica()
    assert await reads(http, query_url, ledger) == BEFORE
    assert not await reconciled(stack)


async def test_two_runs_at_once_drop_each_month_once(stack):
    restored = run_archive(stack, "restore", f"{MONTHS[0]:%Y-%m}")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    # While the lock is held no run does anything.
    holder = await asyncpg.connect(asyncpg_dsn(stack.database_url))
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
        idle = run_archive(stack, "run")
        assert idle.returncode == 0 and "holds the lock" in idle.stdout + idle.stderr
        assert await partitions(stack) == {MONTHS[0]}
    finally:
        await holder.close()
    runs = [spawn_archive(stack) for _ in range(2)]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert await partitions(stack) == set() and await archived(stack) == {m: "archived" for m in MONTHS}
    assert not await reconciled(stack)


async def test_the_engine_reports_the_archive_in_its_metrics(stack):
    engine = create_engine(stack.database_url, 1)
    try:
        await ArchiveStats(engine, 60).sample()
    finally:
        await engine.dispose()
    assert MONTHS_ARCHIVED._value.get() >= len(MONTHS)
    assert 0 < datetime.now(UTC).timestamp() - LAST_SUCCESS._value.get() < 120
    assert FAILED_RUNS._value.get() == 0  # the failed run came before the last success
