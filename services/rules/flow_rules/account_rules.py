"""The account registry's rules for postings, judged by the engine under the accounts' locks, in
batch order (see apply.py for where this sits in a batch's work).

- an unregistered account, when unknown accounts are refused, refuses everything (R029);
- a closed account refuses everything (R027), a blocked one what it is blocked for (R025, R026),
  forced debits included;
- a debit is refused (R028) when, after it, the balance at the end of any day from its dateref on
  would fall below -limit: a retroactive debit moves every later day, so every later day must hold.
  Forced debits (their event's `forced`) are applied whatever the limit; credits are never refused
  for funds; a limit judges new debits only, so lowering it changes nothing already applied.
"""

from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from flow_rules.accounts import BLOCKED, CLOSED
from flow_rules.codes import Code

__all__ = ["AccountState", "Refusal"]

_ZERO = Decimal("0.00")


@dataclass(frozen=True)
class Refusal:
    code: Code
    available: Decimal | None = None  # R028: the most that could have been debited on the dateref
    shortfall: Decimal | None = None  # R028: amount - available
    breakday: date | None = None  # R028: the first day whose end-of-day balance would fall below -limit


@dataclass
class AccountState:
    """One account as the batch found it under its lock: its registry row (None: unregistered) and its
    end-of-day balances from the earliest day the batch touches on (`opening`: the balance before)."""

    registered: bool
    status: str | None = None
    blockdebit: bool = False
    blockcredit: bool = False
    limit: Decimal | None = None
    opening: Decimal = _ZERO
    days: list[date] = field(default_factory=list)  # ascending, the days with a balance row
    balances: list[Decimal] = field(default_factory=list)  # each day's end-of-day balance

    def judge(self, debitcredit: str, amount: Decimal, dateref: date, forced: bool) -> Refusal | None:
        """The refusal of this posting, or None: then it is applied, and this state moves with it (its
        balances matter only to a limit: without one, they are left as they are)."""
        if not self.registered:
            return Refusal(Code.ACCOUNT_UNKNOWN)
        if self.status == CLOSED:
            return Refusal(Code.ACCOUNT_CLOSED)
        if self.status == BLOCKED and (self.blockdebit if debitcredit == "D" else self.blockcredit):
            return Refusal(Code.ACCOUNT_BLOCKED_DEBITS if debitcredit == "D" else Code.ACCOUNT_BLOCKED_CREDITS)
        limit = self.limit
        if limit is None:
            return None
        days, balances = self.days, self.balances
        at = bisect_left(days, dateref)  # its dateref's place: the end-of-day balances it moves are from there on
        new_day = at == len(days) or days[at] != dateref  # no row on its dateref yet: it ends as the day before
        before = balances[at - 1] if at else self.opening
        if debitcredit == "D" and not forced:
            lowest = min(balances[at:], default=before)
            if new_day and before < lowest:
                lowest = before
            if lowest - amount < -limit:
                return self._insufficient(amount, limit, dateref, at, new_day, before, lowest)
        if new_day:
            days.insert(at, dateref)
            balances.insert(at, before)
        signed = amount if debitcredit == "C" else -amount
        for n in range(at, len(balances)):
            balances[n] += signed
        return None

    def _insufficient(
        self, amount: Decimal, limit: Decimal, dateref: date, at: int, new_day: bool, before: Decimal, lowest: Decimal
    ) -> Refusal:
        """R028 with its figures: what could have been debited, the shortfall, the first day that breaks."""
        if new_day and before - amount < -limit:
            breakday = dateref
        else:
            breakday = next(d for d, b in zip(self.days[at:], self.balances[at:], strict=True) if b - amount < -limit)
        available = lowest + limit
        return Refusal(Code.INSUFFICIENT_FUNDS, available, amount - available, breakday)
