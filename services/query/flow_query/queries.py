"""The query service's SQL: read-only, each statement backed by an index, none growing with history.

asyncpg statements ($1, $2, ... parameters), run by `reads.Reader`. The statement page answers its
lines as JSON text built by PostgreSQL, formatted as the API's models write them (money as decimal
strings, timestamps as UTC with a `Z`), so the service passes them on without decoding 100 rows.
"""

__all__ = [
    "BALANCE_AT",
    "BALANCE_DAYS",
    "EVENT",
    "EVENTS",
    "OUTCOMES_BY_TRACEKEY",
    "OUTCOME_BY_ID",
    "STATEMENT_PAGE",
    "TRANSACTION_BY_ID",
    "utc_text",
]


def utc_text(column: str) -> str:
    """A timestamptz as the API writes it (pydantic's format): `2026-11-24T10:00:00.123456Z`, the
    fraction left out when it is zero."""
    utc = f"({column} AT TIME ZONE 'UTC')"
    return (
        f"""to_char({utc}, 'YYYY-MM-DD"T"HH24:MI:SS') """
        f"""|| CASE WHEN date_trunc('second', {column}) = {column} THEN '' ELSE to_char({utc}, '.US') END || 'Z'"""
    )


_TRANSACTION = """t.id, t.branch, t.account, t.amount, t.debitcredit, t.eventcode, t.description, t.tracekey,
                  t.details, t.dateref, t.acceptedat, t.createdat"""

TRANSACTION_BY_ID = f"""
    SELECT {_TRANSACTION}, o.callersub, o.callerclient
    FROM flow.outcome o
    JOIN flow.transaction t ON t.id = o.id AND t.dateref = o.dateref  -- the dateref finds the partition
    WHERE o.id = $1"""

OUTCOME_BY_ID = (
    "SELECT id, tracekey, code, createdat, callersub, callerclient, dateref, available, shortfall, "
    "breakday FROM flow.outcome WHERE id = $1"
)

# Every posting carrying a tracekey, applied (with its content) or rejected (with a funds refusal's figures).
OUTCOMES_BY_TRACEKEY = f"""
    SELECT o.id AS outcome_id, o.tracekey AS outcome_tracekey, o.code, o.createdat AS outcome_createdat,
           o.callersub, o.callerclient, o.dateref AS outcome_dateref, o.available AS outcome_available,
           o.shortfall AS outcome_shortfall, o.breakday AS outcome_breakday, {_TRANSACTION}
    FROM flow.outcome o
    LEFT JOIN flow.transaction t ON t.id = o.id AND t.dateref = o.dateref
    WHERE o.tracekey = $1
    ORDER BY o.createdat, o.id
    LIMIT $2"""

# The balance of the account's latest day row whose dateref meets `bound` (null: no such row).
_BALANCE = """(SELECT b.accumulatedcredit - b.accumulateddebit FROM flow.balance b
               WHERE b.branch = $1 AND b.account = $2 AND b.dateref {bound}
               ORDER BY b.dateref DESC LIMIT 1)"""

# One page of a statement in one statement: $1 branch, $2 account, $3..$4 the dates, $5 the page size,
# $6..$8 the key of the last line of the page before (keyset pagination on (dateref, createdat, id)).
# Answers one row: `items`, the page's lines as a JSON array; `more`, whether a line follows the page;
# the key of the page's last line (for the cursor); the opening (end of the day before $3) and closing
# (end of $4) balances as text.
# Each line carries the balance after it: the balance at the end of the day before the page's first
# day (one flow.balance row) plus the running sum of the account's lines from the start of that day,
# so a page costs the same wherever it falls in history. Lines are contiguous in key order, so every
# line between the start of the first day and the page's last line is either on the page or earlier
# on its first day.
STATEMENT_PAGE = f"""
    WITH page AS (  -- the keys of the page's lines, and of one more: tells whether there is a next page
        SELECT t.dateref, t.createdat, t.id, row_number() OVER (ORDER BY t.dateref, t.createdat, t.id) AS n
        FROM (SELECT dateref, createdat, id
              FROM flow.transaction
              WHERE branch = $1 AND account = $2 AND dateref BETWEEN $3::date AND $4::date
                AND (dateref, createdat, id) > ($6::date, $7::timestamptz, $8::uuid)
              ORDER BY dateref, createdat, id
              LIMIT $5::int + 1) t),
    first AS (SELECT dateref, createdat, id FROM page WHERE n = 1),
    last AS (SELECT dateref, createdat, id FROM page WHERE n <= $5 ORDER BY n DESC LIMIT 1),
    running AS (
        SELECT t.id, t.dateref, t.amount, t.debitcredit, t.eventcode, t.description, t.tracekey, t.createdat,
               coalesce({_BALANCE.format(bound="< (SELECT dateref FROM first)")}, 0)
               + sum(CASE WHEN t.debitcredit = 'C' THEN t.amount ELSE -t.amount END)
                 OVER (ORDER BY t.dateref, t.createdat, t.id) AS balance
        FROM flow.transaction t
        WHERE t.branch = $1 AND t.account = $2 AND t.dateref >= (SELECT dateref FROM first)
          AND (t.dateref, t.createdat, t.id) <= (SELECT dateref, createdat, id FROM last)),
    lines AS (
        SELECT r.dateref, r.createdat, r.id,
               (SELECT row_to_json(line) FROM (  -- the fields of a StatementLine, in its order
                    SELECT r.id, r.dateref, r.amount::text AS amount, r.debitcredit, r.eventcode, r.description,
                           r.tracekey, {utc_text("r.createdat")} AS createdat, r.balance::text AS balance) line) AS json
        FROM running r
        WHERE (r.dateref, r.createdat, r.id) >= (SELECT dateref, createdat, id FROM first))
    SELECT (SELECT '[' || coalesce(string_agg(json::text, ',' ORDER BY dateref, createdat, id), '') || ']'
            FROM lines) AS items,
           (SELECT count(*) FROM page) > $5 AS more,
           last.dateref AS last_dateref, last.createdat AS last_createdat, last.id AS last_id,
           coalesce({_BALANCE.format(bound="< $3::date")}, 0.00)::text AS opening_balance,
           coalesce({_BALANCE.format(bound="<= $4::date")}, 0.00)::text AS closing_balance
    FROM (SELECT) one
    LEFT JOIN last ON true"""

# The latest day row on or before a date: the balance at the end of that date.
BALANCE_AT = """
    SELECT dateref, accumulateddebit, accumulatedcredit, accumulatedcredit - accumulateddebit AS balance
    FROM flow.balance
    WHERE branch = $1 AND account = $2 AND dateref <= $3
    ORDER BY dateref DESC
    LIMIT 1"""

BALANCE_DAYS = """
    SELECT dateref, totaldebit, totalcredit, accumulateddebit, accumulatedcredit,
           accumulatedcredit - accumulateddebit AS balance, updatedat
    FROM flow.balance
    WHERE branch = $1 AND account = $2 AND dateref BETWEEN $3 AND $4
    ORDER BY dateref"""

_EVENT = "SELECT code, description, active, allowdebit, allowcredit, forced, createdat, updatedat FROM flow.event"
EVENTS = f"{_EVENT} ORDER BY code"
EVENT = f"{_EVENT} WHERE code = $1"
