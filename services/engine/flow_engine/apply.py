"""The transactional engine: applies a batch of postings in one database transaction.

Set-based, in the seed's CTE style: each step is one statement over the whole batch, which travels
as columns (see _POSTINGS). Per batch:
1. judge each posting against the event catalogue and the retroactive window (flow_rules.judge);
2. record each id's outcome, insert the applied postings into flow.transaction and queue the new
   outcomes' callbacks in the outbox (one statement). The outcome's primary key is the posting id,
   so a redelivered posting finds its outcome already there and changes nothing. The same statement
   looks the batch's accounts up in the registry (flow.account) and returns the *ruled* ones: those
   with a status other than active, or a limit (and, when unknown accounts are refused, those with no
   row), with their registry rows, and the registry's version (sql/0011). Their postings are
   recorded as applied for now;
3. lock the applied postings' accounts (advisory locks, taken in one global order, so parallel
   engines never deadlock and two batches of one account move its balances one after the other).
   Steps 1-2 take no account lock, so batches sharing accounts do that work side by side, and step 2
   also sums up, per ruled account, what step 3b judges on;
3b. only when the batch has ruled accounts: judge their postings, each account's in batch order
   (account_rules.py), on the registry rows step 2 read (step 4 checks they still hold) and, for the
   accounts whose debits a limit judges, on their day rows as they are now, under the locks: read by
   the statement that takes the locks (sql/0013), so no round trip is spent holding them. Those are
   read only for the accounts a worst case could break (their lowest balance from the earliest day
   the batch touches, less all the batch's debits on them, below -limit): the others pass every
   debit in any order. A posting refused there is written by step 4's statement: its outcome turned
   into the rejection (with its figures), its transaction row removed and its callback's code
   changed, all in this transaction, so nothing of it is ever seen applied;
4. move those accounts' day rows from the earliest day the batch touches: day totals by the batch,
   accumulated totals by its running sum (retroactive postings move every later day); new days
   continue from the row before. A statement of its own, so its snapshot sees every batch that held
   the locks before. It also writes each applied posting's balance (and available balance) after
   the batch into its callback, and checks the registry: its version unchanged since step 2 means no
   change to it committed in between (an admin change takes the account's lock, so none commits
   once the batch holds it), and nothing of it is read again; changed, the batch's accounts are
   looked up as they are now, and when one the batch took for unruled in step 2 gained a rule, or a
   ruled one has another registry row, the batch fails as a serialization failure and is tried
   again, judged anew.
Everything commits together: no effect without its callback, no callback without its effect.

The ledger's limits are constraints the day rows carry (sql/0006); a batch that breaks one fails
whole, and the consumer isolates the posting that did (see consumer.py), which is then recorded as
rejected with the rule's code (`refuse`) instead of applied.
"""

from collections.abc import Sequence
from decimal import Decimal
from operator import attrgetter
from typing import Any
from uuid import UUID

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

from flow_rules.account_rules import AccountState, Refusal
from flow_rules.accounts import ACTIVE, account_lock_key
from flow_rules.codes import Code
from flow_rules.fingerprint import canonical_details, fingerprint, same_content
from flow_rules.judge import EventFlags, judge

from .message import Posting
from .outcome import Outcome

__all__ = ["LEDGER_RULES", "account_lock_key", "apply_batch", "ledger_rule"]

# The database constraints that are ledger rules, and the rejection each gives a posting that breaks it.
LEDGER_RULES = {"balance_within_ledger_limit": Code.BALANCE_LIMIT}


def ledger_rule(exc: BaseException) -> Code | None:
    """The rejection code when `exc` is the database refusing a batch for one of the ledger's rules."""
    cause = getattr(exc, "orig", None)  # SQLAlchemy's wrapper of the driver's error,
    cause = getattr(cause, "__cause__", None) or cause  # which wraps asyncpg's, which names the constraint
    constraint: str | None = getattr(cause, "constraint_name", None)
    return LEDGER_RULES.get(constraint) if constraint else None


_EVENTS = text(
    "SELECT code, active, allowdebit, allowcredit, forced FROM flow.event WHERE code = ANY(CAST(:codes AS int[]))"
)

# The postings as columns, in batch order (`ord`). Columns whose values never hold the unit separator
# (validated branch, account, D/C, amount; codes) travel as one string each, split by PostgreSQL:
# per value, that costs the client a fraction of encoding an array element.
_SEP = "\x1f"
_RS = "\x1e"  # between values that hold _SEP
_ZERO = Decimal("0.00")
_POSTINGS = """unnest(CAST(:id AS uuid[]), CAST(:tracekey AS uuid[]), string_to_array(:branch, chr(31)),
                  string_to_array(:account, chr(31)), CAST(string_to_array(:amount, chr(31)) AS numeric[]),
                  string_to_array(:debitcredit, chr(31)), CAST(:eventcode AS int[]), CAST(:description AS text[]),
                  CAST(:details AS text[]), CAST(:dateref AS date[]), CAST(:acceptedat AS timestamptz[]),
                  string_to_array(:code, chr(31)), CAST(string_to_array(:caller, chr(31)) AS int[]),
                  CAST(string_to_array(:fingerprint, chr(31)) AS uuid[]))
           WITH ORDINALITY
           AS p(id, tracekey, branch, account, amount, debitcredit, eventcode, description, details, dateref,
                acceptedat, code, caller, fingerprint, ord)"""

# A registry row as step 2 hands it to step 3b, and as step 4 compares it when the registry changed in
# between: status, the blocks (0/1) and the limit (empty: none), <US>-separated; no row: empty.
_REGISTRY_ROW = (
    "status || chr(31) || blockdebit::int || chr(31) || blockcredit::int || chr(31) "
    "|| coalesce(overdraftlimit::text, '')"
)

# Step 2. The outcome keeps the posting's fingerprint (flow_rules.fingerprint), which tells a later
# redelivery from an id reused for another posting. Outcomes are inserted in id order, so two batches
# racing on overlapping ids wait in one order. The outbox row lists the recorded outcomes in batch
# order, so step 4 can write figures beside them. Returns the positions whose outcome this batch
# recorded, its outbox row, the ruled accounts (`ruled`: "<kind>branch<US>account", <RS> between them;
# kind S: a status other than active, or no row when unknown accounts are refused; L: active with a
# limit) with their registry rows in the same order (`registry`, see _REGISTRY_ROW), and the registry's
# version (sql/0011), read in the same snapshot as the rows; and what step 3b judges on, so the engine
# prepares nothing for it: the S accounts (`status_keys`, "branch<US>account") with their rows
# (`status_rows`), and the accounts whose debits a limit judges (`limited_*`, <US>-separated, as
# _LOCK_AND_READ_LIMITS takes them).
_RECORD = text(
    f"""WITH posting AS (
           SELECT p.*,
                  (CAST(:callersub AS text[]))[p.caller] AS callersub,  -- 0, no caller: out of range, null
                  (CAST(:callerclient AS text[]))[p.caller] AS callerclient
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
       ruled AS (  -- accounts with a rule; none in the usual batch. L: active with a limit only. With what step 3b
                   -- needs of each: the earliest day the batch touches, the sum of its debits, and whether a limit
                   -- judges one of them (`judged`: a debit whose event is not forced, as :forced lists them).
                   -- One index probe per account (OFFSET 0 keeps it one): never a scan of the registry.
           SELECT f.*, coalesce(a.kind, CASE WHEN :reject_unknown THEN 'S' END) AS kind,
                  a.status, a.blockdebit, a.blockcredit, a.overdraftlimit
           FROM (SELECT branch, account, min(dateref) AS since,
                        coalesce(sum(amount) FILTER (WHERE debitcredit = 'D'), 0) AS debits,
                        bool_or(debitcredit = 'D' AND eventcode <> ALL (CAST(:forced AS int[]))) AS judged
                 FROM owned WHERE code = :applied GROUP BY branch, account) f
           LEFT JOIN LATERAL (
               SELECT CASE WHEN a.status <> 'active' THEN 'S' WHEN a.overdraftlimit IS NOT NULL THEN 'L' ELSE '' END
                      AS kind, a.status, a.blockdebit, a.blockcredit, a.overdraftlimit
               FROM flow.account a
               WHERE (SELECT EXISTS (SELECT FROM flow.account))  -- evaluated once: no registry, no probes
                 AND a.branch = f.branch AND a.account = f.account OFFSET 0) a ON true)
       SELECT ARRAY(SELECT ord - 1 FROM owned) AS owned, (SELECT seq FROM announced) AS seq, r.*, s.*, l.*,
              (SELECT version FROM flow.registry_version) AS registry_version
       FROM (SELECT string_agg(kind || branch || chr(31) || account, chr(30)) AS ruled,
                    string_agg(coalesce({_REGISTRY_ROW}, ''), chr(30)) AS registry
             FROM ruled WHERE kind <> '') r,
            (SELECT string_agg(branch || chr(31) || account, chr(30)) AS status_keys,
                    string_agg(coalesce({_REGISTRY_ROW}, ''), chr(30)) AS status_rows
             FROM ruled WHERE kind = 'S') s,
            (SELECT string_agg(branch, chr(31)) AS limited_branch, string_agg(account, chr(31)) AS limited_account,
                    string_agg(since::text, chr(31)) AS limited_since,
                    string_agg(debits::text, chr(31)) AS limited_debits,
                    string_agg(overdraftlimit::text, chr(31)) AS limited_limits
             FROM ruled  -- where a limit judges a debit (not closed, not blocked for debits: those refuse it first)
             WHERE judged AND overdraftlimit IS NOT NULL AND status <> 'closed' AND NOT blockdebit) l"""
)

_STORED_OUTCOMES = text("SELECT id, tracekey, fingerprint, code FROM flow.outcome WHERE id = ANY(CAST(:ids AS uuid[]))")

_QUEUE_CALLBACKS = text(
    """INSERT INTO flow.callback_outbox (ids, tracekeys, codes)
       VALUES (CAST(:ids AS uuid[]), CAST(:tracekeys AS uuid[]), CAST(:codes AS text[]))"""
)

_LOCK_ACCOUNTS = text(
    # unnest yields the keys in array order, which the caller sorted.
    "SELECT pg_advisory_xact_lock(key) FROM unnest(CAST(:keys AS bigint[])) AS key"
)

# Steps 3 and 3b in one round trip, for a batch with accounts whose debits a limit judges: the locks,
# then those accounts' day rows as they are under them, for the accounts a worst case would break
# (sql/0013), taking step 2's `limited_*` as they are.
_LOCK_AND_READ_LIMITS = text(
    """SELECT place, opening, days, balances
       FROM flow.lock_and_read_limits(CAST(:keys AS bigint[]), :branch, :account, :since, :debits, :limits)"""
)

# Step 3b's refusals, written by step 4's statement (recorded as applied in step 2, now rejected): the
# outcome takes the code and figures, the transaction row goes, the outbox row's codes are rewritten
# (batch order). (The relay reads a funds refusal's figures from its outcome.) The outcomes are probed by
# id; the transaction rows by id within the range of their days, so only the partitions of those days
# are searched, by their keys, in custom and generic plans alike (a list of days, or a join, gets
# planned as a scan of a whole partition while partitions are small).
_REFUSALS = """refused AS (
           SELECT * FROM unnest(CAST(:refused AS uuid[]), CAST(:refused_code AS text[]),
                                CAST(:available AS numeric[]), CAST(:shortfall AS numeric[]), CAST(:breakday AS date[]))
                    AS r(id, code, available, shortfall, breakday)),
       turned AS (
           UPDATE flow.outcome o
           SET code = r.code, available = r.available, shortfall = r.shortfall, breakday = r.breakday
           FROM refused r WHERE o.id = ANY(CAST(:refused AS uuid[])) AND o.id = r.id),
       removed AS (
           DELETE FROM flow.transaction
           WHERE id = ANY(CAST(:refused AS uuid[])) AND dateref BETWEEN :refused_from AND :refused_to),
       """

# Step 4, over the applied postings, summed per account and day (`delta`, with `upto`: the batch's
# running sum over the account's touched days, which holds until the next touched day). Stored day
# rows from the first touched day on move by it (and a touched day's totals by that day's delta);
# a touched day with no row yet gets one, its running totals continuing from the stored row before
# it. Both read the statement's snapshot, taken after the locks: what the batch found stored.
# Then each applied posting's callback gets its account's balance as of today (the latest day row,
# which the statement just wrote: no dateref is in the future) and available balance (balance +
# limit; null without a limit), in the outbox row's arrays of the applied outcomes, in batch order;
# and the registry check (see above): while the registry's version is the one step 2 read (sql/0011),
# the limits are those step 2 read (`ruled`, `registry`, as _RECORD returned them) and no registry row
# is read under the locks; when it moved, every account is looked up as it is now, and the batch fails
# if one it took for unruled gained a rule, or a ruled one has another row now (a credited-only one too:
# simpler, and as rare).
# _APPLY_DAYS_REFUSING also writes step 3b's refusals (_REFUSALS, and the outbox row's codes).
_APPLY_DAYS_SQL = f"""WITH {{refusals}}posting AS (
           SELECT * FROM unnest(string_to_array(:branch, chr(31)), string_to_array(:account, chr(31)),
                                CAST(:dateref AS date[]), CAST(string_to_array(:amount, chr(31)) AS numeric[]),
                                string_to_array(:debitcredit, chr(31)))
                    WITH ORDINALITY AS p(branch, account, dateref, amount, debitcredit, ord){{skipping}}),
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
       registry AS (  -- whether the registry changed since step 2 read it; no version row: as if it had
           SELECT NOT coalesce((SELECT version FROM flow.registry_version) = CAST(:registry_version AS bigint), false)
                  AS changed),
       ruled AS (  -- step 2's ruled accounts and their rows (a lone empty row string is an empty array: null)
           SELECT substr(k.entry, 2) AS key, coalesce(k.row, '') AS row
           FROM unnest(string_to_array(:ruled, chr(30)), string_to_array(:registry, chr(30))) AS k(entry, row)),
       latest AS (  -- each account's balance after the batch, and its limit: as step 2 read it or, when the
                    -- registry changed since, as it is now (with its status). Running totals never decrease,
                    -- so the latest day row holds both maxima: no sort needed.
           SELECT r.branch, r.account, r.balance, a.status, k.key IS NOT NULL AS was_ruled,
                  CASE WHEN (SELECT changed FROM registry) THEN a.overdraftlimit
                       ELSE CAST(nullif(split_part(k.row, chr(31), 4), '') AS numeric) END AS overdraftlimit
           FROM (SELECT branch, account, max(accumulatedcredit) - max(accumulateddebit) AS balance
                 FROM (TABLE moved UNION ALL TABLE opened) r GROUP BY branch, account) r
           LEFT JOIN ruled k ON k.key = r.branch || chr(31) || r.account
           LEFT JOIN LATERAL (  -- one index probe per account, as in step 2, only when the registry changed
               SELECT a.status, a.overdraftlimit FROM flow.account a
               WHERE (SELECT changed FROM registry) AND a.branch = r.branch AND a.account = r.account OFFSET 0) a
               ON true),
       announced AS (  -- one balance (and available balance) per applied posting, in batch order
           UPDATE flow.callback_outbox o
           SET balances = f.balances, availables = f.availables{{codes}}
           FROM (SELECT array_agg(l.balance ORDER BY p.ord) AS balances,
                        CASE WHEN bool_or(l.overdraftlimit IS NOT NULL)
                             THEN array_agg(l.balance + l.overdraftlimit ORDER BY p.ord) END AS availables
                 FROM posting p JOIN latest l USING (branch, account)) f
           WHERE o.seq = :seq)
       SELECT CASE WHEN NOT (SELECT changed FROM registry) THEN NULL
                   WHEN EXISTS (  -- an account taken for unruled that gained a rule
                       SELECT FROM latest WHERE NOT was_ruled AND (status <> 'active' OR overdraftlimit IS NOT NULL))
                     OR EXISTS (  -- a ruled account whose row changed
                       SELECT FROM ruled j
                       WHERE j.row <> coalesce((
                           SELECT {_REGISTRY_ROW} FROM flow.account a
                           WHERE a.branch = split_part(j.key, chr(31), 1)
                             AND a.account = split_part(j.key, chr(31), 2)), ''))
                   THEN flow.registry_moved() END"""
_APPLY_DAYS = text(_APPLY_DAYS_SQL.format(refusals="", skipping="", codes=""))
_APPLY_DAYS_REFUSING = text(
    _APPLY_DAYS_SQL.format(
        refusals=_REFUSALS,
        skipping="\n           WHERE p.ord <> ALL (CAST(:skipped AS bigint[]))",
        codes=", codes = string_to_array(:codes, chr(31))",
    )
)


_JOINED = frozenset({"branch", "account", "amount", "debitcredit", "fingerprint"})
_COLUMNS = (
    "id",
    "tracekey",
    "branch",
    "account",
    "amount",
    "debitcredit",
    "eventcode",
    "description",
    "dateref",
    "acceptedat",
    "fingerprint",
)
_DAY_COLUMNS = ("branch", "account", "dateref", "amount", "debitcredit", "tracekey")


def _columns(postings: list[Posting], names: tuple[str, ...] = _COLUMNS) -> dict[str, Any]:
    """The postings as columns (one pass over the postings, then transposed); see _POSTINGS."""
    row = attrgetter(*names)
    columns: dict[str, Any] = dict(zip(names, zip(*map(row, postings), strict=True), strict=True))
    if "amount" in columns:
        columns["amount"] = map(str, columns["amount"])
    if "fingerprint" in columns:  # computed here only for messages queued before ingest carried it
        columns["fingerprint"] = [
            str(f or fingerprint(p)) for f, p in zip(columns["fingerprint"], postings, strict=True)
        ]
    for name in _JOINED.intersection(columns):
        columns[name] = _SEP.join(columns[name])
    return columns


def _canonical_details(postings: list[Posting]) -> list[str | None]:
    return [None if p.details is None else canonical_details(p.details) for p in postings]


def _callers(postings: list[Posting]) -> dict[str, str | list[str | None]]:
    """Who posted each posting (the token's subject and client): the batch's few distinct callers, and
    each posting's place among them (from 1; 0 where the message names nobody). One joined string
    instead of two arrays of the batch's length, which cost the client per element."""
    known: dict[tuple[str | None, str | None], int] = {}
    places = [known.setdefault((c.sub, c.client), len(known) + 1) if (c := p.caller) else 0 for p in postings]
    return {
        "caller": _SEP.join(map(str, places)),
        "callersub": [sub for sub, _ in known],
        "callerclient": [client for _, client in known],
    }


async def apply_batch(
    conn: AsyncConnection,
    postings: list[Posting],
    window_days: int,
    refuse: Code | None = None,
    reject_unknown: bool = False,
) -> list[Outcome]:
    """Applies `postings` inside the caller's transaction; returns one outcome per posting, in order.
    With `refuse` (a ledger rule's code), what would be applied is recorded as rejected with it.
    With `reject_unknown`, postings to accounts that are not in the registry are rejected (R029).

    The caller commits; nothing here is visible to others, nor announced, until then.
    """
    if not postings:
        return []
    rows = await conn.execute(_EVENTS, {"codes": sorted({p.eventcode for p in postings})})
    events = {r.code: EventFlags(r.active, r.allowdebit, r.allowcredit, r.forced) for r in rows}
    codes = [
        judge(events.get(p.eventcode), p.debitcredit, p.dateref, p.acceptedat, window_days) or Code.APPLIED
        for p in postings
    ]
    if refuse:
        codes = [refuse if code is Code.APPLIED else code for code in codes]

    recorded = (
        await conn.execute(
            _RECORD,
            {
                **_columns(postings),
                **_callers(postings),
                "details": _canonical_details(postings),
                "code": _SEP.join(c.value for c in codes),
                "applied": Code.APPLIED.value,
                "reject_unknown": reject_unknown,
                "forced": [code for code, event in events.items() if event.forced],
            },
        )
    ).one()
    owned: list[int] = sorted(recorded.owned)  # batch order: a day row's updatetracekey is its last posting
    applied = [n for n in owned if codes[n] is Code.APPLIED]
    if applied:
        keys = sorted({account_lock_key(postings[n].branch, postings[n].account) for n in applied})
        days = _day_columns(postings, applied, recorded)  # before the locks: they are held till commit
        limited: Sequence[Row] = []
        if recorded.limited_branch:  # the locks and the day rows a limit judges on, in one round trip
            limited = (await conn.execute(_LOCK_AND_READ_LIMITS, {"keys": keys, **_limited(recorded)})).all()
        else:
            await conn.execute(_LOCK_ACCOUNTS, {"keys": keys})
        statement = _APPLY_DAYS
        if recorded.status_keys or limited:
            refused = _judge_ruled(postings, applied, recorded, limited, events)
            if refused:  # written by step 4's statement, which leaves them out of the day rows
                days.update(_refusals(postings, codes, owned, applied, refused))
                statement = _APPLY_DAYS_REFUSING
        await conn.execute(statement, days)

    if len(owned) == len(postings):  # the usual batch: every posting new, each id once
        return [Outcome(p.id, p.tracekey, code) for p, code in zip(postings, codes, strict=True)]
    return await _settle_repeats(conn, postings, codes, owned)


def _day_columns(postings: list[Posting], applied: list[int], recorded) -> dict:
    return {
        **_columns([postings[n] for n in applied], _DAY_COLUMNS),
        "seq": recorded.seq,
        "registry_version": recorded.registry_version,
        "ruled": recorded.ruled or "",
        "registry": recorded.registry or "",
    }


def _limited(recorded) -> dict[str, str]:
    return {
        "branch": recorded.limited_branch,
        "account": recorded.limited_account,
        "since": recorded.limited_since,
        "debits": recorded.limited_debits,
        "limits": recorded.limited_limits,
    }


def _judge_ruled(
    postings: list[Posting], applied: list[int], recorded, limited: Sequence[Row], events: dict[int, EventFlags]
) -> dict[int, Refusal]:
    """Step 3b: the refusals, by the refused postings' places among the day columns (from 1), each
    account's postings judged in batch order (an account's refusals depend on its own postings alone),
    under the locks. Statuses are judged on the registry rows step 2 read (step 4 checks they still
    hold); limits on the day rows read with the locks, for the accounts a worst case could break:
    every other debit passes."""
    states: dict[tuple[str, str], AccountState] = {}
    if recorded.status_keys:
        for key, row in zip(recorded.status_keys.split(_RS), recorded.status_rows.split(_RS), strict=True):
            branch, account = key.split(_SEP)
            if not row:
                states[branch, account] = AccountState(registered=False)
                continue
            status, blockdebit, blockcredit, _ = row.split(_SEP)
            states[branch, account] = AccountState(
                registered=True, status=status, blockdebit=blockdebit == "1", blockcredit=blockcredit == "1"
            )
    if limited:
        branches, accounts = recorded.limited_branch.split(_SEP), recorded.limited_account.split(_SEP)
        limits = recorded.limited_limits.split(_SEP)
        for place, opening, days, balances in limited:
            key = (branches[place - 1], accounts[place - 1])
            status = states.get(key)  # None: active
            states[key] = AccountState(
                registered=True,
                status=status.status if status else ACTIVE,
                blockcredit=status.blockcredit if status else False,
                limit=Decimal(limits[place - 1]),
                opening=_ZERO if opening is None else opening,
                days=days or [],
                balances=balances or [],
            )
    refused: dict[int, Refusal] = {}
    if states:
        for place, n in enumerate(applied, 1):
            p = postings[n]
            if (state := states.get((p.branch, p.account))) is not None:
                refusal = state.judge(p.debitcredit, p.amount, p.dateref, events[p.eventcode].forced)
                if refusal is not None:
                    refused[place] = refusal
    return refused


def _refusals(
    postings: list[Posting], codes: list[Code], owned: list[int], applied: list[int], refused: dict[int, Refusal]
) -> dict:
    """Step 3b's refusals (by place among the day columns) as _APPLY_DAYS_REFUSING takes them
    (`skipped`: those places); `codes` takes their codes."""
    refusing = [applied[place - 1] for place in refused]
    for n, refusal in zip(refusing, refused.values(), strict=True):
        codes[n] = refusal.code
    refusals = refused.values()
    days = [postings[n].dateref for n in refusing]
    return {
        "refused": [postings[n].id for n in refusing],
        "refused_from": min(days),
        "refused_to": max(days),
        "refused_code": [r.code.value for r in refusals],
        "available": [r.available for r in refusals],
        "shortfall": [r.shortfall for r in refusals],
        "breakday": [r.breakday for r in refusals],
        "codes": _SEP.join(codes[n].value for n in owned),
        "skipped": list(refused),
    }


async def _settle_repeats(
    conn: AsyncConnection, postings: list[Posting], codes: list[Code], owned: list[int]
) -> list[Outcome]:
    """Outcomes for a batch holding ids seen before (redeliveries, reuses) or twice: the content that
    counts for an id is the one this batch recorded, else the one recorded earlier; a posting whose
    content differs from it gets ID_REUSED, announced every time it comes."""
    prints = [UUID(str(p.fingerprint)) if p.fingerprint else fingerprint(p) for p in postings]  # text when decoded
    decided = {postings[n].id: Outcome(postings[n].id, postings[n].tracekey, codes[n]) for n in owned}
    counted_print = {postings[n].id: prints[n] for n in owned}
    seen_before = {p.id for p in postings} - decided.keys()
    if seen_before:
        for row in await conn.execute(_STORED_OUTCOMES, {"ids": list(seen_before)}):
            decided[row.id] = Outcome(row.id, row.tracekey, Code(row.code))
            counted_print[row.id] = row.fingerprint

    results: list[Outcome] = []
    reused: dict[Outcome, None] = {}
    for posting, content in zip(postings, prints, strict=True):
        if same_content(counted_print[posting.id], posting, content):  # older outcomes: in an older form
            results.append(decided[posting.id])
        else:
            outcome = Outcome(posting.id, posting.tracekey, Code.ID_REUSED)
            reused[outcome] = None
            results.append(outcome)
    # A redelivered posting's outcome was queued with its first delivery: only reuses are queued here.
    if reused:
        await conn.execute(
            _QUEUE_CALLBACKS,
            {
                "ids": [o.id for o in reused],
                "tracekeys": [o.tracekey for o in reused],
                "codes": [o.code.value for o in reused],
            },
        )
    return results
