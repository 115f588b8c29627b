"""Archive benchmark: prints figures, passes or fails nothing.

On a throwaway PostgreSQL cluster and LocalStack (S3, the bucket of infra/cloudformation/archive.yaml),
two months of --postings postings each over --accounts accounts (bulk-loaded on the server with their
outcome rows and consistent day rows). The older month is archived by the real job (flow_archive.job:
export, read back, verify, drop): its time and rows/s, the Parquet bytes per posting against the
partition's bytes (heap, and heap + indexes + TOAST). Then the real query service (one process, the
archive configured) answers, one request at a time and interleaved, a statement page of 100 lines and a
read by id from the archived month and from the month still in the database: p50 and p99 of each, side
by side in one run (and the first, cold, archive read of each kind: the file fetched from S3; then every
day file of the archived month is fetched once before the measured reads).

    .venv/bin/python -m bench.archive [--postings 5000000] [--accounts 10000] [--requests 300]
"""

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx

from bench.loading import run_parallel
from flow_archive.job import run as archive_run
from flow_archive.settings import ArchiveSettings
from flow_kit.aws import AwsClients
from flow_kit.db import create_engine
from flow_kit.migrations import asyncpg_dsn
from tools.devstack.issuer import DevIssuer
from tools.devstack.localstack import LocalStack
from tools.devstack.messaging import deploy_messaging, local_aws_env
from tools.devstack.postgres import PostgresCluster
from tools.devstack.processes import free_port, spawn, stop, wait_until
from tools.devstack.stack import AUDIENCE, ROOT, new_database

LOAD_WORKERS = 2

# Postings lo..hi of a month: deterministic ids (so reads by id can be drawn), amounts 0.01-1,000.00,
# a third debits, some descriptions and details, spread over the month's days and seconds.
_LOAD = """
    INSERT INTO flow.transaction (id, branch, account, amount, debitcredit, eventcode, description, tracekey, details,
                                  dateref, acceptedat, createdat)
    SELECT md5('t' || $3::text || n)::uuid, '0001', lpad((n % $4)::text, 9, '0'), ((n * 7919) % 100000 + 1) / 100.0,
           CASE WHEN n % 3 = 0 THEN 'D' ELSE 'C' END, 1, CASE WHEN n % 5 = 0 THEN 'payment ' || n END,
           md5('k' || $3::text || n)::uuid, CASE WHEN n % 10 = 0 THEN '{"ref": 1}'::json END, d, t, t
    FROM generate_series($1::bigint, $2::bigint) n,
         LATERAL (SELECT $3::date + (n % $5)::int AS d) day,
         LATERAL (SELECT (day.d + make_interval(secs => (n * 37 % 86400) + (n % 1000) / 1000.0)) AT TIME ZONE 'UTC' AS t) at"""
_OUTCOMES = """INSERT INTO flow.outcome (id, tracekey, fingerprint, code, createdat, dateref)
               SELECT id, tracekey, md5(id::text)::uuid, 'R000', createdat, dateref FROM flow.transaction
               WHERE dateref >= $1 AND dateref < $2"""
_BALANCES = """INSERT INTO flow.balance (branch, account, dateref, totaldebit, totalcredit, accumulateddebit,
                                         accumulatedcredit, tracekey, updatetracekey)
               SELECT branch, account, dateref, debit, credit, sum(debit) OVER w, sum(credit) OVER w,
                      gen_random_uuid(), gen_random_uuid()
               FROM (SELECT branch, account, dateref, coalesce(sum(amount) FILTER (WHERE debitcredit = 'D'), 0) AS debit,
                            coalesce(sum(amount) FILTER (WHERE debitcredit = 'C'), 0) AS credit
                     FROM flow.transaction GROUP BY 1, 2, 3) d
               WINDOW w AS (PARTITION BY branch, account ORDER BY dateref)"""


def month_back(today: date, n: int) -> date:
    month = today.replace(day=1)
    for _ in range(n):
        month = (month - timedelta(days=1)).replace(day=1)
    return month


def last_day(month: date) -> date:
    return (month.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(-(-len(ordered) * p // 100)) - 1))]


async def load(url: str, months: list[date], postings: int, accounts: int) -> float:
    started = time.perf_counter()
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute("SELECT flow.create_transaction_partitions($1, 2)", months[0])
    finally:
        await conn.close()
    chunk = -(-postings // (LOAD_WORKERS * 4))
    todo = [(_LOAD, (lo, min(lo + chunk - 1, postings), m, accounts, last_day(m).day))
            for m in months for lo in range(1, postings + 1, chunk)]
    todo += [(_OUTCOMES, (m, last_day(m) + timedelta(days=1))) for m in months]
    await run_parallel(url, todo, LOAD_WORKERS, "SET work_mem = '512MB'")
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute("SET work_mem = '1GB'")
        await conn.execute(_BALANCES)
        for table in ("transaction", "outcome", "balance"):
            await conn.execute(f"VACUUM (ANALYZE) flow.{table}")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def partition_sizes(url: str, month: date) -> tuple[int, int, int]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        row = await conn.fetchrow("SELECT pg_relation_size(p) AS heap, pg_total_relation_size(p) AS total, "
                                  "(SELECT count(*) FROM flow.transaction WHERE dateref >= $1 AND dateref <= $2) AS n "
                                  "FROM flow.transaction_partition_of($1) p", month, last_day(month))
        return row["heap"], row["total"], row["n"]
    finally:
        await conn.close()


def start_query(url: str, issuer: DevIssuer, port: int, endpoint: str, bucket: str, state: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOW_")} | local_aws_env(endpoint)
    env.update({"FLOW_QUERY_DATABASE_URL": url, "FLOW_QUERY_HTTP_PORT": str(port), "FLOW_QUERY_HTTP_HOST": "127.0.0.1",
                "FLOW_QUERY_LOG_LEVEL": "WARNING", "FLOW_QUERY_DATABASE_POOL_SIZE": "2",
                "FLOW_QUERY_AWS_ENDPOINT_URL": endpoint, "FLOW_QUERY_ARCHIVE_BUCKET": bucket,
                "FLOW_QUERY_ARCHIVE_CACHE_DIR": str(state / "query-cache"),
                "FLOW_AUTH_ISSUER": issuer.issuer, "FLOW_AUTH_AUDIENCE": AUDIENCE})
    log = state / "query.log"
    proc = spawn([sys.executable, "-m", "flow_query"], log=log, env=env, cwd=ROOT)

    def ready() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return response.status == 200
    wait_until(ready, 60, "query service", proc, log)
    return proc


async def measure(base: str, token: str, archived: date, kept: date, accounts: int, postings: int, requests: int,
                  rng: random.Random) -> dict:
    """Interleaved: statement page of 100 and read by id, archived month vs database month."""
    def statement(month: date):
        account = f"{rng.randrange(accounts):09d}"
        return f"/v1/accounts/0001/{account}/statement", {"from": month.isoformat(), "to": last_day(month).isoformat(),
                                                         "limit": "100"}

    def by_id(month: date):
        digest = hashlib.md5(f"t{month.isoformat()}{rng.randrange(1, postings + 1)}".encode()).hexdigest()
        return f"/v1/transactions/{uuid.UUID(hex=digest)}", {}

    kinds = {("statement", "archive"): lambda: statement(archived), ("statement", "database"): lambda: statement(kept),
             ("by id", "archive"): lambda: by_id(archived), ("by id", "database"): lambda: by_id(kept)}
    times: dict = {k: [] for k in kinds}
    cold: dict = {}
    async with httpx.AsyncClient(base_url=base, headers={"authorization": f"Bearer {token}"}, timeout=120) as http:
        for kind, make in kinds.items():  # the first read of each kind: for the archive, files come from S3
            path, params = make()
            started = time.perf_counter()
            answer = await http.get(path, params=params)
            cold[kind] = (time.perf_counter() - started) * 1000
            assert answer.status_code == 200, answer.text
        for day in range(last_day(archived).day):  # each day file of the archived month fetched once
            n = day + last_day(archived).day * rng.randrange(postings // last_day(archived).day)
            digest = hashlib.md5(f"t{archived.isoformat()}{n or last_day(archived).day}".encode()).hexdigest()
            (await http.get(f"/v1/transactions/{uuid.UUID(hex=digest)}")).raise_for_status()
        for _ in range(20):  # warm-up
            for make in kinds.values():
                path, params = make()
                (await http.get(path, params=params)).raise_for_status()
        for _ in range(requests):
            for kind, make in kinds.items():
                path, params = make()
                started = time.perf_counter()
                answer = await http.get(path, params=params)
                times[kind].append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200, answer.text
                if kind[0] == "statement":
                    body = answer.json()
                    assert body["archived"] == (kind[1] == "archive") and len(body["items"]) == 100, body
                else:
                    assert answer.json()["archived"] == (kind[1] == "archive")
    return {"times": times, "cold": cold}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postings", type=int, default=5_000_000, help="postings per month (two months are loaded)")
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=300, help="measured requests per kind")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    rng = random.Random(1)
    today = datetime.now(UTC).date()
    archived, kept = month_back(today, 3), month_back(today, 2)
    retention = (today - last_day(archived)).days  # the older month is due, the newer one is not

    state = Path(tempfile.mkdtemp(prefix="flow-bench-archive-"))
    state.chmod(0o755)
    cluster = PostgresCluster(state / "data", free_port(), fast=True)
    localstack = LocalStack(ROOT / ".state" / "localstack-venv", state / "localstack", free_port())
    issuer = query = None
    try:
        cluster.start()
        localstack.start()
        bucket = deploy_messaging(localstack.endpoint, ROOT / "infra" / "cloudformation" / "archive.yaml",
                                  {"RetentionDays": "1"}, stack_name="flow-archive")["ArchiveBucketName"]
        url = await new_database(cluster.url.rsplit("/", 1)[0], "bench_archive")
        print(f"loading 2 x {args.postings:,} postings over {args.accounts:,} accounts ...", flush=True)
        seconds = await load(url, [archived, kept], args.postings, args.accounts)
        print(f"  loaded in {seconds:.0f} s", flush=True)
        heap, total, rows = await partition_sizes(url, archived)

        os.environ.update(local_aws_env(localstack.endpoint))
        settings = ArchiveSettings(bucket=bucket, database_url=url, retention_days=retention,
                                   aws_endpoint_url=localstack.endpoint)
        db = create_engine(url, 3, "flow-archive")
        try:
            async with AwsClients(settings).client("s3") as s3:
                started = time.perf_counter()
                [result] = await archive_run(db, s3, settings, today)
                archive_seconds = time.perf_counter() - started
        finally:
            await db.dispose()
        print(f"archived {result.month:%Y-%m}: {result.postings:,} postings in {archive_seconds:.1f} s", flush=True)

        issuer = DevIssuer(0, audience=AUDIENCE).start()
        token = issuer.mint(["flow.read"])
        port = free_port()
        query = start_query(url, issuer, port, localstack.endpoint, bucket, state)
        measured = await measure(f"http://127.0.0.1:{port}", token, archived, kept, args.accounts, args.postings,
                                 args.requests, rng)
        report(args, rows, heap, total, result, archive_seconds, measured)
    finally:
        if query:
            stop(query)
        if issuer:
            issuer.stop()
        localstack.stop()
        cluster.stop()
        if args.keep:
            print(f"kept {state}")
        else:
            shutil.rmtree(state, ignore_errors=True)


def report(args, rows: int, heap: int, total: int, result, seconds: float, measured: dict) -> None:
    print()
    print(f"archive of one month: {rows:,} postings, {args.accounts:,} accounts")
    print(f"  time {seconds:.1f} s (export, read back and verify, drop), {rows / seconds:,.0f} postings/s, "
          f"{result.files} Parquet files, row groups of {os.environ.get('FLOW_ARCHIVE_ROW_GROUP_ROWS', 4096)}")
    print(f"  bytes per posting: Parquet {result.parquet_bytes / rows:.1f}, partition heap {heap / rows:.1f}, "
          f"partition with indexes and TOAST {total / rows:.1f} (Parquet/heap {result.parquet_bytes / heap:.2f}, "
          f"Parquet/total {result.parquet_bytes / total:.2f})")
    print()
    print(f"| read, ms ({args.requests} each, one at a time) | archive p50 | archive p99 | database p50 | database p99 | archive first read (cold) |")
    print("|---|---|---|---|---|---|")
    times, cold = measured["times"], measured["cold"]
    for kind in ("statement", "by id"):
        a, d = times[(kind, "archive")], times[(kind, "database")]
        label = "statement page of 100" if kind == "statement" else "transaction by id"
        print(f"| {label} | {percentile(a, 50):.1f} | {percentile(a, 99):.1f} | {percentile(d, 50):.1f} | "
              f"{percentile(d, 99):.1f} | {cold[(kind, 'archive')]:.0f} |")
    print(json.dumps({"rows": rows, "seconds": seconds, "parquet_bytes": result.parquet_bytes, "heap": heap,
                      "total": total}))


if __name__ == "__main__":
    asyncio.run(main())
