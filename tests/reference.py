"""An independent model of the ledger, computed the simple way, to check FLOW against."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from decimal import Decimal


@dataclass(frozen=True)
class Posted:
    id: str
    branch: str
    account: str
    amount: Decimal
    debitcredit: str
    dateref: date


class ReferenceLedger:
    def __init__(self) -> None:
        self.postings: dict[str, Posted] = {}

    def apply(self, posting: Posted) -> None:
        self.postings.setdefault(posting.id, posting)

    def accounts(self) -> set[tuple[str, str]]:
        return {(p.branch, p.account) for p in self.postings.values()}

    def statement_ids(self, branch: str, account: str) -> list[str]:
        return sorted(p.id for p in self.postings.values() if (p.branch, p.account) == (branch, account))

    def daily(self, branch: str, account: str) -> list[dict]:
        """One row per day with postings: day totals, running totals and balance, oldest first."""
        days: dict[date, list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
        for p in self.postings.values():
            if (p.branch, p.account) == (branch, account):
                days[p.dateref][0 if p.debitcredit == "D" else 1] += p.amount
        rows, debit, credit = [], Decimal(0), Decimal(0)
        for day in sorted(days):
            debit += days[day][0]
            credit += days[day][1]
            rows.append({"dateref": day.isoformat(), "totaldebit": days[day][0], "totalcredit": days[day][1],
                         "accumulateddebit": debit, "accumulatedcredit": credit, "balance": credit - debit})
        return rows
