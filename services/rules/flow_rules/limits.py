"""The shapes and limits of FLOW's values, once: ingest's models (pydantic), the engine's decoder
(msgspec), the query API's path parameters, the entitlements and the message codes' texts all read
them from here.

Patterns are written with `^...$` for the APIs' JSON Schema; `anchored` gives the form Python's `re`
needs (`$` there would let a trailing newline through).
"""

from dataclasses import dataclass

__all__ = [
    "ACCOUNT_PATTERN",
    "AMOUNT_PATTERN",
    "BRANCH_PATTERN",
    "DATE_PATTERN",
    "MAX_AMOUNT_DIGITS",
    "MAX_BATCH_ITEMS",
    "MAX_CHOSEN_EVENTCODE",
    "MAX_DETAILS_DEPTH",
    "MAX_EVENTCODE",
    "MAX_PAGE",
    "MAX_TEXT",
    "TEXT_PATTERN",
    "UUID_PATTERN",
    "Configured",
    "anchored",
]

BRANCH_PATTERN = r"^[A-Za-z0-9]{1,10}$"
ACCOUNT_PATTERN = r"^[A-Za-z0-9]{1,20}$"
TEXT_PATTERN = r"^[^\x00]*$"  # free text PostgreSQL can store: no NUL characters
MAX_TEXT = 200  # a description, a reason, a holder reference
# Money: numeric(15,2), written with exactly 2 decimals, above 0 (checked apart).
MAX_AMOUNT_DIGITS = 13  # before the decimal point
AMOUNT_PATTERN = rf"^(0|[1-9][0-9]{{0,{MAX_AMOUNT_DIGITS - 1}}})\.[0-9]{{2}}$"
UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
MAX_EVENTCODE = 2_147_483_647  # PostgreSQL's int
MAX_CHOSEN_EVENTCODE = 999_999  # codes chosen by hand stay below, so the catalogue's sequence never runs out
MAX_DETAILS_DEPTH = 32  # how deep a posting's details may nest objects and arrays
MAX_BATCH_ITEMS = 1000  # postings in one POST /v1/transactions/batch
MAX_PAGE = 1000  # items in one page of a read


def anchored(pattern: str) -> str:
    """`^...$` as Python's re needs it, `\\A...\\Z`."""
    return r"\A" + pattern.removeprefix("^").removesuffix("$") + r"\Z"


@dataclass(frozen=True)
class Configured:
    """The limits a deployment sets (each service's settings), as the message codes' texts state them.
    The defaults are the settings' defaults."""

    max_details_bytes: int = 4096  # ingest: a posting's details, as compact JSON
    max_range_days: int = 366  # query: the longest statement or balance range
