"""A statement page's answer, assembled from JSON already written: its lines as the database wrote them
(queries.STATEMENT_PAGE), or as the archive writes them in the same form (archive.line_json, with
`dumps`). Everything is written by flow_kit.answers, the APIs' one JSON writer."""

from datetime import date
from typing import Any

from flow_kit.answers import JSONAnswer, answer, json_bytes, json_object

__all__ = ["dumps", "statement_answer"]


def dumps(value: Any) -> str:
    """`value` as JSON text."""
    return json_bytes(value).decode()


def statement_answer(
    branch: str,
    account: str,
    from_: date,
    to: date,
    opening_balance: str,
    closing_balance: str,
    items: str,
    next_cursor: str | None,
    archived: bool = False,
) -> JSONAnswer:
    """A `Statement`; `items` is the lines' JSON array, the balances are decimal strings."""
    return answer(
        json_object(
            (
                ("branch", json_bytes(branch)),
                ("account", json_bytes(account)),
                ("from", json_bytes(from_)),
                ("to", json_bytes(to)),
                ("opening_balance", json_bytes(opening_balance)),
                ("closing_balance", json_bytes(closing_balance)),
                ("items", items.encode()),
                ("next_cursor", json_bytes(next_cursor)),
                ("archived", json_bytes(archived)),
            )
        )
    )
