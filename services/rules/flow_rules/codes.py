"""FLOW's stable message codes: one place, so logs, API errors and callbacks agree.

A code never changes meaning once published; add new ones at the end of their range.
R0xx: what a client sent; R02x: apply-time rules; R03x: idempotency; R04x: reads; R05x: queue;
R06x: reconciliation; R07x: authentication; R08x: the account registry's admin API; R09x: FLOW's own faults.
(sql/0010 checks every stored code is R and three digits.)
"""

from dataclasses import asdict
from enum import StrEnum

from .limits import MAX_BATCH_ITEMS, MAX_EVENTCODE, MAX_PAGE, MAX_TEXT, Configured

__all__ = ["Code"]

_DEFAULTS = asdict(Configured())


class Code(StrEnum):
    """A code, with its text. A text that states a limit a deployment sets names it as a field of
    `limits.Configured` ({max_details_bytes}): `message` states the default, `text(configured)` what a
    service was configured with (its error answers use that)."""

    def __new__(cls, value: str, template: str = "") -> "Code":  # the default: for mypy, which reads
        # this as the signature of a lookup by value, Code("R000")
        member = str.__new__(cls, value)
        member._value_ = value
        member.template = template
        member.message = template.format_map(_DEFAULTS)
        return member

    template: str
    message: str

    def text(self, configured: Configured) -> str:
        return self.template.format_map(asdict(configured)) if "{" in self.template else self.template

    APPLIED = ("R000", "posting applied")
    INVALID_BODY = ("R001", "request body is not a valid posting")
    INVALID_BRANCH = ("R002", "branch must be 1 to 10 letters or digits")
    INVALID_ACCOUNT = ("R003", "account must be 1 to 20 letters or digits")
    INVALID_AMOUNT = (
        "R004",
        'amount must be a JSON string with exactly 2 decimals, such as "150.25": greater than 0, '
        "at most 13 integer digits, no sign, exponent, blanks or leading zeros",
    )
    INVALID_DEBITCREDIT = ("R005", "debitcredit must be 'D' or 'C'")
    INVALID_EVENTCODE = ("R006", f"eventcode must be a JSON integer from 1 to {MAX_EVENTCODE}")
    DATEREF_TOO_OLD = ("R007", "dateref is older than the retroactive window allows")
    DATEREF_IN_FUTURE = ("R008", "dateref is in the future")
    INVALID_TRACEKEY = ("R009", "tracekey must be a UUID in lowercase 8-4-4-4-12 form")
    INVALID_DETAILS = ("R010", "details must be a JSON object of at most {max_details_bytes} bytes")
    INVALID_ID = ("R011", "id must be a UUID in lowercase 8-4-4-4-12 form")
    UNKNOWN_FIELD = ("R012", "the request has a field FLOW does not know")
    INVALID_DATEREF = ("R013", "dateref must be a calendar date as YYYY-MM-DD")
    INVALID_DESCRIPTION = ("R014", f"description must be text of at most {MAX_TEXT} characters")
    BODY_TOO_LARGE = ("R015", "request body exceeds the size limit")
    INVALID_BATCH = ("R016", f"a batch holds 1 to {MAX_BATCH_ITEMS} postings in items")
    INVALID_EVENT = ("R017", f"event needs a description of 1 to {MAX_TEXT} characters; flags are true or false")
    EVENT_EXISTS = ("R018", "an event with that code already exists")
    INVALID_JSON = ("R019", "request body is not valid JSON")
    EVENT_NOT_FOUND = ("R020", "event does not exist")
    EVENT_INACTIVE = ("R021", "event is not active")
    EVENT_DISALLOWS_DEBIT = ("R022", "event does not allow debits")
    EVENT_DISALLOWS_CREDIT = ("R023", "event does not allow credits")
    BALANCE_LIMIT = ("R024", "posting would take the balance beyond the ledger's limit of ±999,999,999,999,999.99")
    ACCOUNT_BLOCKED_DEBITS = ("R025", "account is blocked for debits")
    ACCOUNT_BLOCKED_CREDITS = ("R026", "account is blocked for credits")
    ACCOUNT_CLOSED = ("R027", "account is closed")
    INSUFFICIENT_FUNDS = (
        "R028",
        "debit would take the balance below the account's overdraft limit on a day from its dateref on",
    )
    ACCOUNT_UNKNOWN = ("R029", "account is not registered")
    ID_REUSED = ("R030", "id was already used for a posting with other content")
    TRANSACTION_NOT_FOUND = ("R040", "no posting with that id has been handled yet")
    INVALID_RANGE = ("R041", "from and to must be dates with from <= to, spanning at most {max_range_days} days")
    INVALID_QUERY = ("R042", "invalid query parameter")
    INVALID_CURSOR = ("R043", "cursor is not one this API gave")
    INVALID_LIMIT = ("R044", f"limit must be 1 to {MAX_PAGE}")
    UNPARSEABLE_MESSAGE = ("R050", "queue message is not a valid posting")
    BALANCE_MISMATCH = ("R060", "balance row differs from its transactions")
    TOKEN_MISSING = ("R070", "bearer token missing")
    TOKEN_INVALID = ("R071", "bearer token is invalid")
    TOKEN_EXPIRED = ("R072", "bearer token is expired or not yet valid")
    TOKEN_WRONG_ISSUER = ("R073", "bearer token comes from an issuer FLOW does not trust")
    TOKEN_WRONG_AUDIENCE = ("R074", "bearer token is not meant for FLOW")
    TOKEN_LACKS_SCOPE = ("R075", "bearer token lacks the required scope")
    NOT_ENTITLED = ("R076", "client is not entitled to this branch")
    OVER_CLIENT_LIMIT = ("R077", "amount exceeds the client's limit per posting")
    INVALID_ACCOUNT_CHANGE = (
        "R080",
        "account change must be JSON with limit a string with 2 decimals (or null "
        f"for none), holder and reason strings of at most {MAX_TEXT} characters, flags "
        "true or false",
    )
    ACCOUNT_EXISTS = ("R081", "the account is already registered")
    ACCOUNT_NOT_FOUND = ("R082", "no such account")
    ACCOUNT_NOT_AT_ZERO = ("R083", "an account is closed only at a zero balance")
    ACCOUNT_IS_CLOSED = ("R084", "the account is closed: it is never changed nor reopened")
    UNAVAILABLE = ("R090", "service temporarily unavailable, retry later")
    POSTING_HELD = (
        "R091",
        "the database refused this posting for a reason that is not a ledger rule; it is held and tried again",
    )
    INTERNAL_ERROR = ("R099", "internal error; the technical team has the details")
