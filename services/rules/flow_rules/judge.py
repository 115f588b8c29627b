"""How a posting is judged against the event catalogue and the retroactive window: once by ingest when
it is posted, and again by the engine when it is applied (the catalogue may have changed in between,
and the window is counted from when ingest accepted it, so a posting waiting in the queue keeps its
place). The account registry's rules come after, under the account's lock (account_rules.py)."""

from datetime import date, datetime, timedelta
from typing import NamedTuple, Protocol

from .codes import Code

__all__ = ["EventFlags", "EventRules", "judge"]


class EventRules(Protocol):
    @property
    def active(self) -> bool: ...
    @property
    def allowdebit(self) -> bool: ...
    @property
    def allowcredit(self) -> bool: ...
    @property
    def forced(self) -> bool: ...


class EventFlags(NamedTuple):
    """An event's rules, as the engine reads them from the catalogue."""

    active: bool
    allowdebit: bool
    allowcredit: bool
    forced: bool  # its debits are applied whatever the account's overdraft limit (account_rules.py)


def judge(
    event: EventRules | None, debitcredit: str, dateref: date, acceptedat: datetime, window_days: int
) -> Code | None:
    """The code refusing the posting, or None. `event`: its eventcode's, None when there is none."""
    if event is None:
        return Code.EVENT_NOT_FOUND
    if not event.active:
        return Code.EVENT_INACTIVE
    if debitcredit == "D" and not event.allowdebit:
        return Code.EVENT_DISALLOWS_DEBIT
    if debitcredit == "C" and not event.allowcredit:
        return Code.EVENT_DISALLOWS_CREDIT
    accepted_day = acceptedat.date()  # UTC days
    if dateref > accepted_day:
        return Code.DATEREF_IN_FUTURE
    if dateref < accepted_day - timedelta(days=window_days):
        return Code.DATEREF_TOO_OLD
    return None
