"""The transactional engine: applies a batch of postings in one database transaction.

Set-based, in the seed's CTE style: the batch travels as one JSON parameter and each step is one
statement over all of it. Per batch:
1. lock the batch's accounts (advisory locks, in one global order, so parallel engines never
   deadlock);
2. judge each posting against the event catalogue and the retroactive window;
3. record its outcome; the outcome's primary key is the posting id, so a redelivered posting
   finds its outcome already there and changes nothing;
4. insert the applied postings into flow.transaction;
5. create missing day rows, carrying the accumulated totals of the day before;
6. add each day's totals to its row and to the accumulated totals of every later day.
"""

import hashlib
import json
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from flow_kit.codes import Code
from flow_kit.posting import PostingMessage, check_dateref, fingerprint

from .outcome import Outcome

__all__ = ["apply_batch", "account_lock_key"]

# The batch as a relation: every statement below reads it through this.
_POSTED = """jsonb_to_recordset(CAST(:postings AS jsonb)) AS p(
    ord int, id uuid, branch text, account text, amount numeric(15,2), debitcredit varchar(1),
    eventcode int, description text, tracekey uuid, details json, dateref date, acceptedat timestamptz)"""

_LOCK_ACCOUNTS = text(
    # unnest yields the keys in array order, which the caller sorted.
    "SELECT pg_advisory_xact_lock(key) FROM unnest(CAST(:keys AS bigint[])) AS key"
)

_EVENTS = text(
    "SELECT code, active, allowdebit, allowcredit FROM flow.event WHERE code = ANY(CAST(:codes AS int[]))"
)

_RECORD_OUTCOMES = text(
    """INSERT INTO flow.outcome (id, tracekey, fingerprint, status, code, message)
       SELECT id, tracekey, fingerprint, status, code, message
       FROM jsonb_to_recordset(CAST(:outcomes AS jsonb))
            AS o(id uuid, tracekey uuid, fingerprint text, status text, code text, message text)
       ON CONFLICT (id) DO NOTHING
       RETURNING id"""
)

_STORED_OUTCOMES = text(
    "SELECT id, tracekey, fingerprint, code FROM flow.outcome WHERE id = ANY(CAST(:ids AS uuid[]))"
)

_INSERT_TRANSACTIONS = text(
    f"""INSERT INTO flow.transaction
           (id, branch, account, amount, debitcredit, eventcode, description, tracekey, details, dateref, acceptedat)
        SELECT id, branch, account, amount, debitcredit, eventcode, description, tracekey, details, dateref, acceptedat
        FROM {_POSTED}"""
)

# A day row created here starts with zero day totals and the accumulated totals of the latest
# earlier row; step 6 then adds the batch. Two new days of one account in the same batch are
# both right: the earlier new day adds nothing to the later one until step 6.
_CREATE_DAYS = text(
    f"""WITH day AS (
            SELECT branch, account, dateref, (array_agg(tracekey ORDER BY ord DESC))[1] AS tracekey
            FROM {_POSTED}
            GROUP BY branch, account, dateref)
        INSERT INTO flow.balance (branch, account, dateref, accumulateddebit, accumulatedcredit, tracekey, updatetracekey)
        SELECT d.branch, d.account, d.dateref,
               coalesce(prev.accumulateddebit, 0), coalesce(prev.accumulatedcredit, 0), d.tracekey, d.tracekey
        FROM day d
        LEFT JOIN LATERAL (
            SELECT b.accumulateddebit, b.accumulatedcredit
            FROM flow.balance b
            WHERE b.branch = d.branch AND b.account = d.account AND b.dateref < d.dateref
            ORDER BY b.dateref DESC
            LIMIT 1) prev ON true
        ON CONFLICT (branch, account, dateref) DO NOTHING"""
)

_ADD_TOTALS = text(
    f"""WITH day AS (
            SELECT branch, account, dateref,
                   coalesce(sum(amount) FILTER (WHERE debitcredit = 'D'), 0) AS debit,
                   coalesce(sum(amount) FILTER (WHERE debitcredit = 'C'), 0) AS credit,
                   max(ord) AS lastord,
                   (array_agg(tracekey ORDER BY ord DESC))[1] AS lasttracekey
            FROM {_POSTED}
            GROUP BY branch, account, dateref),
        change AS (
            SELECT b.id,
                   coalesce(sum(d.debit) FILTER (WHERE d.dateref = b.dateref), 0) AS daydebit,
                   coalesce(sum(d.credit) FILTER (WHERE d.dateref = b.dateref), 0) AS daycredit,
                   sum(d.debit) AS debit,
                   sum(d.credit) AS credit,
                   (array_agg(d.lasttracekey ORDER BY d.lastord DESC))[1] AS tracekey
            FROM day d
            JOIN flow.balance b ON b.branch = d.branch AND b.account = d.account AND b.dateref >= d.dateref
            GROUP BY b.id)
        UPDATE flow.balance b
        SET totaldebit = b.totaldebit + c.daydebit,
            totalcredit = b.totalcredit + c.daycredit,
            accumulateddebit = b.accumulateddebit + c.debit,
            accumulatedcredit = b.accumulatedcredit + c.credit,
            updatetracekey = c.tracekey,
            updatedat = now()
        FROM change c
        WHERE b.id = c.id"""
)


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


def _posting_row(ord_: int, posting: PostingMessage) -> dict:
    row = posting.model_dump(mode="json")
    row["ord"] = ord_
    return row


async def apply_batch(conn: AsyncConnection, postings: list[PostingMessage], window_days: int) -> list[Outcome]:
    """Applies `postings` inside the caller's transaction; returns one outcome per posting, in order.

    The caller commits; nothing here is visible to others until then.
    """
    if not postings:
        return []
    # One posting per id: a later copy in the same batch is judged against the first.
    first: dict[UUID, PostingMessage] = {}
    arrival: dict[UUID, int] = {}
    for n, posting in enumerate(postings):
        if posting.id not in first:
            first[posting.id], arrival[posting.id] = posting, n
    prints = {pid: fingerprint(p) for pid, p in first.items()}

    keys = sorted({account_lock_key(p.branch, p.account) for p in first.values()})
    await conn.execute(_LOCK_ACCOUNTS, {"keys": keys})

    rows = await conn.execute(_EVENTS, {"codes": sorted({p.eventcode for p in first.values()})})
    events = {r.code: (r.active, r.allowdebit, r.allowcredit) for r in rows}
    judged = {pid: _judge(p, events, window_days) for pid, p in first.items()}

    # Inserted in id order, so two engines racing on overlapping ids wait on each other in one order.
    ordered = sorted(first)
    outcome_rows = [
        {"id": str(pid), "tracekey": str(first[pid].tracekey), "fingerprint": prints[pid],
         "status": "applied" if judged[pid] is Code.APPLIED else "rejected",
         "code": judged[pid].value, "message": judged[pid].message}
        for pid in ordered
    ]
    owned = {row.id for row in await conn.execute(_RECORD_OUTCOMES, {"outcomes": json.dumps(outcome_rows)})}

    # Whose content counts for each id: the one recorded earlier, else the batch's first copy.
    decided = {pid: Outcome(pid, first[pid].tracekey, judged[pid]) for pid in owned}
    counted_print = {pid: prints[pid] for pid in owned}
    seen_before = [pid for pid in ordered if pid not in owned]
    if seen_before:
        for row in await conn.execute(_STORED_OUTCOMES, {"ids": [str(pid) for pid in seen_before]}):
            decided[row.id] = Outcome(row.id, row.tracekey, Code(row.code))
            counted_print[row.id] = row.fingerprint

    applied = [_posting_row(arrival[pid], first[pid]) for pid in ordered if pid in owned and judged[pid] is Code.APPLIED]
    if applied:
        params = {"postings": json.dumps(applied)}
        await conn.execute(_INSERT_TRANSACTIONS, params)
        await conn.execute(_CREATE_DAYS, params)
        await conn.execute(_ADD_TOTALS, params)

    results = []
    for posting in postings:
        content = prints[posting.id] if posting is first[posting.id] else fingerprint(posting)
        if content == counted_print[posting.id]:
            results.append(decided[posting.id])
        else:
            results.append(Outcome(posting.id, posting.tracekey, Code.ID_REUSED))
    return results
