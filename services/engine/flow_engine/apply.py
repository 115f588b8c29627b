"""The transactional engine: applies a batch of postings in one database transaction.

Set-based, in the seed's CTE style: each step is one statement over the whole batch, which travels
as columns (see _POSTINGS). Per batch:
1. judge each posting against the event catalogue and the retroactive window;
2. record each id's outcome, insert the applied postings into flow.transaction and queue the new
   outcomes' callbacks in the outbox (one statement). The outcome's primary key is the posting id,
   so a redelivered posting finds its outcome already there and changes nothing. The same statement
   looks the batch's accounts up in the registry (flow.account) and returns the *ruled* ones: those
   with a status other than active, or a limit (and, when unknown accounts are refused, those with no
   row). Their postings are recorded as applied for now;
3. lock the applied postings' accounts (advisory locks, taken in one global order, so parallel
   engines never deadlock and two batches of one account move its balances one after the other).
   Steps 1-2 take no account lock, so batches sharing accounts do that work side by side;
3b. only when the batch has ruled accounts: read their registry rows and day rows as they are now,
   under the locks, and judge their postings in batch order (account_rules.py); a posting refused
   there has its outcome turned into the rejection (with its figures), its transaction row removed
   and its callback's code changed, all in this transaction, so nothing of it is ever seen applied;
4. move those accounts' day rows from the earliest day the batch touches: day totals by the batch,
   accumulated totals by its running sum (retroactive postings move every later day); new days
   continue from the row before. A statement of its own, so its snapshot sees every batch that held
   the locks before. It also writes each applied posting's balance (and available balance) after
   the batch into its callback, and checks that no account the batch took for unruled in step 2
   gained a rule before the locks were taken (an admin change, which takes the same lock, committed
   in between): then the batch fails as a serialization failure and is tried again, judged anew.
Everything commits together: no effect without its callback, no callback without its effect.

The ledger's limits are constraints the day rows carry (sql/0006); a batch that breaks one fails
whole, and the consumer isolates the posting that did (see consumer.py), which is then recorded as
rejected with the rule's code (`refuse`) instead of applied.
"""

import json
from datetime import date
from operator import attrgetter
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from flow_rules.accounts import account_lock_key
from flow_rules.codes import Code
from flow_rules.posting import check_dateref, fingerprint

from flow_rules.account_rules import AccountState, Refusal
from .message import Posting
from .outcome import Outcome

__all__ = ["LEDGER_RULES", "account_lock_key", "apply_batch", "ledger_rule"]

# The database constraints that are ledger rules, and the rejection each gives a posting that breaks it.
LEDGER_RULES = {"balance_within_ledger_limit": Code.BALANCE_LIMIT}


def ledger_rule(exc: BaseException) -> Code | None:
    """The rejection code when `exc` is the database refusing a batch for one of the ledger's rules."""
    cause = getattr(exc, "orig", None)  # SQLAlchemy's wrapper of the driver's error,
    cause = getattr(cause, "__cause__", None) or cause  # which wraps asyncpg's, which names the constraint
    return LEDGER_RULES.get(getattr(cause, "constraint_name", None))

_EVENTS = text(
    "SELECT code, active, allowdebit, allowcredit, forced FROM flow.event WHERE code = ANY(CAST(:codes AS int[]))"
)

# The postings as columns, in batch order (`ord`). Columns whose values never hold the unit separator
# (validated branch, account, D/C, amount; codes) travel as one string each, split by PostgreSQL:
# per value, that costs the client a fraction of encoding an array element.
_SEP = "\x1f"
_POSTINGS = """unnest(CAST(:id AS uuid[]), CAST(:tracekey AS uuid[]), string_to_array(:branch, chr(31)),
                  string_to_array(:account, chr(31)), CAST(string_to_array(:amount, chr(31)) AS numeric[]),
                  string_to_array(:debitcredit, chr(31)), CAST(:eventcode AS int[]), CAST(:description AS text[]),
                  CAST(:details AS text[]), CAST(:dateref AS date[]), CAST(:acceptedat AS timestamptz[]),
                  string_to_array(:code, chr(31)), CAST(string_to_array(:caller, chr(31)) AS int[]))
           WITH ORDINALITY
           AS p(id, tracekey, branch, account, amount, debitcredit, eventcode, description, details, dateref,
                acceptedat, code, caller, ord)"""

# Step 2. The fingerprint hashes the content (not tracekey nor acceptedat, which a client retrying
# the same posting may draw anew) and tells a redelivery from an id reused for another posting.
# Outcomes are inserted in id order, so two batches racing on overlapping ids wait in one order.
# The outbox row lists the recorded outcomes in batch order, so step 4 can write figures beside them.
# Returns the positions whose outcome this batch recorded, its outbox row, the ruled accounts
# ("branch<US>account") and, when the recorded are not all, every posting's fingerprint (batch order).
_RECORD = text(
    f"""WITH posting AS (
           SELECT p.*,
                  (CAST(:callersub AS text[]))[p.caller] AS callersub,  -- 0, no caller: out of range, null
                  (CAST(:callerclient AS text[]))[p.caller] AS callerclient,
                  md5(concat_ws(chr(31), p.branch, p.account, p.amount::numeric(15,2)::text, p.debitcredit,
                                p.eventcode::text, coalesce('=' || p.description, chr(30)),
                                coalesce('=' || p.details, chr(30)), p.dateref::text))::uuid AS fingerprint
           FROM {_POSTINGS}),
       first_copy AS (  -- of an id sent twice in one batch, the first copy counts
           SELECT DISTINCT ON (id) * FROM posting ORDER BY id, ord),
       recorded AS (
           INSERT INTO flow.outcome (id, tracekey, fingerprint, code, dateref, callersub, callerclient)
           SELECT id, tracekey, fingerprint, code, dateref, callersub, callerclient FROM first_copy ORDER BY id
           ON CONFLICT (id) DO NOTHING
           RETURNING id, tracekey, code),
       owned AS (  -- the postings whose outcome this batch recorded
           SELECT f.* FROM first_copy f JOIN recorded USING (id)),
       applied AS (
           INSERT INTO flow.transaction (id, branch, account, amount, debitcredit, eventcode, description,
                                         tracekey, details, dateref, acceptedat, callersub, callerclient)
           SELECT f.id, f.branch, f.account, f.amount, f.debitcredit, f.eventcode, f.description, f.tracekey,
                  CAST(f.details AS json), f.dateref, f.acceptedat, f.callersub, f.callerclient
           FROM owned f
           WHERE f.code = :applied),
       announced AS (  -- the new outcomes' callbacks, in the batch's transaction
           INSERT INTO flow.callback_outbox (ids, tracekeys, codes)
           SELECT array_agg(id), array_agg(tracekey), array_agg(code)  -- in batch order: one sort for the three
           FROM (SELECT id, tracekey, code FROM owned ORDER BY ord) o HAVING count(*) > 0
           RETURNING seq),
       ruled AS (  -- accounts with a rule for step 3b; none in the usual batch. L: active with a limit only.
                   -- One index probe per account (OFFSET 0 keeps it one): never a scan of the registry.
           SELECT f.branch, f.account, coalesce(a.kind, CASE WHEN :reject_unknown THEN 'S' END) AS kind
           FROM (SELECT DISTINCT branch, account FROM owned WHERE code = :applied) f
           LEFT JOIN LATERAL (
               SELECT CASE WHEN a.status <> 'active' THEN 'S' WHEN a.overdraftlimit IS NOT NULL THEN 'L' ELSE '' END
                      AS kind
               FROM flow.account a
               WHERE (SELECT EXISTS (SELECT FROM flow.account))  -- evaluated once: no registry, no probes
                 AND a.branch = f.branch AND a.account = f.account OFFSET 0) a ON true)
       SELECT ARRAY(SELECT ord - 1 FROM owned) AS owned, (SELECT seq FROM announced) AS seq,
              ARRAY(SELECT kind || branch || chr(31) || account FROM ruled WHERE kind <> '') AS ruled,
              CASE WHEN (SELECT count(*) FROM recorded) < :count  -- only a batch with repeats needs them
                   THEN (SELECT array_agg(fingerprint ORDER BY ord) FROM posting) END AS fingerprints"""
)

_STORED_OUTCOMES = text(
    "SELECT id, tracekey, fingerprint, code FROM flow.outcome WHERE id = ANY(CAST(:ids AS uuid[]))"
)

_QUEUE_CALLBACKS = text(
    """INSERT INTO flow.callback_outbox (ids, tracekeys, codes)
       VALUES (CAST(:ids AS uuid[]), CAST(:tracekeys AS uuid[]), CAST(:codes AS text[]))"""
)

_LOCK_ACCOUNTS = text(
    # unnest yields the keys in array order, which the caller sorted.
    "SELECT pg_advisory_xact_lock(key) FROM unnest(CAST(:keys AS bigint[])) AS key"
)

# Step 3b: the ruled accounts as they are under the locks: the registry row (status null: none) and
# the end-of-day balances from `since` (the earliest day the batch touches) on, and the one before.
_RULED_STATE = text(
    """SELECT a.status, a.blockdebit, a.blockcredit, a.overdraftlimit,
              coalesce((SELECT b.accumulatedcredit - b.accumulateddebit FROM flow.balance b
                        WHERE b.branch = w.branch AND b.account = w.account AND b.dateref < w.since
                        ORDER BY b.dateref DESC LIMIT 1), 0) AS opening,
              d.days, d.balances
       FROM unnest(string_to_array(:branch, chr(31)), string_to_array(:account, chr(31)), CAST(:since AS date[]))
            WITH ORDINALITY AS w(branch, account, since, ord)
       LEFT JOIN LATERAL (
           SELECT * FROM flow.account a WHERE a.branch = w.branch AND a.account = w.account OFFSET 0) a ON true
       CROSS JOIN LATERAL (
           SELECT array_agg(b.dateref ORDER BY b.dateref) AS days,
                  array_agg(b.accumulatedcredit - b.accumulateddebit ORDER BY b.dateref) AS balances
           FROM flow.balance b
           WHERE b.branch = w.branch AND b.account = w.account AND b.dateref >= w.since) d
       ORDER BY w.ord"""
)

# Step 3b's refusals: recorded as applied in step 2, now rejected: the outcome takes the code and
# figures, the transaction row goes, the outbox row's codes and figures are rewritten (batch order).
# (The relay reads a funds refusal's figures from its outcome.) The transaction rows are found by id
# and dateref lists, so only the partitions of those days are searched.
_REFUSE = text(
    """WITH refused AS (
           SELECT * FROM unnest(CAST(:id AS uuid[]), CAST(:code AS text[]), CAST(:available AS numeric[]),
                                CAST(:shortfall AS numeric[]), CAST(:breakday AS date[]))
                    AS r(id, code, available, shortfall, breakday)),
       outcome AS (
           UPDATE flow.outcome o
           SET code = r.code, available = r.available, shortfall = r.shortfall, breakday = r.breakday
           FROM refused r WHERE o.id = r.id),
       removed AS (
           DELETE FROM flow.transaction
           WHERE id = ANY(CAST(:id AS uuid[])) AND dateref = ANY(CAST(:dateref AS date[])))
       UPDATE flow.callback_outbox SET codes = CAST(:codes AS text[]) WHERE seq = :seq"""
)

# Step 4, over the applied postings, summed per account and day (`delta`, with `upto`: the batch's
# running sum over the account's touched days, which holds until the next touched day). Stored day
# rows from the first touched day on move by it (and a touched day's totals by that day's delta);
# a touched day with no row yet gets one, its running totals continuing from the stored row before
# it. Both read the statement's snapshot, taken after the locks: what the batch found stored.
# Then each applied posting's callback gets its account's balance as of today (the latest day row,
# which the statement just wrote: no dateref is in the future) and available balance (balance +
# limit; null without a limit), in the outbox row's arrays of the applied outcomes, in batch order;
# and the registry check (see above).
_APPLY_DAYS = text(
    """WITH posting AS (
           SELECT * FROM unnest(string_to_array(:branch, chr(31)), string_to_array(:account, chr(31)),
                                CAST(:dateref AS date[]), CAST(string_to_array(:amount, chr(31)) AS numeric[]),
                                string_to_array(:debitcredit, chr(31)))
                    WITH ORDINALITY AS p(branch, account, dateref, amount, debitcredit, ord)),
       day AS (
           SELECT branch, account, dateref,
                  coalesce(sum(amount) FILTER (WHERE debitcredit = 'D'), 0) AS debit,
                  coalesce(sum(amount) FILTER (WHERE debitcredit = 'C'), 0) AS credit,
                  max(ord) AS last
           FROM posting GROUP BY branch, account, dateref),
       delta AS (
           SELECT day.*,
                  (CAST(:tracekey AS uuid[]))[last] AS tracekey,  -- the day's last posting (by its ord)
                  (CAST(:tracekey AS uuid[]))[max(last) OVER account] AS lasttracekey,  -- the account's last
                  sum(debit) OVER running AS upto_debit, sum(credit) OVER running AS upto_credit,
                  lead(dateref) OVER running AS next_day
           FROM day
           WINDOW account AS (PARTITION BY branch, account), running AS (account ORDER BY dateref)),
       moved AS (
           UPDATE flow.balance b
           SET totaldebit = b.totaldebit + CASE WHEN b.dateref = d.dateref THEN d.debit ELSE 0 END,
               totalcredit = b.totalcredit + CASE WHEN b.dateref = d.dateref THEN d.credit ELSE 0 END,
               accumulateddebit = b.accumulateddebit + d.upto_debit,
               accumulatedcredit = b.accumulatedcredit + d.upto_credit,
               updatetracekey = d.lasttracekey,
               updatedat = now()
           FROM delta d
           WHERE b.branch = d.branch AND b.account = d.account
             AND b.dateref >= d.dateref AND (b.dateref < d.next_day OR d.next_day IS NULL)
           RETURNING b.branch, b.account, b.dateref, b.accumulateddebit, b.accumulatedcredit),
       new_day AS MATERIALIZED (  -- touched days without a stored row (NOT IN: a hashed lookup in `moved`)
           SELECT d.* FROM delta d
           WHERE (d.branch, d.account, d.dateref) NOT IN (SELECT branch, account, dateref FROM moved)),
       opened AS (
       INSERT INTO flow.balance (branch, account, dateref, totaldebit, totalcredit, accumulateddebit,
                                 accumulatedcredit, tracekey, updatetracekey)
       SELECT d.branch, d.account, d.dateref, d.debit, d.credit,
              coalesce(before.accumulateddebit, 0) + d.upto_debit,
              coalesce(before.accumulatedcredit, 0) + d.upto_credit,
              d.tracekey, d.lasttracekey
       FROM new_day d
       LEFT JOIN LATERAL (
           SELECT b.accumulateddebit, b.accumulatedcredit
           FROM flow.balance b
           WHERE b.branch = d.branch AND b.account = d.account AND b.dateref < d.dateref
           ORDER BY b.dateref DESC
           LIMIT 1) before ON true
       RETURNING branch, account, dateref, accumulateddebit, accumulatedcredit),
       latest AS (  -- each account's balance after the batch, with its registry row as it is now. Running
                    -- totals never decrease, so the latest day row holds both maxima: no sort needed.
           SELECT r.branch, r.account, r.balance, a.status, a.overdraftlimit
           FROM (SELECT branch, account, max(accumulatedcredit) - max(accumulateddebit) AS balance
                 FROM (TABLE moved UNION ALL TABLE opened) r GROUP BY branch, account) r
           LEFT JOIN LATERAL (  -- one index probe per account, as in step 2
               SELECT a.status, a.overdraftlimit FROM flow.account a
               WHERE (SELECT EXISTS (SELECT FROM flow.account))
                 AND a.branch = r.branch AND a.account = r.account OFFSET 0) a ON true),
       announced AS (  -- one balance (and available balance) per applied posting, in batch order
           UPDATE flow.callback_outbox o
           SET balances = f.balances, availables = f.availables
           FROM (SELECT array_agg(l.balance ORDER BY p.ord) AS balances,
                        CASE WHEN bool_or(l.overdraftlimit IS NOT NULL)
                             THEN array_agg(l.balance + l.overdraftlimit ORDER BY p.ord) END AS availables
                 FROM posting p JOIN latest l USING (branch, account)) f
           WHERE o.seq = :seq)
       SELECT CASE WHEN EXISTS (
                  SELECT FROM latest
                  WHERE (status <> 'active' OR overdraftlimit IS NOT NULL)
                    AND branch || chr(31) || account <> ALL (CAST(:ruled AS text[]))
                    AND NOT (status = 'active' AND branch || chr(31) || account = ANY (CAST(:credited AS text[]))))
              THEN flow.registry_moved() END"""
)


def _judge(posting: Posting, events: dict[int, tuple[bool, bool, bool, bool]], window_days: int) -> Code:
    event = events.get(posting.eventcode)
    if event is None:
        return Code.EVENT_NOT_FOUND
    active, allowdebit, allowcredit, _ = event
    if not active:
        return Code.EVENT_INACTIVE
    if posting.debitcredit == "D" and not allowdebit:
        return Code.EVENT_DISALLOWS_DEBIT
    if posting.debitcredit == "C" and not allowcredit:
        return Code.EVENT_DISALLOWS_CREDIT
    return check_dateref(posting.dateref, posting.acceptedat, window_days) or Code.APPLIED


_JOINED = frozenset({"branch", "account", "amount", "debitcredit"})
_COLUMNS = ("id", "tracekey", "branch", "account", "amount", "debitcredit", "eventcode", "description", "dateref",
            "acceptedat")
_DAY_COLUMNS = ("branch", "account", "dateref", "amount", "debitcredit", "tracekey")


def _columns(postings: list[Posting], names: tuple[str, ...] = _COLUMNS) -> dict[str, tuple | str]:
    """The postings as columns (one pass over the postings, then transposed); see _POSTINGS."""
    row = attrgetter(*names)
    columns = dict(zip(names, zip(*map(row, postings))))
    if "amount" in columns:
        columns["amount"] = map(str, columns["amount"])
    for name in _JOINED.intersection(columns):
        columns[name] = _SEP.join(columns[name])
    return columns


# Compact, sorted keys: the form the fingerprint hashes (and the outcomes recorded so far hashed).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode


def _canonical_details(postings: list[Posting]) -> list[str | None]:
    return [None if p.details is None else _CANONICAL(p.details) for p in postings]


def _callers(postings: list[Posting]) -> dict[str, str | list[str | None]]:
    """Who posted each posting (the token's subject and client): the batch's few distinct callers, and
    each posting's place among them (from 1; 0 where the message names nobody). One joined string
    instead of two arrays of the batch's length, which cost the client per element."""
    known: dict[tuple[str | None, str | None], int] = {}
    places = [known.setdefault((c.sub, c.client), len(known) + 1) if (c := p.caller) else 0 for p in postings]
    return {"caller": _SEP.join(map(str, places)), "callersub": [sub for sub, _ in known],
            "callerclient": [client for _, client in known]}


async def apply_batch(conn: AsyncConnection, postings: list[Posting], window_days: int,
                      refuse: Code | None = None, reject_unknown: bool = False) -> list[Outcome]:
    """Applies `postings` inside the caller's transaction; returns one outcome per posting, in order.
    With `refuse` (a ledger rule's code), what would be applied is recorded as rejected with it.
    With `reject_unknown`, postings to accounts that are not in the registry are rejected (R029).

    The caller commits; nothing here is visible to others, nor announced, until then.
    """
    if not postings:
        return []
    rows = await conn.execute(_EVENTS, {"codes": sorted({p.eventcode for p in postings})})
    events = {r.code: (r.active, r.allowdebit, r.allowcredit, r.forced) for r in rows}
    codes = [_judge(p, events, window_days) for p in postings]
    if refuse:
        codes = [refuse if code is Code.APPLIED else code for code in codes]

    recorded = (await conn.execute(_RECORD, {
        **_columns(postings), **_callers(postings), "details": _canonical_details(postings),
        "code": _SEP.join(c.value for c in codes),
        "applied": Code.APPLIED.value, "count": len(postings), "reject_unknown": reject_unknown,
    })).one()
    owned: list[int] = sorted(recorded.owned)  # batch order: a day row's updatetracekey is its last posting
    applied = [n for n in owned if codes[n] is Code.APPLIED]
    if applied:
        keys = sorted({account_lock_key(postings[n].branch, postings[n].account) for n in applied})
        days = _day_columns(postings, applied, recorded)  # before the locks: they are held till commit
        await conn.execute(_LOCK_ACCOUNTS, {"keys": keys})
        if recorded.ruled:
            ruled, credited = _to_judge(postings, applied, recorded.ruled)
            days.update(ruled=list(ruled), credited=credited)
            refused = await _judge_ruled(conn, postings, applied, ruled, events)
            if refused:
                await _refuse(conn, postings, codes, owned, refused, recorded.seq)
                applied = [n for n in applied if n not in refused]
                days = {**_day_columns(postings, applied, recorded), "ruled": list(ruled), "credited": credited}
        if applied:
            await conn.execute(_APPLY_DAYS, days)

    if len(owned) == len(postings):  # the usual batch: every posting new, each id once
        return [Outcome(p.id, p.tracekey, code) for p, code in zip(postings, codes)]
    return await _settle_repeats(conn, postings, codes, owned, recorded.fingerprints)


def _day_columns(postings: list[Posting], applied: list[int], recorded) -> dict:
    return {**_columns([postings[n] for n in applied], _DAY_COLUMNS), "seq": recorded.seq, "ruled": [],
            "credited": []}


def _to_judge(postings: list[Posting], applied: list[int], ruled: list[str]) -> tuple[set[str], list[str]]:
    """Of step 2's ruled accounts, those step 3b must judge, and those it need not: active accounts whose
    only rule is a limit and which the batch only credits (a limit judges debits alone). Step 4 checks
    that these are still active once locked."""
    debited = {f"{postings[n].branch}{_SEP}{postings[n].account}" for n in applied if postings[n].debitcredit == "D"}
    judged = {key[1:] for key in ruled if key[0] == "S" or key[1:] in debited}
    return judged, [key[1:] for key in ruled if key[1:] not in judged]


async def _judge_ruled(conn: AsyncConnection, postings: list[Posting], applied: list[int], ruled: set[str],
                       events: dict[int, tuple[bool, bool, bool, bool]]) -> dict[int, Refusal]:
    """Step 3b: the refusals among the ruled accounts' postings, judged in batch order under the locks."""
    since: dict[str, date] = {}  # "branch<US>account" -> the earliest day the batch touches
    mine = []
    for n in applied:
        p = postings[n]
        key = f"{p.branch}{_SEP}{p.account}"
        if key in ruled:
            mine.append((n, key))
            if key not in since or p.dateref < since[key]:
                since[key] = p.dateref
    accounts = [key.split(_SEP) for key in since]
    rows = await conn.execute(_RULED_STATE, {"branch": _SEP.join(b for b, _ in accounts),
                                             "account": _SEP.join(a for _, a in accounts), "since": list(since.values())})
    states = {key: AccountState(registered=status is not None, status=status, blockdebit=blockdebit,
                                blockcredit=blockcredit, limit=limit, opening=opening, days=days or [],
                                balances=balances or [])
              for key, (status, blockdebit, blockcredit, limit, opening, days, balances) in zip(since, rows)}
    refused = {}
    for n, key in mine:
        p = postings[n]
        refusal = states[key].judge(p.debitcredit, p.amount, p.dateref, events[p.eventcode][3])
        if refusal is not None:
            refused[n] = refusal
    return refused


async def _refuse(conn: AsyncConnection, postings: list[Posting], codes: list[Code], owned: list[int],
                  refused: dict[int, Refusal], seq: int) -> None:
    """Turns step 3b's refusals into rejections: outcome, transaction row, callback (see _REFUSE)."""
    for n, refusal in refused.items():
        codes[n] = refusal.code
    await conn.execute(_REFUSE, {
        "id": [postings[n].id for n in refused], "dateref": [postings[n].dateref for n in refused],
        "code": [r.code.value for r in refused.values()], "available": [r.available for r in refused.values()],
        "shortfall": [r.shortfall for r in refused.values()], "breakday": [r.breakday for r in refused.values()],
        "codes": [codes[n].value for n in owned], "seq": seq})


async def _settle_repeats(conn: AsyncConnection, postings: list[Posting], codes: list[Code], owned: list[int],
                          prints: list[UUID]) -> list[Outcome]:
    """Outcomes for a batch holding ids seen before (redeliveries, reuses) or twice: the content that
    counts for an id is the one this batch recorded, else the one recorded earlier; a posting whose
    content differs from it gets ID_REUSED, announced every time it comes."""
    decided = {postings[n].id: Outcome(postings[n].id, postings[n].tracekey, codes[n]) for n in owned}
    counted_print = {postings[n].id: prints[n] for n in owned}
    seen_before = {p.id for p in postings} - decided.keys()
    if seen_before:
        for row in await conn.execute(_STORED_OUTCOMES, {"ids": list(seen_before)}):
            decided[row.id] = Outcome(row.id, row.tracekey, Code(row.code))
            counted_print[row.id] = row.fingerprint

    results, reused = [], {}
    for posting, content in zip(postings, prints):
        counted = counted_print[posting.id]
        # Outcomes recorded before FLOW hashed content in SQL carry the older Python fingerprint.
        if content == counted or (posting.id in seen_before and fingerprint(posting) == counted):
            results.append(decided[posting.id])
        else:
            outcome = Outcome(posting.id, posting.tracekey, Code.ID_REUSED)
            reused[outcome] = None
            results.append(outcome)
    # A redelivered posting's outcome was queued with its first delivery: only reuses are queued here.
    if reused:
        await conn.execute(_QUEUE_CALLBACKS, {"ids": [o.id for o in reused], "tracekeys": [o.tracekey for o in reused],
                                              "codes": [o.code.value for o in reused]})
    return results
