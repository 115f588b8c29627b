"""The query service's SQL: read-only, each statement backed by an index, none growing with history."""

from sqlalchemy import text

__all__ = ["BALANCE_AT", "BALANCE_DAYS", "EVENT", "EVENTS", "OUTCOMES_BY_TRACEKEY", "OUTCOME_BY_ID", "STATEMENT_PAGE",
           "TRANSACTION_BY_ID"]

_TRANSACTION = """t.id, t.branch, t.account, t.amount, t.debitcredit, t.eventcode, t.description, t.tracekey,
                  t.details, t.dateref, t.acceptedat, t.createdat"""

TRANSACTION_BY_ID = text(
    f"""SELECT {_TRANSACTION}
        FROM flow.outcome o
        JOIN flow.transaction t ON t.id = o.id AND t.dateref = o.dateref  -- the dateref finds the partition
        WHERE o.id = :id"""
)

OUTCOME_BY_ID = text("SELECT id, tracekey, code, createdat FROM flow.outcome WHERE id = :id")

# Every posting carrying a tracekey, applied (with its content) or rejected.
OUTCOMES_BY_TRACEKEY = text(
    f"""SELECT o.id AS outcome_id, o.tracekey AS outcome_tracekey, o.code, o.createdat AS outcome_createdat,
               {_TRANSACTION}
        FROM flow.outcome o
        LEFT JOIN flow.transaction t ON t.id = o.id AND t.dateref = o.dateref
        WHERE o.tracekey = :tracekey
        ORDER BY o.createdat, o.id
        LIMIT :limit"""
)

# One page of a statement, keyset-paginated on (dateref, createdat, id). Each line carries the
# balance after it: the balance at the end of the day before (from flow.balance) plus that day's
# lines up to and including it, so a page costs the same wherever it falls in the history.
STATEMENT_PAGE = text(
    """WITH page AS (
           SELECT t.id, t.dateref, t.amount, t.debitcredit, t.eventcode, t.description, t.tracekey, t.createdat
           FROM flow.transaction t
           WHERE t.branch = :branch AND t.account = :account AND t.dateref BETWEEN :from_ AND :to
             AND (t.dateref, t.createdat, t.id) > (:after_dateref, :after_createdat, :after_id)
           ORDER BY t.dateref, t.createdat, t.id
           LIMIT :limit),
       within_day AS (
           SELECT t.id, sum(CASE WHEN t.debitcredit = 'C' THEN t.amount ELSE -t.amount END)
                        OVER (PARTITION BY t.dateref ORDER BY t.createdat, t.id) AS movement
           FROM flow.transaction t
           WHERE t.branch = :branch AND t.account = :account
             AND t.dateref >= (SELECT min(dateref) FROM page)  -- an index bound: the page's days only
             AND t.dateref IN (SELECT DISTINCT dateref FROM page)
             AND (t.dateref, t.createdat, t.id) <= (SELECT dateref, createdat, id FROM page
                                                    ORDER BY dateref DESC, createdat DESC, id DESC LIMIT 1))
       SELECT p.*, coalesce(before.balance, 0) + w.movement AS balance
       FROM page p
       JOIN within_day w ON w.id = p.id
       LEFT JOIN LATERAL (
           SELECT b.accumulatedcredit - b.accumulateddebit AS balance
           FROM flow.balance b
           WHERE b.branch = :branch AND b.account = :account AND b.dateref < p.dateref
           ORDER BY b.dateref DESC
           LIMIT 1) before ON true
       ORDER BY p.dateref, p.createdat, p.id"""
)

# The latest day row on or before a date: the balance at the end of that date.
BALANCE_AT = text(
    """SELECT dateref, accumulateddebit, accumulatedcredit, accumulatedcredit - accumulateddebit AS balance
       FROM flow.balance
       WHERE branch = :branch AND account = :account AND dateref <= :at
       ORDER BY dateref DESC
       LIMIT 1"""
)

BALANCE_DAYS = text(
    """SELECT dateref, totaldebit, totalcredit, accumulateddebit, accumulatedcredit,
              accumulatedcredit - accumulateddebit AS balance, updatedat
       FROM flow.balance
       WHERE branch = :branch AND account = :account AND dateref BETWEEN :from_ AND :to
       ORDER BY dateref"""
)

_EVENT = "SELECT code, description, active, allowdebit, allowcredit, createdat, updatedat FROM flow.event"
EVENTS = text(f"{_EVENT} ORDER BY code")
EVENT = text(f"{_EVENT} WHERE code = :code")
