"""Query benchmark: prints a table, passes or fails nothing.

On one throwaway PostgreSQL cluster, two databases side by side, each over the same accounts and one
year of history, bulk-loaded on the server (generate_series) with balances computed from the
transactions (day totals, then window sums for the accumulated totals) and checked with
reconciliation: a small one (--small transactions, 1M by default) and a large one (--large, 10M).
1% of the accounts are "busy" and receive 30% of the postings, so statement pages of 100 lines exist
in both; the large database gives every account --large/--small times the history of the small one.

Each database is served by the real query service (`python -m flow_query`, a pool of as many
database connections as client workers, bearer tokens from an in-process development issuer) and read
over HTTP by a concurrent client (aiohttp; for each --concurrency level that many workers, warm-up
first; then again one request at a time, --serial requests per kind): a statement page of 100 lines (random busy account, random range holding
at least 201 lines), the next page through its `next_cursor`, a balance at a random date, a
transaction by a random existing id. Per kind: p50 and p99 in ms for both databases, the large/small
ratio of the p50s (cost must not grow with history), the server time per request
(pg_stat_statements: planning + execution of every statement the request ran), so the database's
share and the HTTP/Python share can be told apart, and the CPU time the query service's process and
the client spent per request (from /proc and the client's own process time: robust where wall-clock
latencies are not, on a machine shared with other work); then EXPLAIN (ANALYZE, BUFFERS) of the
statement page on the large database.

Finally (unless --skip-ingest) the whole local stack: postings/s accepted by ingest, one posting per
request (32 concurrent clients) versus batches (500 postings, 4 concurrent).

    .venv/bin/python -m bench.query [--small 1000000] [--large 10000000] [--accounts 100000]
                                    [--requests 2000] [--concurrency 4,8] [--serial 500]
                                    [--skip-ingest] [--no-explain] [--keep]

1M + 10M: about 3 minutes to load and 3 to 4 to measure on 2 CPUs; `--small 100000 --large 1000000`
is a quick run.
"""

import argparse
import asyncio
import dataclasses
import hashlib
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import aiohttp
import asyncpg
import httpx

from bench.loading import run_parallel
from flow_kit.migrations import asyncpg_dsn
from tools.devstack.postgres import PostgresCluster
from tools.devstack.processes import free_port, spawn, stop, wait_until
from tools.devstack.stack import AUDIENCE, ROOT, new_database

DAYS = 365  # history: the last DAYS days up to today (UTC)
BUSY_ACCOUNTS = 0.01  # share of the accounts that are busy ...
BUSY_POSTINGS = 0.30  # ... and the share of the postings they receive
BUSY_MIN_LINES = 300  # in the small database, at least this many lines per busy account
LOAD_WORKERS = max(2, os.cpu_count() or 2)  # concurrent loading sessions
SAMPLE_ACCOUNTS = 500  # busy accounts whose statement ranges are prepared
WARMUP = 200  # requests per kind before measuring

# The throwaway cluster: durability is not under test (fast=True: fsync off); room for bulk loads,
# and pg_stat_statements to tell the database's time from the HTTP service's.
CLUSTER_SETTINGS = """
# bench/query.py
shared_buffers = 4GB
work_mem = 256MB
maintenance_work_mem = 1GB
max_parallel_maintenance_workers = 2
max_wal_size = 32GB
checkpoint_timeout = 1h
wal_level = minimal
max_wal_senders = 0
autovacuum = off
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track_planning = on
"""


def short(n: int) -> str:
    """1000000 -> 1M, 100000 -> 100k."""
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if n >= size and n % (size // 10) == 0:
            value = n / size
            return f"{value:g}{unit}"
    return f"{n:,}"


def transaction_id(n: int) -> uuid.UUID:
    """The id of the n-th generated posting, as the load draws it (md5 of 'flow-bench-n')."""
    return uuid.UUID(hashlib.md5(f"flow-bench-{n}".encode()).hexdigest())


def account_name(n: int) -> str:
    return f"{n:09d}"


@dataclasses.dataclass
class Shape:
    """What one database holds: `count` postings over `accounts` accounts and DAYS days up to `today`;
    accounts 0..busy-1 share `busy_count` postings evenly."""
    count: int
    accounts: int
    busy: int
    busy_count: int
    today: date

    @property
    def first_day(self) -> date:
        return self.today - timedelta(days=DAYS - 1)


def shapes(small: int, large: int, accounts: int) -> tuple[Shape, Shape]:
    busy = max(1, min(int(accounts * BUSY_ACCOUNTS), int(small * BUSY_POSTINGS) // BUSY_MIN_LINES))
    today = datetime.now(UTC).date()
    return tuple(Shape(n, accounts, busy, min(n, int(n * BUSY_POSTINGS)), today) for n in (small, large))


# --- loading ---------------------------------------------------------------------------------------

# Postings n in [$1, $2]: busy accounts take the first busy_count in turn, the others a random
# account; random reference day, amount, side; accepted during that day, applied 20 ms later.
_LOAD_TRANSACTIONS = """
INSERT INTO flow.transaction (id, branch, account, amount, debitcredit, eventcode, description, tracekey, details,
                              dateref, acceptedat, createdat)
SELECT md5('flow-bench-' || n)::uuid, '0001', lpad(a::text, 9, '0'), amount, debitcredit, 1, 'bench',
       gen_random_uuid(), '{"bench": true}'::json, d, at, at + interval '20 milliseconds'
FROM (SELECT n,
             CASE WHEN n <= $3 THEN n % $4 ELSE $4 + floor(random() * ($5 - $4))::int END AS a,
             ((1 + floor(random() * 100000)) / 100)::numeric(15,2) AS amount,
             CASE WHEN random() < 0.5 THEN 'D' ELSE 'C' END AS debitcredit,
             day AS d,
             least(now(), (day + random() * interval '1 day') AT TIME ZONE 'UTC') AS at
      FROM (SELECT n, $6::date + floor(random() * $7)::int AS day FROM generate_series($1::bigint, $2::bigint) n) g
     ) p
"""

_LOAD_OUTCOMES = """
INSERT INTO flow.outcome (id, tracekey, fingerprint, code, dateref, createdat)
SELECT id, tracekey, gen_random_uuid(), 'R000', dateref, createdat
FROM flow.transaction WHERE dateref >= $1 AND dateref < $2
"""

# One row per account and day with postings: that day's totals, the running totals up to and
# including it, the first posting's tracekey (created the row) and the last one's (last changed it).
_LOAD_BALANCES = """
INSERT INTO flow.balance (branch, account, dateref, totaldebit, totalcredit, accumulateddebit, accumulatedcredit,
                          tracekey, createdat, updatetracekey, updatedat)
SELECT branch, account, dateref, totaldebit, totalcredit,
       sum(totaldebit) OVER w, sum(totalcredit) OVER w, first_tracekey, first_at, last_tracekey, last_at
FROM (SELECT branch, account, dateref,
             coalesce(sum(amount) FILTER (WHERE debitcredit = 'D'), 0) AS totaldebit,
             coalesce(sum(amount) FILTER (WHERE debitcredit = 'C'), 0) AS totalcredit,
             (array_agg(tracekey ORDER BY createdat, id))[1] AS first_tracekey, min(createdat) AS first_at,
             (array_agg(tracekey ORDER BY createdat DESC, id DESC))[1] AS last_tracekey, max(createdat) AS last_at
      FROM flow.transaction
      WHERE account >= $1 AND account < $2
      GROUP BY branch, account, dateref) day
WINDOW w AS (PARTITION BY branch, account ORDER BY dateref)
"""

_LOADED_TABLES = ("transaction", "outcome", "balance")

# The keys and indexes of the loaded tables, as the schema defines them: dropped before the load and
# built again after it (building an index once is much cheaper than maintaining it row by row).
_KEYS = """
SELECT c.relname, con.conname, pg_get_constraintdef(con.oid)
FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace s ON s.oid = c.relnamespace
WHERE s.nspname = 'flow' AND c.relname = ANY($1::text[]) AND con.contype IN ('p', 'u') AND con.conparentid = 0
"""
_INDEXES = """
SELECT c.relname, i.relname, pg_get_indexdef(i.oid)
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid
     JOIN pg_namespace s ON s.oid = c.relnamespace
WHERE s.nspname = 'flow' AND c.relname = ANY($1::text[])
  AND NOT EXISTS (SELECT FROM pg_constraint con WHERE con.conindid = i.oid)
  AND NOT EXISTS (SELECT FROM pg_inherits h WHERE h.inhrelid = i.oid)
"""


def _months(first: date, last: date) -> list[date]:
    month, months = first.replace(day=1), []
    while month <= last:
        months.append(month)
        month = (month + timedelta(days=32)).replace(day=1)
    return months


async def _ensure_partitions(conn: asyncpg.Connection, shape: Shape) -> int:
    """A partition for every month of the history: pg_partman (when installed) made a few around
    today; the native function makes the others (a month partman already has is an overlap: skipped)."""
    created = 0
    for month in _months(shape.first_day, shape.today):
        try:
            created += await conn.fetchval("SELECT flow.create_transaction_partitions($1, 1)", month)
        except asyncpg.InvalidObjectDefinitionError:  # "would overlap partition ...": it exists already
            pass
    return created


async def _parallel(url: str, statements: list[tuple[str, tuple]]) -> None:
    """Runs the statements on LOAD_WORKERS sessions at once (FK triggers off: the event exists)."""
    await run_parallel(url, statements, LOAD_WORKERS, "SET session_replication_role = replica; SET work_mem = '1GB'")


async def load(server: str, name: str, shape: Shape) -> tuple[str, dict[str, float]]:
    """A fresh database holding `shape`, migrated, loaded, indexed, vacuumed and analysed."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    url = await new_database(server, name)
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await _ensure_partitions(conn, shape)
        keys = await conn.fetch(_KEYS, list(_LOADED_TABLES))
        indexes = await conn.fetch(_INDEXES, list(_LOADED_TABLES))
        for table, constraint, _ in keys:
            await conn.execute(f'ALTER TABLE flow."{table}" DROP CONSTRAINT "{constraint}"')
        for _, index, _ in indexes:
            await conn.execute(f'DROP INDEX flow."{index}"')
        timings["schema"] = time.perf_counter() - started

        mark = time.perf_counter()
        chunk = -(-shape.count // (LOAD_WORKERS * 4))
        await _parallel(url, [(_LOAD_TRANSACTIONS, (lo, min(lo + chunk - 1, shape.count), shape.busy_count, shape.busy,
                                                    shape.accounts, shape.first_day, DAYS))
                              for lo in range(1, shape.count + 1, chunk)])
        timings["transactions"] = time.perf_counter() - mark

        mark = time.perf_counter()
        months = _months(shape.first_day, shape.today)
        await _parallel(url, [(_LOAD_OUTCOMES, (m, (m + timedelta(days=32)).replace(day=1))) for m in months])
        timings["outcomes"] = time.perf_counter() - mark

        mark = time.perf_counter()
        slices = LOAD_WORKERS * 4
        bounds = [account_name(shape.accounts * k // slices) for k in range(slices)] + ["~"]
        # the busy accounts are the first ones: their slice is cut finer, so the sessions stay even
        busy_bounds = [account_name(shape.busy * k // LOAD_WORKERS) for k in range(LOAD_WORKERS)]
        bounds = sorted(set(busy_bounds + bounds))
        await _parallel(url, [(_LOAD_BALANCES, (lo, hi)) for lo, hi in zip(bounds, bounds[1:])])
        timings["balances"] = time.perf_counter() - mark

        mark = time.perf_counter()
        # One session per table at once; each index build may use parallel workers of its own.
        async def build(table: str) -> None:
            c = await asyncpg.connect(asyncpg_dsn(url))
            try:
                await c.execute("SET maintenance_work_mem = '1GB'")
                for t, constraint, definition in keys:
                    if t == table:
                        await c.execute(f'ALTER TABLE flow."{t}" ADD CONSTRAINT "{constraint}" {definition}')
                for t, _, definition in indexes:
                    if t == table:  # a partitioned table's index reads "ON ONLY": that would skip the partitions
                        await c.execute(definition.replace(" ON ONLY ", " ON ", 1))
            finally:
                await c.close()

        await asyncio.gather(*(build(t) for t in _LOADED_TABLES))
        timings["indexes"] = time.perf_counter() - mark

        mark = time.perf_counter()
        for table in _LOADED_TABLES:
            await conn.execute(f"VACUUM (ANALYZE) flow.{table}")
        await conn.execute("CHECKPOINT")
        timings["vacuum"] = time.perf_counter() - mark
    finally:
        await conn.close()
    timings["total"] = time.perf_counter() - started
    return url, timings


async def check(url: str, shape: Shape) -> dict:
    """Counts, global totals, and reconciliation of a sample of accounts (busy and ordinary)."""
    from flow_engine.reconcile import find_mismatches
    from flow_kit.db import create_engine

    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        transactions = await conn.fetchval("SELECT count(*) FROM flow.transaction")
        outcomes = await conn.fetchval("SELECT count(*) FROM flow.outcome")
        balances = await conn.fetchval("SELECT count(*) FROM flow.balance")
        totals = await conn.fetchval(
            """SELECT (SELECT (coalesce(sum(amount) FILTER (WHERE debitcredit = 'D'), 0),
                               coalesce(sum(amount) FILTER (WHERE debitcredit = 'C'), 0)) FROM flow.transaction)
                    = (SELECT (coalesce(sum(totaldebit), 0), coalesce(sum(totalcredit), 0)) FROM flow.balance)""")
        last = await conn.fetchval(
            """SELECT (SELECT (coalesce(sum(amount) FILTER (WHERE debitcredit = 'D'), 0),
                               coalesce(sum(amount) FILTER (WHERE debitcredit = 'C'), 0)) FROM flow.transaction)
                    = (SELECT (coalesce(sum(accumulateddebit), 0), coalesce(sum(accumulatedcredit), 0))
                       FROM (SELECT DISTINCT ON (branch, account) accumulateddebit, accumulatedcredit
                             FROM flow.balance ORDER BY branch, account, dateref DESC) l)""")
    finally:
        await conn.close()
    ranges = [(0, min(shape.busy, 10) - 1), (shape.accounts // 2, min(shape.accounts, shape.accounts // 2 + 200) - 1)]
    engine = create_engine(url, 1)
    wrong = accounts = 0
    async with engine.connect() as c:
        for lo, hi in ranges:
            wrong += len(await find_mismatches(c, branch="0001", account_from=account_name(lo), account_to=account_name(hi)))
            accounts += hi - lo + 1
    await engine.dispose()
    return {"transactions": transactions, "outcomes": outcomes, "balances": balances, "totals": totals,
            "last": last, "reconciled_accounts": accounts, "mismatches": wrong}


async def statement_ranges(url: str, shape: Shape, rng: random.Random) -> list[tuple[str, date, date]]:
    """(account, from, to) for sampled busy accounts: `to` today, `from` random but early enough that
    the range holds at least 201 lines (two full pages of 100 and one more)."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        out = []
        for a in rng.sample(range(shape.busy), min(shape.busy, SAMPLE_ACCOUNTS)):
            latest = await conn.fetchval(
                """SELECT dateref FROM flow.transaction WHERE branch = '0001' AND account = $1
                   ORDER BY dateref DESC OFFSET 200 LIMIT 1""", account_name(a))
            if latest is None:
                continue
            days = (latest - shape.first_day).days
            out.append((account_name(a), shape.first_day + timedelta(days=rng.randint(0, days)), shape.today))
        return out
    finally:
        await conn.close()


# --- the query service and the client --------------------------------------------------------------

def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status == 200


def start_query(url: str, issuer, port: int, pool: int, log: Path, token: str):
    """`python -m flow_query` on `url`, as tools/devstack/stack.py spawns it; ready once it has
    answered one authenticated request (the first one fetches the issuer's keys: requests arriving
    while that fetch runs are refused with 503 R090, so the concurrent client must not be first)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOW_")}
    env.update({"FLOW_QUERY_DATABASE_URL": url, "FLOW_QUERY_HTTP_PORT": str(port), "FLOW_QUERY_HTTP_HOST": "127.0.0.1",
                "FLOW_QUERY_LOG_LEVEL": "WARNING", "FLOW_QUERY_DATABASE_POOL_SIZE": str(pool),
                "FLOW_AUTH_ISSUER": issuer.issuer, "FLOW_AUTH_AUDIENCE": AUDIENCE})
    proc = spawn([sys.executable, "-m", "flow_query"], log=log, env=env, cwd=ROOT)
    wait_until(lambda: _http_ok(f"http://127.0.0.1:{port}/readyz"), 60, "query service", proc, log)
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/events", headers={"authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()
    return proc


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (/proc/<pid>/stat, Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    """Nearest rank."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(-(-len(ordered) * p // 100)) - 1))]


async def run_requests(http: aiohttp.ClientSession, requests: list, concurrency: int, check) -> tuple[list[float], float, list]:
    """Sends `requests` ((path, params)) from `concurrency` workers; returns the latencies (ms),
    the wall time (s) and `check(json)` of each answer."""
    todo = list(enumerate(requests))
    latencies: list[float] = [0.0] * len(requests)
    checked: list = [None] * len(requests)

    async def worker() -> None:
        while todo:
            n, (path, params) = todo.pop()
            started = time.perf_counter()
            async with http.get(path, params=params) as response:
                body = await response.read()
            latencies[n] = (time.perf_counter() - started) * 1000
            if response.status != 200:
                raise RuntimeError(f"GET {path} {params}: {response.status} {body[:200]!r}")
            checked[n] = check(json.loads(body))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - started, checked


async def server_time(conn: asyncpg.Connection) -> tuple[float, int]:
    """(total planning + execution ms, calls) of the statements the query service ran since the reset."""
    row = await conn.fetchrow(
        """SELECT coalesce(sum(total_exec_time + total_plan_time), 0) AS ms, coalesce(sum(calls), 0) AS calls
           FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
           WHERE d.datname = current_database() AND query NOT ILIKE '%pg_stat_statements%'""")
    return float(row["ms"]), int(row["calls"])


async def measure(url: str, shape: Shape, issuer, token: str, args, state: Path, rng: random.Random,
                  explain_it: bool) -> dict:
    ranges = await statement_ranges(url, shape, rng)
    port = free_port()
    proc = start_query(url, issuer, port, max(args.concurrency), state / f"query-{shape.count}.log", token)
    stats = await asyncpg.connect(asyncpg_dsn(url))
    results: dict = {"ranges": len(ranges)}
    try:
        # aiohttp: httpx costs the client about 1 ms of CPU a request, more than the service spends.
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", headers={"authorization": f"Bearer {token}"},
                                         connector=aiohttp.TCPConnector(limit=max(args.concurrency)),
                                         timeout=aiohttp.ClientTimeout(total=60)) as http:
            def statement(count: int) -> list:
                out = []
                for _ in range(count):
                    account, from_, to = rng.choice(ranges)
                    out.append((f"/v1/accounts/0001/{account}/statement",
                                {"from": from_.isoformat(), "to": to.isoformat(), "limit": "100"}))
                return out

            def balance(count: int) -> list:
                return [(f"/v1/accounts/0001/{account_name(rng.randrange(shape.accounts))}/balance",
                         {"date": (shape.first_day + timedelta(days=rng.randrange(DAYS))).isoformat()})
                        for _ in range(count)]

            def by_id(count: int) -> list:
                return [(f"/v1/transactions/{transaction_id(rng.randint(1, shape.count))}", None) for _ in range(count)]

            async def phase(warm: list, requests: list, check_, concurrency: int) -> dict:
                """Warm-up requests, then the measured ones with the server's time for them."""
                await run_requests(http, warm, concurrency, check_)
                await stats.execute("SELECT pg_stat_statements_reset()")
                service, client = process_cpu_seconds(proc.pid), time.process_time()
                latencies, wall, checked = await run_requests(http, requests, concurrency, check_)
                service, client = process_cpu_seconds(proc.pid) - service, time.process_time() - client
                ms, calls = await server_time(stats)
                return {"latencies": latencies, "wall": wall, "server": ms / len(requests),
                        "service_cpu": service * 1000 / len(requests), "client_cpu": client * 1000 / len(requests),
                        "statements": calls / len(requests), "checked": checked}

            def lines(body: dict) -> tuple[int, str | None]:
                return len(body["items"]), body.get("next_cursor")

            def next_pages(requests: list, checked: list) -> list:
                """The page after each answer, through the cursor it gave."""
                return [(path, {**params, "cursor": cursor}) for (path, params), (_, cursor) in zip(requests, checked)
                        if cursor]

            kinds = {}
            for concurrency, count in levels(args):
                if not count:
                    continue
                warm, requests = statement(WARMUP), statement(count)
                got = kinds[concurrency] = {"statement": await phase(warm, requests, lines, concurrency)}
                warm_checked = (await run_requests(http, warm[:concurrency * 4], concurrency, lines))[2]
                got["next"] = await phase(next_pages(warm[:concurrency * 4], warm_checked),
                                          next_pages(requests, got["statement"]["checked"]), lines, concurrency)
                got["balance"] = await phase(balance(WARMUP), balance(count), lambda body: body["balance"], concurrency)
                got["by_id"] = await phase(by_id(WARMUP), by_id(count), lambda body: body["status"], concurrency)
                for name in ("statement", "next"):
                    got[name]["short_pages"] = sum(1 for n, _ in got[name]["checked"] if n != 100)
                got["by_id"]["not_applied"] = sum(1 for status in got["by_id"]["checked"] if status != "applied")
            results["kinds"] = kinds
            if explain_it:
                results["explain"] = await explain(url, rng.choice(ranges))
    finally:
        await stats.close()
        stop(proc)
    return results


async def explain(url: str, account_range: tuple[str, date, date]) -> dict:
    """EXPLAIN (ANALYZE, BUFFERS) of the query service's own statement-page SQL, warm, with the
    parameters the service passes for a first page of 100 lines."""
    from flow_query.cursor import START
    from flow_query.queries import STATEMENT_PAGE

    account, from_, to = account_range
    conn = await asyncpg.connect(asyncpg_dsn(url), server_settings={"timezone": "UTC"})
    try:
        for _ in range(3):  # warm
            plan = [row[0] for row in await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + STATEMENT_PAGE,
                                                       "0001", account, from_, to, 100, *START)]
    finally:
        await conn.close()
    timing = {line.split(":")[0].strip(): float(line.split(":")[1].split()[0]) for line in plan
              if line.startswith(("Planning Time", "Execution Time"))}
    return {"account": account, "from": from_, "to": to, "plan": plan, **timing}


# --- ingest ----------------------------------------------------------------------------------------

async def ingest_throughput(single: int, batches: int, batch_size: int) -> dict:
    """Postings/s accepted by ingest: one per request (32 concurrent) vs batches (4 concurrent)."""
    from tools.devstack.stack import Stack, StackConfig

    state = Path(tempfile.mkdtemp(prefix="flow-bench-ingest-"))
    state.chmod(0o755)
    ports = {f.name: free_port() for f in dataclasses.fields(StackConfig) if f.name.endswith("_port")}
    stack = Stack(StackConfig(state_dir=state, fast=True, log_dir=state / "logs",
                              engine_settings={"LOG_LEVEL": "WARNING"}, **ports))
    await asyncio.to_thread(stack.start)
    failed = True
    try:
        token = stack.issuer.mint(["flow.write"])
        today = datetime.now(UTC).date().isoformat()
        rng = random.Random(7)

        def body() -> dict:
            return {"id": str(uuid.uuid4()), "branch": "0001", "account": account_name(rng.randrange(10_000)),
                    "amount": f"{rng.randrange(1, 100_000) / 100:.2f}", "debitcredit": rng.choice("DC"),
                    "eventcode": 1, "dateref": today}

        retries = 0
        url = f"http://127.0.0.1:{stack.config.ingest_port}"
        async with httpx.AsyncClient(base_url=url, timeout=60, headers={"authorization": f"Bearer {token}"},
                                     limits=httpx.Limits(max_connections=32, max_keepalive_connections=32)) as http:
            async def post(path: str, payload: dict) -> dict:
                """As a client should: a lost connection or a 503 is retried with the same ids."""
                nonlocal retries
                for attempt in range(4):
                    try:
                        response = await http.post(path, json=payload)
                    except httpx.TransportError:
                        if attempt == 3:
                            raise
                    else:
                        if response.status_code == 202:
                            return response.json()
                        if response.status_code != 503 or attempt == 3:
                            raise RuntimeError(f"POST {path}: {response.status_code} {response.text[:200]}")
                    retries += 1
                    await asyncio.sleep(0.1 * (attempt + 1))

            async def send(path: str, payloads: list, concurrency: int, accepted) -> tuple[float, list[float]]:
                """(accepted postings/s, each request's latency in ms)."""
                todo = list(payloads)
                count = 0
                latencies = []

                async def worker() -> None:
                    nonlocal count
                    while todo:
                        payload = todo.pop()
                        mark = time.perf_counter()
                        answer = await post(path, payload)
                        latencies.append((time.perf_counter() - mark) * 1000)
                        count += accepted(answer)

                started = time.perf_counter()
                await asyncio.gather(*(worker() for _ in range(concurrency)))
                return count / (time.perf_counter() - started), latencies

            # warm-up: one request alone first (it fetches the issuer's keys; requests arriving during
            # that fetch would be refused with 503 R090), then a round of concurrent ones
            await send("/v1/transactions", [body()], 1, lambda _: 1)
            await send("/v1/transactions", [body() for _ in range(100)], 32, lambda _: 1)
            retries = 0
            single_rate, single_latencies = await send("/v1/transactions", [body() for _ in range(single)], 32, lambda _: 1)
            await send("/v1/transactions/batch", [{"items": [body() for _ in range(batch_size)]}], 1,
                       lambda b: b["accepted"])  # warm-up
            batch_rate, batch_latencies = await send("/v1/transactions/batch",
                                    [{"items": [body() for _ in range(batch_size)]} for _ in range(batches)], 4,
                                    lambda b: b["accepted"])
        failed = False
        return {"single": single_rate, "batch": batch_rate, "single_count": single, "batches": batches,
                "batch_size": batch_size, "retries": retries, "single_latencies": single_latencies,
                "batch_latencies": batch_latencies}
    finally:
        await asyncio.to_thread(stack.stop)
        if failed:
            print(f"ingest measurement failed; the stack's logs are kept in {state / 'logs'}", flush=True)
        else:
            shutil.rmtree(state, ignore_errors=True)


# --- the run ---------------------------------------------------------------------------------------

def _figures(kind: dict) -> tuple[float, float]:
    return statistics.median(kind["latencies"]), percentile(kind["latencies"], 99)


def levels(args) -> list[tuple[int, int]]:
    """(concurrent client workers, requests) of each measurement: every --concurrency, then one at a time."""
    return [(concurrency, args.requests) for concurrency in args.concurrency] + [(1, args.serial)]


def report(args, small: Shape, large: Shape, loads: dict, checks: dict, measured: dict) -> None:
    s, l = short(small.count), short(large.count)
    print(f"\nFLOW query benchmark: {small.accounts:,} accounts ({small.busy:,} busy with "
          f"{BUSY_POSTINGS:.0%} of the postings); {DAYS} days of history; HTTP client {', '.join(map(str, args.concurrency))} concurrent; "
          f"{args.requests:,} requests per kind; {os.cpu_count()} CPUs (client, service and PostgreSQL share them)\n")
    for shape, label in ((small, s), (large, l)):
        c, t = checks[label], loads[label]
        print(f"{label:>5}: {c['transactions']:,} transactions, {c['outcomes']:,} outcomes, {c['balances']:,} day rows; "
              f"busy accounts {shape.busy_count // shape.busy:,} lines each, others ~"
              f"{(shape.count - shape.busy_count) / (shape.accounts - shape.busy):.1f}; "
              f"loaded in {t['total']:.0f} s (transactions {t['transactions']:.0f}, outcomes {t['outcomes']:.0f}, "
              f"day rows {t['balances']:.0f}, indexes {t['indexes']:.0f}, vacuum+analyze {t['vacuum']:.0f}); "
              f"totals match: {'yes' if c['totals'] and c['last'] else 'NO'}; reconciliation of "
              f"{c['reconciled_accounts']} accounts: {c['mismatches']} mismatching rows")
    rows = (("statement", "statement page (100)", "p99 < 10 ms"), ("next", "statement next page", ""),
            ("balance", "balance at a date", "p99 < 3 ms"), ("by_id", "transaction by id", ""))
    for concurrency, count in levels(args):
        if not count:
            continue
        print(f"\nHTTP client {concurrency} concurrent, {count:,} requests per kind (after {WARMUP} warm-up):")
        head = (f"{'kind':22}{s + ' p50':>9}{s + ' p99':>9}{l + ' p50':>9}{l + ' p99':>9}{l + '/' + s + ' p50':>12}"
                f"  {'target':14}{s + ' req/s':>11}{l + ' req/s':>11}{s + ' db ms':>11}{l + ' db ms':>11}"
                f"{s + ' svc cpu':>13}{l + ' svc cpu':>13}{'client cpu':>12}")
        print(head)
        print("-" * len(head))
        for key, title, target in rows:
            a, b = measured[s]["kinds"][concurrency][key], measured[l]["kinds"][concurrency][key]
            (ap50, ap99), (bp50, bp99) = _figures(a), _figures(b)
            met = ""
            if target:
                limit = float(target.split("<")[1].split()[0])
                met = " ok" if max(ap99, bp99) < limit else " missed"
            print(f"{title:22}{ap50:>9.2f}{ap99:>9.2f}{bp50:>9.2f}{bp99:>9.2f}{bp50 / ap50:>12.2f}  "
                  f"{(target + met):14}{len(a['latencies']) / a['wall']:>11,.0f}{len(b['latencies']) / b['wall']:>11,.0f}"
                  f"{a['server']:>11.3f}{b['server']:>11.3f}{a['service_cpu']:>13.3f}{b['service_cpu']:>13.3f}"
                  f"{(a['client_cpu'] + b['client_cpu']) / 2:>12.3f}")
    print("\n(latencies in ms at the client; req/s: throughput of the closed loop; db ms: the database's time per "
          "request,\n planning + execution of every statement the service ran for it, from pg_stat_statements; "
          "svc cpu: CPU ms\n the query service's process spent per request (user + system, /proc); client cpu: the "
          "HTTP client's, both databases' mean)")
    for label in (s, l):
        k = measured[label]["kinds"][max(args.concurrency)]
        notes = [f"{k['statement']['short_pages']} first and {k['next']['short_pages']} next pages under 100 lines",
                 f"{k['by_id']['not_applied']} ids not found applied",
                 f"statements per request (any BEGIN/ROLLBACK and pool ping included): statement page "
                 f"{k['statement']['statements']:.1f}, balance {k['balance']['statements']:.1f}, "
                 f"by id {k['by_id']['statements']:.1f}"]
        print(f"{label:>5}: " + "; ".join(notes))
    e = measured[l].get("explain")
    if e:
        print(f"\nEXPLAIN (ANALYZE, BUFFERS) of the statement page on {l} (account {e['account']}, "
              f"{e['from']}..{e['to']}, limit 100): planning {e.get('Planning Time', float('nan')):.3f} ms, "
              f"execution {e.get('Execution Time', float('nan')):.3f} ms")
        for line in e["plan"]:
            print("    " + line)


def report_ingest(ingest: dict) -> None:
    def spread(latencies: list[float]) -> str:
        return (f"request p50 {statistics.median(latencies):,.0f} ms, p99 {percentile(latencies, 99):,.0f} ms, "
                f"max {max(latencies):,.0f} ms")

    print("\ningest (whole local stack: ingest -> LocalStack SNS, the engine applying meanwhile; accepted postings/s):")
    print(f"  single: {ingest['single']:>7,.0f} postings/s ({ingest['single_count']:,} requests of 1 posting, "
          f"32 concurrent; {spread(ingest['single_latencies'])})")
    print(f"  batch:  {ingest['batch']:>7,.0f} postings/s ({ingest['batches']} requests of {ingest['batch_size']} "
          f"postings, 4 concurrent; {spread(ingest['batch_latencies'])})")
    print(f"  batch/single: x{ingest['batch'] / ingest['single']:.1f}; {ingest['retries']} requests retried "
          f"(lost connection or 503, same ids)")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1_000_000, help="transactions in the small database")
    parser.add_argument("--large", type=int, default=10_000_000, help="transactions in the large database")
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=2_000, help="measured requests per kind")
    parser.add_argument("--concurrency", type=lambda text: [int(n) for n in text.split(",")], default=[4, 8],
                        help="concurrent HTTP client workers, one measurement per value (comma-separated)")
    parser.add_argument("--serial", type=int, default=500,
                        help="then this many requests per kind one at a time (0: none)")
    parser.add_argument("--skip-ingest", action="store_true", help="leave out ingest throughput")
    parser.add_argument("--ingest-single", type=int, default=2_000, help="postings sent one per request")
    parser.add_argument("--ingest-batches", type=int, default=20, help="batches of --ingest-batch-size postings")
    parser.add_argument("--ingest-batch-size", type=int, default=500)
    parser.add_argument("--no-explain", dest="explain", action="store_false", help="leave out EXPLAIN")
    parser.add_argument("--keep", action="store_true", help="keep the cluster's folder (printed) for inspection")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.accounts < 2 or not 0 < args.small < args.large:
        parser.error("need --accounts >= 2 and 0 < --small < --large")

    small, large = shapes(args.small, args.large, args.accounts)
    rng = random.Random(args.seed)
    state = Path(tempfile.mkdtemp(prefix="flow-bench-query-"))
    state.chmod(0o755)
    cluster = PostgresCluster(state / "data", free_port(), fast=True)
    cluster.initialise()
    with open(cluster.data_dir / "postgresql.conf", "a") as conf:
        conf.write(CLUSTER_SETTINGS)
    from tools.devstack.issuer import DevIssuer

    issuer = None
    loads, checks, measured = {}, {}, {}
    try:
        cluster.start()
        server = cluster.url.rsplit("/", 1)[0]
        started = time.perf_counter()
        urls = {}
        for shape in (small, large):
            label = short(shape.count)
            print(f"loading {label} transactions over {shape.accounts:,} accounts ...", flush=True)
            urls[label], loads[label] = await load(server, f"bench_query_{shape.count}", shape)
            checks[label] = await check(urls[label], shape)
            print(f"  {loads[label]['total']:.0f} s: " + ", ".join(f"{k} {v:.0f} s" for k, v in loads[label].items()
                                                                    if k != "total")
                  + f"; {checks[label]['mismatches']} mismatching rows", flush=True)
        load_seconds = time.perf_counter() - started

        started = time.perf_counter()
        issuer = DevIssuer(0, audience=AUDIENCE).start()
        token = issuer.mint(["flow.read", "flow.write"])
        for shape in (small, large):
            label = short(shape.count)
            print(f"measuring {label} ...", flush=True)
            measured[label] = await measure(urls[label], shape, issuer, token, args, state, rng,
                                           explain_it=args.explain and shape is large)
        measure_seconds = time.perf_counter() - started
    finally:
        if issuer:
            issuer.stop()
        cluster.stop()
        if args.keep:
            print(f"cluster kept in {cluster.data_dir} (start it with {cluster.bindir}/postgres -D {cluster.data_dir})")
        else:
            shutil.rmtree(state, ignore_errors=True)

    report(args, small, large, loads, checks, measured)
    if not args.skip_ingest:
        print("\nmeasuring ingest on the whole local stack ...", flush=True)
        mark = time.perf_counter()
        try:
            report_ingest(await ingest_throughput(args.ingest_single, args.ingest_batches, args.ingest_batch_size))
        except Exception as exc:
            print(f"ingest: not measured: {type(exc).__name__}: {exc}")
        measure_seconds += time.perf_counter() - mark
    print(f"\nloading took {load_seconds:.0f} s; measuring took {measure_seconds:.0f} s")

if __name__ == "__main__":
    asyncio.run(main())
