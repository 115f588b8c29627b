"""Engine benchmark: prints a table, passes or fails nothing.

In one run, on one throwaway PostgreSQL cluster, with the same generated postings (20% retroactive),
for a uniform load over 10,000 accounts and for one hot account:
  (a) the original design's one-posting CTE (column-name typos fixed), from 4 connections;
  (b) FLOW's engine: batch apply with its real concurrency (worker processes x pollers, each batch
      parsed from the queue's JSON and applied in one transaction);
  (c) plain COPY of the same rows into flow.transaction, no balance work (the ceiling);
then reconciliation of (a) and (b), and the ratios b/a, b/c, hot/uniform, and the engine's peak RSS;
and, its runs alternating with (b)'s so the machine's noise falls on both alike, (b) again with every
account registered in flow.account with an overdraft limit (--limit), so the engine judges each
account's postings under its lock, printed beside (b) on accounts opened by their first posting (no
row, no limit: today's loads);
and where (b) and (c) spend CPU per posting: PostgreSQL's (the cluster's processes) and the engine's.
Optionally (--e2e) the whole stack through LocalStack: sustained postings/s, and accept-to-callback
latency at 70% of that rate (and, with --e2e-rates, at fixed rates of single-posting requests).

    .venv/bin/python -m bench.engine [--postings 50000] [--processes 2] [--pollers 2] [--batch 500] [--repeat 3]
                                     [--e2e N | --e2e-only] [--e2e-rates 25,40]
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import resource
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg

from flow_kit.migrations import asyncpg_dsn
from tools.devstack.postgres import PostgresCluster
from tools.devstack.processes import free_port
from tools.devstack.stack import new_database

SEED_CONNECTIONS = 4
E2E_BATCH = 500  # postings per POST /v1/transactions/batch in the end-to-end run
SEED_SECONDS = 20  # the seed CTE is slow (and deadlocks on a hot account): measured for at most this long

# The original design's statement, as written (acumulated -> accumulated fixed), with the columns this
# schema requires (id, acceptedat, updatetracekey) filled in.
SEED_CTE = """
with ins_trans as (
    insert into flow.transaction (id, branch, account, amount, debitcredit, eventcode, description, tracekey,
                                  details, dateref, acceptedat)
    select $1::uuid, $2, $3, $4::numeric, $5, $6::int, $7, $8::uuid, $9::json, $10::date, now()
    returning *)
, block_day as (
    select * from flow.balance where (branch, account, dateref) in
        (select balance.branch, balance.account, balance.dateref
         from ins_trans inner join flow.balance on
              ins_trans.branch = balance.branch and ins_trans.account = balance.account and
              ins_trans.dateref <= balance.dateref) for update)
, acum as (
    select balance.branch, balance.account, balance.dateref, balance.accumulateddebit, balance.accumulatedcredit
    from flow.balance inner join ins_trans
         on balance.branch = ins_trans.branch and balance.account = ins_trans.account
         and balance.dateref < ins_trans.dateref
    order by balance.dateref desc limit 1)
, total as (
    select branch, account,
           case when debitcredit = 'D' then amount else 0 end totaldebit,
           case when debitcredit = 'C' then amount else 0 end totalcredit
    from ins_trans)
, ins_balance as (
    insert into flow.balance (branch, account, dateref, totaldebit, totalcredit, accumulateddebit, accumulatedcredit,
                              tracekey, updatetracekey)
    select ins_trans.branch, ins_trans.account, ins_trans.dateref, total.totaldebit, total.totalcredit,
           coalesce(acum.accumulateddebit, 0) + total.totaldebit,
           coalesce(acum.accumulatedcredit, 0) + total.totalcredit,
           tracekey, tracekey
    from ins_trans
         left join acum on ins_trans.branch = acum.branch and ins_trans.account = acum.account
         join total on ins_trans.branch = total.branch and ins_trans.account = total.account
    on conflict (branch, account, dateref) do update set
        totaldebit = balance.totaldebit + coalesce(EXCLUDED.totaldebit, 0),
        totalcredit = balance.totalcredit + coalesce(EXCLUDED.totalcredit, 0),
        accumulateddebit = balance.accumulateddebit + coalesce(EXCLUDED.totaldebit, 0),
        accumulatedcredit = balance.accumulatedcredit + coalesce(EXCLUDED.totalcredit, 0)
    returning *)
, update_next_balances as (
    update flow.balance set
        accumulateddebit = accumulateddebit + total.totaldebit,
        accumulatedcredit = accumulatedcredit + total.totalcredit
    from ins_trans, total
    where balance.dateref > ins_trans.dateref and balance.branch = ins_trans.branch
          and balance.account = ins_trans.account)
select id::text, tracekey::text from ins_trans
"""


def generate(count: int, accounts: int, seed: int) -> list[dict]:
    """Queue message bodies as ingest publishes them; 20% retroactive (1 to 7 days back)."""
    from flow_rules.fingerprint import fingerprint
    from flow_rules.posting import PostingIn

    rng = random.Random(seed)
    now = datetime.now(UTC)
    today = now.date()
    bodies = [{
        "id": str(uuid.uuid4()), "tracekey": str(uuid.uuid4()), "branch": "0001",
        "account": f"{rng.randrange(accounts):09d}", "amount": f"{rng.randrange(1, 10**7) / 100:.2f}",
        "debitcredit": rng.choice("DC"), "eventcode": 1, "description": "bench", "details": {"n": n},
        "dateref": (today - timedelta(days=rng.randint(1, 7) if rng.random() < 0.2 else 0)).isoformat(),
        "acceptedat": now.isoformat(),
    } for n in range(count)]
    for body in bodies:  # computed once by ingest, carried in the message
        content = PostingIn.model_validate({k: v for k, v in body.items() if k not in ("id", "acceptedat")})
        body["fingerprint"] = str(fingerprint(content))
    return bodies


async def fresh_database(server: str, name: str) -> str:
    return await new_database(server, name)


async def mismatches(url: str) -> int:
    from flow_engine.reconcile import find_mismatches
    from flow_kit.db import create_engine

    engine = create_engine(url, 1)
    async with engine.connect() as conn:
        found = len(await find_mismatches(conn))
    await engine.dispose()
    return found


async def run_seed(url: str, bodies: list[dict]) -> tuple[float, int, int]:
    """(postings/s, applied, failed) for the seed CTE, one posting per statement, 4 connections."""
    todo = list(bodies)
    applied = failed = 0
    deadline = time.perf_counter() + SEED_SECONDS

    async def worker() -> None:
        nonlocal applied, failed
        conn = await asyncpg.connect(asyncpg_dsn(url))
        statement = await conn.prepare(SEED_CTE)
        while todo and time.perf_counter() < deadline:
            b = todo.pop()
            try:
                await statement.fetch(b["id"], b["branch"], b["account"], b["amount"], b["debitcredit"],
                                      b["eventcode"], b["description"], b["tracekey"], json.dumps(b["details"]),
                                      datetime.fromisoformat(b["dateref"]).date())
                applied += 1
            except asyncpg.exceptions.DeadlockDetectedError:
                failed += 1
        await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(SEED_CONNECTIONS)))
    return applied / (time.perf_counter() - started), applied, failed


def tree_cpu_seconds(root: int) -> float:
    """CPU time a process and its descendants have used so far (Linux /proc): every live process's
    own time and its reaped children's (a process's time moves to its parent's when it is reaped, so
    nothing is counted twice). For PostgreSQL's postmaster that is every backend, live or gone."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # gone meanwhile
                continue
    children: dict[int, list[int]] = {}
    for pid, fields in stats.items():
        children.setdefault(int(fields[1]), []).append(pid)
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += sum(int(f) for f in stats[pid][11:15])  # utime, stime, cutime, cstime
        todo += children.get(pid, [])
    return total / os.sysconf("SC_CLK_TCK")


def server_cpu_seconds(cluster: PostgresCluster) -> float:
    """CPU time the cluster has used so far: its postmaster's process tree."""
    return tree_cpu_seconds(int((cluster.data_dir / "postmaster.pid").read_text().split()[0]))


async def backends_gone(url: str) -> None:
    """Waits until no client is connected to `url`'s database, so its backends' CPU is counted."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        for _ in range(100):
            if not await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                       "AND pid <> pg_backend_pid()"):
                break
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


def _engine_worker(url: str, bodies: list[str], pollers: int, batch: int, ready, go, results) -> None:
    """One engine process: `pollers` appliers taking `batch` raw queue bodies at a time, as the
    consumer does (parse, apply in one transaction with retries on transient faults). Reports its
    peak RSS and the CPU time it spent applying."""
    from flow_engine.app import freeze_startup_objects
    from flow_engine.consumer import Consumer
    from flow_engine.settings import EngineSettings
    from flow_kit.db import create_engine
    from flow_engine.message import decode

    async def main() -> None:
        settings = EngineSettings(database_url=url, queue_url="http://unused", batch_size=batch,
                                  callback_topic_arn="arn:aws:sns:us-east-1:000000000000:unused",
                                  pollers=pollers, database_pool_size=pollers + 2)
        db = create_engine(url, pollers + 2)
        consumer = Consumer(settings, db, sqs_client=None)
        async with db.connect() as conn:  # warm the pool
            await conn.exec_driver_sql("SELECT 1")
        freeze_startup_objects()  # as the engine does once started
        chunks = [bodies[n:n + batch] for n in range(0, len(bodies), batch)]
        ready.set()
        go.wait()
        started = time.process_time()

        async def poller() -> None:
            while chunks:
                chunk = chunks.pop(0)
                await consumer._apply([decode(body) for body in chunk])

        await asyncio.gather(*(poller() for _ in range(pollers)))
        spent = time.process_time() - started
        await db.dispose()
        return spent

    cpu = asyncio.run(main())
    results.put((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, cpu))


def run_engine(url: str, bodies: list[dict], processes: int, pollers: int, batch: int) -> tuple[float, int, float]:
    """(postings/s, peak RSS in KiB of the largest engine process, CPU seconds of all engine processes)."""
    raw = [json.dumps(b) for b in bodies]
    context = multiprocessing.get_context("spawn")
    go, results = context.Event(), context.Queue()
    workers = []
    for n in range(processes):
        ready = context.Event()
        proc = context.Process(target=_engine_worker, args=(url, raw[n::processes], pollers, batch, ready, go, results))
        proc.start()
        workers.append((proc, ready))
    for _, ready in workers:
        ready.wait()
    started = time.perf_counter()
    go.set()
    for proc, _ in workers:
        proc.join()
    elapsed = time.perf_counter() - started
    reports = [results.get() for _ in workers]
    return len(bodies) / elapsed, max(rss for rss, _ in reports), sum(cpu for _, cpu in reports)


async def run_copy(url: str, bodies: list[dict]) -> float:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    now = datetime.now(UTC)
    records = [(uuid.UUID(b["id"]), b["branch"], b["account"], Decimal(b["amount"]),
                b["debitcredit"], b["eventcode"], b["description"], uuid.UUID(b["tracekey"]), json.dumps(b["details"]),
                datetime.fromisoformat(b["dateref"]).date(), now) for b in bodies]
    started = time.perf_counter()
    await conn.copy_records_to_table("transaction", schema_name="flow", records=records, columns=[
        "id", "branch", "account", "amount", "debitcredit", "eventcode", "description", "tracekey", "details",
        "dateref", "acceptedat"])
    elapsed = time.perf_counter() - started
    await conn.close()
    return len(bodies) / elapsed


async def measure(cluster: PostgresCluster, label: str, bodies: list[dict], accounts: int, args) -> dict:
    """The seed CTE once (time-boxed); the engine and COPY --repeat times each, on fresh databases,
    alternating, reporting medians (the machine is shared and noisy), with their CPU per posting; and
    the engine on registered accounts as often, each run beside one on accounts opened by their first
    posting, first or second in turn (`registered`, see registered_run)."""
    server = cluster.url.rsplit("/", 1)[0]
    seed_url = await fresh_database(server, f"bench_{label}_seed")
    seed_rate, seed_applied, seed_deadlocks = await run_seed(seed_url, bodies)
    seed_wrong = await mismatches(seed_url)
    engine_rates, copy_rates, engine_wrong, rss = [], [], 0, 0
    engine_cpu, server_cpu, copy_server_cpu = [], [], []  # µs per posting
    registered = []
    for n in range(args.repeat):
        if n % 2:
            registered.append(await registered_run(cluster, label, bodies, accounts, args, n))
        engine_url = await fresh_database(server, f"bench_{label}_engine_{n}")
        before = server_cpu_seconds(cluster)  # the engines' connecting is counted too: a few ms
        rate, peak, cpu = await asyncio.to_thread(run_engine, engine_url, bodies, args.processes, args.pollers,
                                                  args.batch)
        await backends_gone(engine_url)
        server_cpu.append((server_cpu_seconds(cluster) - before) * 1e6 / len(bodies))
        engine_cpu.append(cpu * 1e6 / len(bodies))
        engine_rates.append(rate)
        rss = max(rss, peak)
        engine_wrong += await mismatches(engine_url)
        if not n % 2:
            registered.append(await registered_run(cluster, label, bodies, accounts, args, n))
        copy_url = await fresh_database(server, f"bench_{label}_copy_{n}")
        before = server_cpu_seconds(cluster)
        copy_rates.append(await run_copy(copy_url, bodies))
        await backends_gone(copy_url)
        copy_server_cpu.append((server_cpu_seconds(cluster) - before) * 1e6 / len(bodies))
    return {"seed": seed_rate, "seed_applied": seed_applied, "seed_deadlocks": seed_deadlocks, "seed_wrong": seed_wrong,
            "engine": statistics.median(engine_rates), "engine_runs": engine_rates, "engine_wrong": engine_wrong,
            "copy": statistics.median(copy_rates), "copy_runs": copy_rates, "rss": rss,
            "engine_cpu": statistics.median(engine_cpu), "server_cpu": statistics.median(server_cpu),
            "copy_server_cpu": statistics.median(copy_server_cpu),
            "registered": {"engine": statistics.median(r for r, _, _ in registered),
                           "engine_runs": [r for r, _, _ in registered],
                           "refused": statistics.median(x for _, x, _ in registered),
                           "engine_wrong": sum(w for _, _, w in registered)}}


async def registered_run(cluster: PostgresCluster, label: str, bodies: list[dict], accounts: int, args,
                         n: int) -> tuple[float, float, int]:
    """(b) once on accounts registered with an overdraft limit: its rate, the share of postings refused
    for funds (R028), and reconciliation's mismatches."""
    server = cluster.url.rsplit("/", 1)[0]
    url = await fresh_database(server, f"bench_{label}_limits_{n}")
    conn = await asyncpg.connect(asyncpg_dsn(url))
    await conn.execute(
        """INSERT INTO flow.account (branch, account, overdraftlimit, tracekey, updatetracekey)
           SELECT '0001', lpad(n::text, 9, '0'), $1, gen_random_uuid(), gen_random_uuid()
           FROM generate_series(0, $2 - 1) AS n""", Decimal(args.limit), accounts)
    await conn.execute("ANALYZE flow.account")
    await conn.close()
    rate, _, _ = await asyncio.to_thread(run_engine, url, bodies, args.processes, args.pollers, args.batch)
    await backends_gone(url)
    conn = await asyncpg.connect(asyncpg_dsn(url))
    refused = await conn.fetchval("SELECT count(*) FROM flow.outcome WHERE code = 'R028'") / len(bodies)
    await conn.close()
    return rate, refused, await mismatches(url)


async def end_to_end(count: int, rates: list[float]) -> dict:
    """Postings through ingest's HTTP API, LocalStack and the engine, on one local stack: `count` one per
    request, then 5 x `count` in requests of 500 (`POST /v1/transactions/batch`). Each way twice: as
    fast as the clients can post (the sustained rate: postings/s reaching the callback), then paced at
    70% of that rate, so accept-to-callback latency is the pipeline's and not a backlog's."""
    import httpx

    from tests.conftest import _listen
    from tools.devstack.stack import Stack, StackConfig

    state = Path(tempfile.mkdtemp(prefix="flow-bench-"))
    state.chmod(0o755)
    stack = Stack(StackConfig(state_dir=state, pg_port=free_port(), localstack_port=free_port(),
                              ingest_port=free_port(), query_port=free_port(), engine_port=free_port(),
                              log_dir=state / "logs", engine_settings={"LOG_LEVEL": "WARNING"}))
    await asyncio.to_thread(stack.start)
    try:
        token = stack.issuer.mint(["flow.write"])
        async for listener in _listen(stack, stack.outputs["CallbackTopicArn"]):
            async with httpx.AsyncClient(timeout=30, headers={"authorization": f"Bearer {token}"}) as http:
                results = {}
                for label, size, postings, seed in (("single", 1, count, 98), ("batch", E2E_BATCH, 5 * count, 96)):
                    saturated = await _through_the_stack(stack, http, listener, generate(postings, 10_000, seed),
                                                         size, rate=None)
                    paced = await _through_the_stack(stack, http, listener, generate(postings // 2, 10_000, seed + 1),
                                                     size, rate=0.7 * saturated["sustained"])
                    results[label] = {"saturated": saturated, "paced": paced}
                results["fixed"] = {rate: await _through_the_stack(stack, http, listener,
                                                                   generate(int(rate * 25), 10_000, int(rate)), 1, rate)
                                    for rate in rates}  # 25 s at each rate
        return results
    finally:
        await asyncio.to_thread(stack.stop)
        shutil.rmtree(state, ignore_errors=True)


async def _through_the_stack(stack, http, listener, bodies: list[dict], size: int, rate: float | None) -> dict:
    """Posts `bodies` one per request (32 requests at a time) or `size` per batch request (4 at a time),
    at most `rate` postings a second when given, and waits for every callback; returns ingest's rate,
    the rate reaching the callback and the latencies."""
    for b in bodies:
        b.pop("acceptedat")
    accepted_at: dict[str, float] = {}
    called_back: dict[str, float] = {}
    base = f"http://127.0.0.1:{stack.config.ingest_port}/v1/transactions"
    requests = [bodies[n:n + size] for n in range(0, len(bodies), size)]
    expected = {b["tracekey"] for b in bodies}

    async def listen() -> None:
        while len(called_back) < len(bodies):
            for message in await listener.poll():
                if message["tracekey"] in expected:  # not a late repeat from an earlier run
                    called_back.setdefault(message["tracekey"], time.perf_counter())

    listeners = [asyncio.create_task(listen()) for _ in range(4)]
    limit = asyncio.Semaphore(32 if size == 1 else 4)
    started = time.perf_counter()

    async def post(n: int, items: list[dict]) -> None:
        if rate:
            await asyncio.sleep(max(0.0, started + n * size / rate - time.perf_counter()))
        async with limit:
            if size == 1:
                response = await http.post(base, json=items[0])
            else:
                response = await http.post(f"{base}/batch", json={"items": items})
            response.raise_for_status()
            if size > 1 and response.json()["accepted"] != len(items):
                raise RuntimeError(f"ingest did not accept every posting of a batch: {response.json()}")
            now = time.perf_counter()
            for item in items:
                accepted_at[item["tracekey"]] = now

    cpu_before = _parts_cpu_seconds(stack)
    await asyncio.gather(*(post(n, r) for n, r in enumerate(requests)))
    posted = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*listeners), 600)
    finished = time.perf_counter()
    cpu = {part: (seconds - cpu_before[part]) * 1000 / len(bodies)
           for part, seconds in _parts_cpu_seconds(stack).items()}
    latencies = sorted(called_back[k] - accepted_at[k] for k in accepted_at)
    return {"count": len(bodies), "ingest_rate": len(bodies) / (posted - started),
            "sustained": len(bodies) / (finished - started), "p50": statistics.median(latencies) * 1000,
            "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000, "cpu_ms": cpu}


def _parts_cpu_seconds(stack) -> dict[str, float]:
    """CPU time used so far by each part of the stack, and by this process (the clients and listeners)."""
    spent = {part: sum(tree_cpu_seconds(pid) for pid in pids) for part, pids in stack.pids().items()}
    spent["bench client"] = time.process_time()
    return spent


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postings", type=int, default=50_000)
    parser.add_argument("--processes", type=int, default=2, help="engine processes (pods)")
    parser.add_argument("--pollers", type=int, default=2, help="pollers per process (FLOW_ENGINE_POLLERS)")
    parser.add_argument("--batch", type=int, default=500, help="postings per batch (FLOW_ENGINE_BATCH_SIZE)")
    parser.add_argument("--repeat", type=int, default=3, help="engine and COPY runs per load (medians are printed)")
    parser.add_argument("--limit", default="100000.00", help="the registered accounts' overdraft limit")
    parser.add_argument("--e2e", type=int, default=0, metavar="N", help="also N postings end to end through LocalStack")
    parser.add_argument("--e2e-only", action="store_true", help="only the end-to-end measurement")
    parser.add_argument("--e2e-rates", default="", metavar="R,R",
                        help="end to end, also single-posting requests paced at these postings/s (25 s each)")
    args = parser.parse_args()
    args.e2e_rates = [float(rate) for rate in args.e2e_rates.split(",") if rate]
    if args.e2e_only:
        await print_end_to_end(args.e2e or 3000, args.e2e_rates)
        return

    state = Path(tempfile.mkdtemp(prefix="flow-bench-pg-"))
    state.chmod(0o755)
    cluster = PostgresCluster(state / "data", free_port())
    cluster.start()
    try:
        results = {
            "uniform": await measure(cluster, "uniform", generate(args.postings, 10_000, 1), 10_000, args),
            "hot": await measure(cluster, "hot", generate(args.postings, 1, 2), 1, args),
        }
        registered = {label: r.pop("registered") for label, r in results.items()}
    finally:
        cluster.stop()
        shutil.rmtree(state, ignore_errors=True)

    print(f"\nFLOW engine benchmark: {args.postings} postings per load, 20% retroactive; engine = "
          f"{args.processes} processes x {args.pollers} pollers, batches of {args.batch}; {os.cpu_count()} CPUs; "
          f"engine and COPY: medians of {args.repeat} runs\n")
    print(f"{'load':8} {'(a) seed CTE/s':>15} {'deadlocks':>9} {'wrong rows':>10} {'(b) engine/s':>13} "
          f"{'wrong rows':>10} {'(c) COPY/s':>11} {'b/a':>7} {'b/c':>5}")
    for label, r in results.items():
        print(f"{label:8} {r['seed']:>15,.0f} {r['seed_deadlocks']:>9} {r['seed_wrong']:>10} {r['engine']:>13,.0f} "
              f"{r['engine_wrong']:>10} {r['copy']:>11,.0f} {r['engine'] / max(r['seed'], 1e-9):>7.1f} "
              f"{r['engine'] / r['copy']:>5.2f}")
    for label, r in results.items():
        print(f"{label} runs/s: engine {', '.join(f'{x:,.0f}' for x in r['engine_runs'])}; "
              f"COPY {', '.join(f'{x:,.0f}' for x in r['copy_runs'])}")
    print(f"\nengine hot/uniform: {results['hot']['engine'] / results['uniform']['engine']:.2f}   "
          f"engine peak RSS: {max(r['rss'] for r in results.values()) / 1024:.0f} MiB per process")
    print("\nCPU per posting (medians): the engine's processes while applying, PostgreSQL's (every process of "
          "the cluster, autovacuum included) over the same span; COPY's PostgreSQL CPU per row")
    cpus = os.cpu_count() or 1
    for label, r in results.items():
        total = r["server_cpu"] + r["engine_cpu"]
        print(f"  {label:8} PostgreSQL {r['server_cpu']:5.1f} µs + engine {r['engine_cpu']:5.1f} µs = {total:5.1f} µs "
              f"(all {cpus} CPUs busy: at most {cpus * 1e6 / total:,.0f}/s); COPY: PostgreSQL "
              f"{r['copy_server_cpu']:4.1f} µs")
    print(f"(seed CTE measured for at most {SEED_SECONDS} s per load: {results['uniform']['seed_applied']} and "
          f"{results['hot']['seed_applied']} postings applied)")
    print(f"\n(b) on accounts opened by their first posting (no limit) and on registered accounts with an overdraft "
          f"limit of {args.limit}:")
    print(f"{'load':8} {'first posting/s':>16} {'registered/s':>13} {'ratio':>6} {'refused R028':>13} {'wrong rows':>10}")
    for label, r in registered.items():
        print(f"{label:8} {results[label]['engine']:>16,.0f} {r['engine']:>13,.0f} "
              f"{r['engine'] / results[label]['engine']:>6.2f} {r['refused']:>12.1%} {r['engine_wrong']:>10}")
    for label, r in registered.items():
        print(f"{label} registered runs/s: {', '.join(f'{x:,.0f}' for x in r['engine_runs'])}")
    if args.e2e:
        await print_end_to_end(args.e2e, args.e2e_rates)


async def print_end_to_end(count: int, rates: list[float]) -> None:
    results = await end_to_end(count, rates)
    print("\nend to end through LocalStack (ingest HTTP; accept = ingest's 202, callback = the outcome read "
          "from a queue subscribed to FlowCallback):")
    ways = {"single": "one posting per request, 32 concurrent clients",
            "batch": f"{E2E_BATCH} postings per batch request, 4 concurrent clients"}
    for label, way in ways.items():
        s, p = results[label]["saturated"], results[label]["paced"]
        print(f"  {way}:")
        print(f"    saturated, {s['count']} postings: ingest {s['ingest_rate']:,.0f}/s, sustained to callback "
              f"{s['sustained']:,.0f}/s (accept-to-callback p50 {s['p50']:,.0f} ms, p99 {s['p99']:,.0f} ms: the "
              f"backlog)")
        print(f"    paced at {p['ingest_rate']:,.0f}/s, {p['count']} postings: accept-to-callback p50 "
              f"{p['p50']:,.0f} ms, p99 {p['p99']:,.0f} ms")
        print("    CPU ms per posting, saturated: " + ", ".join(f"{part} {ms:.2f}" for part, ms in s["cpu_ms"].items()))
    for rate, r in results["fixed"].items():
        print(f"  one posting per request paced at {rate:g}/s, {r['count']} postings: accept-to-callback p50 "
              f"{r['p50']:,.0f} ms, p99 {r['p99']:,.0f} ms; CPU ms per posting: "
              + ", ".join(f"{part} {ms:.2f}" for part, ms in r["cpu_ms"].items()))


if __name__ == "__main__":
    asyncio.run(main())
