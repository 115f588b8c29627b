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
        """The refusal of this posting, or None: then it is applied, and this state moves with it."""
        refusal = self._refusal(debitcredit, amount, dateref, forced)
        if refusal is None:
            self._move(dateref, amount if debitcredit == "C" else -amount)
        return refusal

    def _refusal(self, debitcredit: str, amount: Decimal, dateref: date, forced: bool) -> Refusal | None:
        if not self.registered:
            return Refusal(Code.ACCOUNT_UNKNOWN)
        if self.status == CLOSED:
            return Refusal(Code.ACCOUNT_CLOSED)
        if self.status == BLOCKED and (self.blockdebit if debitcredit == "D" else self.blockcredit):
            return Refusal(Code.ACCOUNT_BLOCKED_DEBITS if debitcredit == "D" else Code.ACCOUNT_BLOCKED_CREDITS)
        if debitcredit == "C" or forced or self.limit is None:
            return None
        # The end-of-day balances this debit would move: its dateref's and every later day's.
        moved = [(dateref, self._balance_at(dateref))] + [(d, b) for d, b in zip(self.days, self.balances) if d > dateref]
        lowest = min(b for _, b in moved)
        if lowest - amount >= -self.limit:
            return None
        available = lowest + self.limit
        breakday = next(d for d, b in moved if b - amount < -self.limit)
        return Refusal(Code.INSUFFICIENT_FUNDS, available, amount - available, breakday)

    def _balance_at(self, day: date) -> Decimal:
        balance = self.opening
        for d, b in zip(self.days, self.balances):
            if d > day:
                break
            balance = b
        return balance

    def _move(self, dateref: date, signed: Decimal) -> None:
        if dateref not in self.days:
            at = sum(d < dateref for d in self.days)
            self.balances.insert(at, self._balance_at(dateref))
            self.days.insert(at, dateref)
        self.balances = [b + signed if d >= dateref else b for d, b in zip(self.days, self.balances)]
