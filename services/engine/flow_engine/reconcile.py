"""Reconciliation, the design's periodic balance check: recomputes every daily row (day totals and
accumulated totals) from flow.transaction, and from the archived months' per account/day sums
(flow.archived_day, kept when the archive job drops a month), and reports each row that differs. It
changes nothing.

    python -m flow_engine.reconcile --database-url URL [--branch B] [--account-from A] [--account-to A]
                                    [--from YYYY-MM-DD] [--to YYYY-MM-DD]

Exit status: 0 when every row matches, 1 when any differs, 2 on bad arguments.
"""

import argparse
import asyncio
import json
import os
import sys
from dataclasses import asdict, dataclass
from datetime import date
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from flow_kit import tls
from flow_kit.db import create_engine
from flow_rules.codes import Code

__all__ = ["Mismatch", "find_mismatches"]

# Accumulated totals need the whole history before `from`, so the expectation runs from the
# beginning and only the reported rows are limited to the date range.
_MISMATCHES = text(
    """WITH scope AS (
           SELECT * FROM flow.transaction
           WHERE (CAST(:branch AS text) IS NULL OR branch = :branch)
             AND (CAST(:account_from AS text) IS NULL OR account >= :account_from)
             AND (CAST(:account_to AS text) IS NULL OR account <= :account_to)
             AND dateref <= :to),
       day AS (
           SELECT branch, account, dateref,
                  coalesce(sum(amount) FILTER (WHERE debitcredit = 'D'), 0) AS totaldebit,
                  coalesce(sum(amount) FILTER (WHERE debitcredit = 'C'), 0) AS totalcredit
           FROM scope GROUP BY branch, account, dateref
           UNION ALL  -- archived months' days (sql/0009): their postings are in the data lake, their sums here
           SELECT branch, account, dateref, totaldebit, totalcredit FROM flow.archived_day
           WHERE (CAST(:branch AS text) IS NULL OR branch = :branch)
             AND (CAST(:account_from AS text) IS NULL OR account >= :account_from)
             AND (CAST(:account_to AS text) IS NULL OR account <= :account_to)
             AND dateref <= :to),
       expected AS (
           SELECT branch, account, dateref, totaldebit, totalcredit,
                  sum(totaldebit) OVER w AS accumulateddebit, sum(totalcredit) OVER w AS accumulatedcredit
           FROM day
           WINDOW w AS (PARTITION BY branch, account ORDER BY dateref)),
       stored AS (
           SELECT * FROM flow.balance
           WHERE (CAST(:branch AS text) IS NULL OR branch = :branch)
             AND (CAST(:account_from AS text) IS NULL OR account >= :account_from)
             AND (CAST(:account_to AS text) IS NULL OR account <= :account_to)
             AND dateref BETWEEN :from_ AND :to)
       SELECT coalesce(e.branch, s.branch) AS branch, coalesce(e.account, s.account) AS account,
              coalesce(e.dateref, s.dateref) AS dateref,
              e.totaldebit AS expected_totaldebit, s.totaldebit AS stored_totaldebit,
              e.totalcredit AS expected_totalcredit, s.totalcredit AS stored_totalcredit,
              e.accumulateddebit AS expected_accumulateddebit, s.accumulateddebit AS stored_accumulateddebit,
              e.accumulatedcredit AS expected_accumulatedcredit, s.accumulatedcredit AS stored_accumulatedcredit
       FROM (SELECT * FROM expected WHERE dateref >= :from_) e
       FULL JOIN stored s ON s.branch = e.branch AND s.account = e.account AND s.dateref = e.dateref
       WHERE (e.totaldebit, e.totalcredit, e.accumulateddebit, e.accumulatedcredit)
             IS DISTINCT FROM (s.totaldebit, s.totalcredit, s.accumulateddebit, s.accumulatedcredit)
       ORDER BY 1, 2, 3"""
)


@dataclass(frozen=True)
class Mismatch:
    branch: str
    account: str
    dateref: date
    expected_totaldebit: Decimal | None
    stored_totaldebit: Decimal | None
    expected_totalcredit: Decimal | None
    stored_totalcredit: Decimal | None
    expected_accumulateddebit: Decimal | None
    stored_accumulateddebit: Decimal | None
    expected_accumulatedcredit: Decimal | None
    stored_accumulatedcredit: Decimal | None


async def find_mismatches(
    conn: AsyncConnection,
    *,
    branch: str | None = None,
    account_from: str | None = None,
    account_to: str | None = None,
    from_: date = date.min,
    to: date = date.max,
) -> list[Mismatch]:
    rows = await conn.execute(
        _MISMATCHES,
        {"branch": branch, "account_from": account_from, "account_to": account_to, "from_": from_, "to": to},
    )
    return [Mismatch(**row) for row in rows.mappings()]


async def _run(args: argparse.Namespace) -> int:
    engine = create_engine(args.database_url, 1, "flow-reconcile", args.ssl)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
            mismatches = await find_mismatches(
                conn,
                branch=args.branch,
                account_from=args.account_from,
                account_to=args.account_to,
                from_=args.from_,
                to=args.to,
            )
    finally:
        await engine.dispose()
    for mismatch in mismatches:
        print(
            json.dumps(
                {"code": Code.BALANCE_MISMATCH.value, "message": Code.BALANCE_MISMATCH.message, **asdict(mismatch)},
                default=str,
            )
        )
    print(f"reconcile: {len(mismatches)} mismatching row(s)", file=sys.stderr)
    return 1 if mismatches else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flow-reconcile", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("FLOW_DATABASE_URL"),
        help="better in the environment as FLOW_DATABASE_URL: a command line is visible to every process",
    )
    parser.add_argument("--branch")
    parser.add_argument("--account-from")
    parser.add_argument("--account-to")
    parser.add_argument("--from", dest="from_", type=date.fromisoformat, default=date.min)
    parser.add_argument("--to", type=date.fromisoformat, default=date.max)
    tls.add_arguments(parser)
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("set FLOW_DATABASE_URL (or pass --database-url)")
    try:
        args.ssl = tls.database_ssl(args.database_sslmode, args.database_sslrootcert)
    except (ValueError, OSError) as exc:
        parser.error(str(exc))
    return asyncio.run(_run(args))


if __name__ == "__main__":
    sys.exit(main())
