"""An independent model of the ledger, computed the simple way, to check FLOW against."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
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

    def balance_at(self, branch: str, account: str, day: date) -> Decimal:
        """The account's balance at the end of `day`."""
        return sum((p.amount if p.debitcredit == "C" else -p.amount for p in self.postings.values()
                    if (p.branch, p.account) == (branch, account) and p.dateref <= day), Decimal("0.00"))

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


@dataclass
class Registered:
    """A registry row as the reference sees it."""
    status: str = "active"
    blockdebit: bool = False
    blockcredit: bool = False
    limit: Decimal | None = None


class ReferenceAccounts:
    """The account rules, the simple way: postings decided one at a time in the order the engine
    serialises them (batch order within a batch, batches in commit order), each debit checked against
    the balance at the end of every calendar day from its dateref through `today`, recomputed from
    every posting applied so far."""

    def __init__(self, today: date, reject_unknown: bool = False) -> None:
        self.ledger = ReferenceLedger()
        self.registry: dict[tuple[str, str], Registered] = {}
        self.decided: dict[str, tuple[str, dict | None]] = {}
        self.today = today
        self.reject_unknown = reject_unknown

    def balance_at(self, branch: str, account: str, day: date) -> Decimal:
        return self.ledger.balance_at(branch, account, day)

    def decide(self, posting: Posted, forced: bool = False) -> tuple[str, dict | None]:
        """The code (and for R028 the figures) of a posting; the first decision of an id stands."""
        if posting.id in self.decided:
            return self.decided[posting.id]
        decision = self._decide(posting, forced)
        if decision[0] == "R000":
            self.ledger.apply(posting)
        self.decided[posting.id] = decision
        return decision

    def _decide(self, p: Posted, forced: bool) -> tuple[str, dict | None]:
        row = self.registry.get((p.branch, p.account))
        if row is None:
            return ("R029", None) if self.reject_unknown else ("R000", None)
        if row.status == "closed":
            return "R027", None
        if row.status == "blocked" and p.debitcredit == "D" and row.blockdebit:
            return "R025", None
        if row.status == "blocked" and p.debitcredit == "C" and row.blockcredit:
            return "R026", None
        if p.debitcredit == "C" or forced or row.limit is None:
            return "R000", None
        days = [p.dateref + timedelta(days=n) for n in range((self.today - p.dateref).days + 1)]
        balances = [self.balance_at(p.branch, p.account, d) for d in days]
        if all(b - p.amount >= -row.limit for b in balances):
            return "R000", None
        available = min(balances) + row.limit
        breakday = next(d for d, b in zip(days, balances) if b - p.amount < -row.limit)
        return "R028", {"available": available, "shortfall": p.amount - available, "breakday": breakday}
