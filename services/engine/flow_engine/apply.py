"""The transactional engine: applies a batch of postings in one database transaction.

Set-based, in the seed's CTE style: each step is one statement over the whole batch, which travels
as column arrays. Per batch:
1. lock the batch's accounts (advisory locks, taken in one global order, so parallel engines never
   deadlock and two batches of one account apply one after the other);
2. judge each posting against the event catalogue and the retroactive window;
3. record its outcome; the outcome's primary key is the posting id, so a redelivered posting finds
   its outcome already there and changes nothing;
4. copy the applied postings into flow.transaction;
5. recompute the account's day rows from the earliest day the batch touches: day totals plus the
   batch, accumulated totals as a running sum from the row before that day (retroactive postings
   move every later day);
6. queue the new outcomes' callbacks in the outbox (one row per batch), in the same transaction as
   their effect.
"""

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from operator import attrgetter
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from flow_kit.codes import Code
from flow_kit.posting import PostingMessage, check_dateref, fingerprint

from .outcome import Outcome

__all__ = ["account_lock_key", "apply_batch"]

_LOCK_ACCOUNTS = text(
    # unnest yields the keys in array order, which the caller sorted.
    "SELECT pg_advisory_xact_lock(key) FROM unnest(CAST(:keys AS bigint[])) AS key"
)

_EVENTS = text(
    "SELECT code, active, allowdebit, allowcredit FROM flow.event WHERE code = ANY(CAST(:codes AS int[]))"
)

_RECORD_OUTCOMES = text(
    """INSERT INTO flow.outcome (id, tracekey, fingerprint, code, dateref)
       SELECT * FROM unnest(CAST(:id AS uuid[]), CAST(:tracekey AS uuid[]), CAST(:fingerprint AS uuid[]),
                            CAST(:code AS text[]), CAST(:dateref AS date[]))
       ON CONFLICT (id) DO NOTHING
       RETURNING id"""
)

_STORED_OUTCOMES = text(
    "SELECT id, tracekey, fingerprint, code FROM flow.outcome WHERE id = ANY(CAST(:ids AS uuid[]))"
)

# Applied postings go in with COPY, inside the batch's transaction: the cheapest way in.
_TRANSACTION_COLUMNS = ("id", "branch", "account", "amount", "debitcredit", "eventcode", "description", "tracekey",
                        "details", "dateref", "acceptedat")

# The batch arrives summed per account and day (`delta`). For each account, every day row from the
# earliest touched day on is rewritten: stored day totals plus the delta, accumulated totals as the
# running sum from the last row before that day (`base`). New days are inserted, others updated.
_APPLY_DAYS = text(
    """WITH delta AS (
           SELECT * FROM unnest(CAST(:branch AS text[]), CAST(:account AS text[]), CAST(:dateref AS date[]),
                                CAST(:debit AS numeric[]), CAST(:credit AS numeric[]), CAST(:tracekey AS uuid[]),
                                CAST(:lasttracekey AS uuid[]))
                    AS d(branch, account, dateref, debit, credit, tracekey, lasttracekey)),
       account_since AS (
           -- every delta row of an account carries the same lasttracekey; min() just picks it
           SELECT branch, account, min(dateref) AS since, min(lasttracekey::text)::uuid AS lasttracekey
           FROM delta GROUP BY branch, account),
       base AS (
           SELECT a.branch, a.account, a.since, a.lasttracekey,
                  coalesce(prev.accumulateddebit, 0) AS accumulateddebit,
                  coalesce(prev.accumulatedcredit, 0) AS accumulatedcredit
           FROM account_since a
           LEFT JOIN LATERAL (
               SELECT b.accumulateddebit, b.accumulatedcredit
               FROM flow.balance b
               WHERE b.branch = a.branch AND b.account = a.account AND b.dateref < a.since
               ORDER BY b.dateref DESC
               LIMIT 1) prev ON true),
       stored AS (
           SELECT s.*
           FROM base a
           CROSS JOIN LATERAL (  -- an index probe per account (OFFSET 0 keeps the planner from a full scan)
               SELECT b.branch, b.account, b.dateref, b.totaldebit, b.totalcredit
               FROM flow.balance b
               WHERE b.branch = a.branch AND b.account = a.account AND b.dateref >= a.since
               OFFSET 0) s),
       day AS (
           SELECT coalesce(s.branch, d.branch) AS branch, coalesce(s.account, d.account) AS account,
                  coalesce(s.dateref, d.dateref) AS dateref,
                  coalesce(s.totaldebit, 0) + coalesce(d.debit, 0) AS totaldebit,
                  coalesce(s.totalcredit, 0) + coalesce(d.credit, 0) AS totalcredit,
                  d.tracekey
           FROM stored s
           FULL JOIN delta d ON d.branch = s.branch AND d.account = s.account AND d.dateref = s.dateref)
       INSERT INTO flow.balance AS b (branch, account, dateref, totaldebit, totalcredit, accumulateddebit,
                                      accumulatedcredit, tracekey, updatetracekey)
       SELECT day.branch, day.account, day.dateref, day.totaldebit, day.totalcredit,
              base.accumulateddebit + sum(day.totaldebit) OVER running,
              base.accumulatedcredit + sum(day.totalcredit) OVER running,
              coalesce(day.tracekey, base.lasttracekey), base.lasttracekey
       FROM day
       JOIN base ON base.branch = day.branch AND base.account = day.account
       WINDOW running AS (PARTITION BY day.branch, day.account ORDER BY day.dateref)
       ON CONFLICT (branch, account, dateref) DO UPDATE
       SET totaldebit = excluded.totaldebit,
           totalcredit = excluded.totalcredit,
           accumulateddebit = excluded.accumulateddebit,
           accumulatedcredit = excluded.accumulatedcredit,
           updatetracekey = excluded.updatetracekey,
           updatedat = now()"""
)

_QUEUE_CALLBACKS = text("INSERT INTO flow.callback_outbox (callbacks) VALUES (:callbacks)")


def account_lock_key(branch: str, account: str) -> int:
    """A stable signed 64-bit key per account, the same in every engine process."""
    digest = hashlib.blake2b(f"{branch}/{account}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _judge(posting: PostingMessage, events: dict[int, tuple[bool, bool, bool]], window_days: int) -> Code:
    event = events.get(posting.eventcode)
    if event is None:
        return Code.EVENT_NOT_FOUND
    active, allowdebit, allowcredit = event
    if not active:
        return Code.EVENT_INACTIVE
    if posting.debitcredit == "D" and not allowdebit:
        return Code.EVENT_DISALLOWS_DEBIT
    if posting.debitcredit == "C" and not allowcredit:
        return Code.EVENT_DISALLOWS_CREDIT
    return check_dateref(posting.dateref, posting.acceptedat, window_days) or Code.APPLIED


@dataclass
class _DayDelta:
    debit: Decimal = Decimal(0)
    credit: Decimal = Decimal(0)
    tracekey: UUID | None = None  # the day's last posting


def _day_deltas(postings: list[PostingMessage]) -> dict[str, list]:
    """The batch summed per account and day, with the last posting of each day and of each account."""
    days: dict[tuple[str, str, object], _DayDelta] = defaultdict(_DayDelta)
    last_of_account: dict[tuple[str, str], UUID] = {}
    for p in postings:  # in arrival order
        day = days[(p.branch, p.account, p.dateref)]
        if p.debitcredit == "D":
            day.debit += p.amount
        else:
            day.credit += p.amount
        day.tracekey = p.tracekey
        last_of_account[(p.branch, p.account)] = p.tracekey
    keys = sorted(days)
    return {
        "branch": [k[0] for k in keys], "account": [k[1] for k in keys], "dateref": [k[2] for k in keys],
        "debit": [days[k].debit for k in keys], "credit": [days[k].credit for k in keys],
        "tracekey": [days[k].tracekey for k in keys],
        "lasttracekey": [last_of_account[(k[0], k[1])] for k in keys],
    }


async def apply_batch(conn: AsyncConnection, postings: list[PostingMessage], window_days: int) -> list[Outcome]:
    """Applies `postings` inside the caller's transaction; returns one outcome per posting, in order.

    The caller commits; nothing here is visible to others, nor announced, until then.
    """
    if not postings:
        return []
    # One posting per id: a later copy in the same batch is judged against the content that counts.
    first: dict[UUID, PostingMessage] = {}
    for posting in postings:
        first.setdefault(posting.id, posting)
    prints = {pid: fingerprint(p) for pid, p in first.items()}

    keys = sorted({account_lock_key(p.branch, p.account) for p in first.values()})
    await conn.execute(_LOCK_ACCOUNTS, {"keys": keys})

    rows = await conn.execute(_EVENTS, {"codes": sorted({p.eventcode for p in first.values()})})
    events = {r.code: (r.active, r.allowdebit, r.allowcredit) for r in rows}
    judged = {pid: _judge(p, events, window_days) for pid, p in first.items()}

    # Inserted in id order, so two engines racing on overlapping ids wait on each other in one order.
    ordered = sorted(first, key=attrgetter("int"))
    owned = {row.id for row in await conn.execute(_RECORD_OUTCOMES, {
        "id": ordered, "tracekey": [first[pid].tracekey for pid in ordered],
        "fingerprint": [prints[pid] for pid in ordered], "code": [judged[pid].value for pid in ordered],
        "dateref": [first[pid].dateref for pid in ordered],
    })}

    # Whose content counts for each id: the one recorded earlier, else the batch's first copy.
    decided = {pid: Outcome(pid, first[pid].tracekey, judged[pid]) for pid in owned}
    counted_print = {pid: prints[pid] for pid in owned}
    seen_before = [pid for pid in ordered if pid not in owned]
    if seen_before:
        for row in await conn.execute(_STORED_OUTCOMES, {"ids": seen_before}):
            decided[row.id] = Outcome(row.id, row.tracekey, Code(row.code))
            counted_print[row.id] = row.fingerprint

    applied = [p for p in first.values() if p.id in owned and judged[p.id] is Code.APPLIED]
    if applied:
        raw = (await conn.get_raw_connection()).driver_connection  # asyncpg, in this transaction
        await raw.copy_records_to_table("transaction", schema_name="flow", columns=_TRANSACTION_COLUMNS, records=[
            (p.id, p.branch, p.account, p.amount, p.debitcredit, p.eventcode, p.description, p.tracekey,
             None if p.details is None else json.dumps(p.details), p.dateref, p.acceptedat)
            for p in applied
        ])
        await conn.execute(_APPLY_DAYS, _day_deltas(applied))

    results, announce = [], {}
    for posting in postings:
        content = prints[posting.id] if posting is first[posting.id] else fingerprint(posting)
        if content == counted_print[posting.id]:
            outcome = decided[posting.id]
            if posting.id in owned:
                announce[outcome.messageid] = outcome
        else:
            outcome = Outcome(posting.id, posting.tracekey, Code.ID_REUSED)
            announce[outcome.messageid] = outcome
        results.append(outcome)
    # A redelivered posting's outcome was queued with its first delivery: only new outcomes are queued.
    if announce:
        await conn.execute(_QUEUE_CALLBACKS, {"callbacks": json.dumps([o.callback() for o in announce.values()])})
    return results

