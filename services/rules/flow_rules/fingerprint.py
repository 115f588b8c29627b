"""A posting's fingerprint: its content hashed to 128 bits, which tells a redelivery (or a client's
retry) from an id reused for another posting. tracekey, acceptedat and the caller are left out: a
client retrying the same posting may draw new ones, from another of its tokens.

Ingest computes it once and the message carries it (`PostingMessage.fingerprint`); ingest's request
ledger (flow.request) and the engine's outcomes (flow.outcome) store it. Stored values come in two
forms, both still recognised by `same_content`:
- the current one, an MD5 of the fields joined by the unit separator: the form the engine computed in
  SQL before the message carried it, so every outcome stored since is recognised as it is;
- the first one, a BLAKE2b of a slightly different joining, which flow.request rows and the oldest
  outcomes hold.
"""

import hashlib
import json
from datetime import date
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID

__all__ = ["canonical_details", "first_form", "fingerprint", "same_content"]

_CENTS = Decimal("0.01")
# Compact, sorted keys, ASCII: one text per details object, whatever order its keys came in.
canonical_details = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode


class Content(Protocol):
    """What the fingerprint hashes (read-only: the models' fields are narrower types)."""

    @property
    def branch(self) -> str: ...
    @property
    def account(self) -> str: ...
    @property
    def amount(self) -> Decimal: ...
    @property
    def debitcredit(self) -> str: ...
    @property
    def eventcode(self) -> int: ...
    @property
    def description(self) -> str | None: ...
    @property
    def details(self) -> dict[str, Any] | None: ...
    @property
    def dateref(self) -> date: ...


def fingerprint(posting: Content) -> UUID:
    """The posting's fingerprint, in the current form. An absent description or details is the record
    separator (\\x1e), a present one follows "=", so no two contents join alike."""
    description = "\x1e" if posting.description is None else "=" + posting.description
    details = "\x1e" if posting.details is None else "=" + canonical_details(posting.details)
    return UUID(hex=hashlib.md5(_joined(posting, description, details), usedforsecurity=False).hexdigest())


def first_form(posting: Content) -> UUID:
    """The fingerprint in its first form, which the oldest stored values hold."""
    description = "\x00" if posting.description is None else posting.description
    details = "" if posting.details is None else canonical_details(posting.details)
    return UUID(bytes=hashlib.blake2b(_joined(posting, description, details), digest_size=16).digest())


def _joined(posting: Content, description: str, details: str) -> bytes:
    """The content as both forms hash it: its fields joined by the unit separator (\\x1f)."""
    fields = (
        posting.branch,
        posting.account,
        str(posting.amount.quantize(_CENTS)),
        posting.debitcredit,
        str(posting.eventcode),
        description,
        details,
        posting.dateref.isoformat(),
    )
    return "\x1f".join(fields).encode()


def same_content(stored: UUID, posting: Content, current: UUID | None = None) -> bool:
    """Whether `stored` (a fingerprint recorded earlier, in either form) is `posting`'s content.
    `current`: the posting's fingerprint, when already at hand."""
    return stored == (current or fingerprint(posting)) or stored == first_form(posting)
