"""Answers written as JSON bytes by the service itself, exactly as FastAPI would write the response
models (pydantic's compact JSON: money as decimal strings, dates ISO, timestamps UTC with `Z`).

An endpoint that returns a Response is passed through by FastAPI, which otherwise validates the
returned model again against `response_model` and then serialises it: for a page of 100 lines that
cost more than the database. The routes keep their `response_model`, for the OpenAPI document.
"""

import json
from datetime import date

from fastapi import Response
from pydantic import BaseModel

__all__ = ["JSON", "dumps", "model_answer", "statement_answer"]

JSON = "application/json"


def dumps(value) -> str:
    """Compact JSON, non-ASCII as is: as pydantic writes it."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def model_answer(model: BaseModel) -> Response:
    return Response(model.model_dump_json(by_alias=True), media_type=JSON)


def _object(*fields: tuple[str, str]) -> str:
    """A JSON object from (name, value already written as JSON) pairs, in that order."""
    return "{" + ",".join(f"{dumps(name)}:{value}" for name, value in fields) + "}"


def statement_answer(branch: str, account: str, from_: date, to: date, opening_balance: str, closing_balance: str,
                     items: str, next_cursor: str | None, archived: bool = False) -> Response:
    """A `Statement`; `items` is the lines' JSON array as the database wrote it (queries.STATEMENT_PAGE),
    the balances are decimal strings."""
    body = _object(("branch", dumps(branch)), ("account", dumps(account)), ("from", dumps(from_.isoformat())),
                   ("to", dumps(to.isoformat())), ("opening_balance", dumps(opening_balance)),
                   ("closing_balance", dumps(closing_balance)), ("items", items), ("next_cursor", dumps(next_cursor)),
                   ("archived", dumps(archived)))
    return Response(body.encode(), media_type=JSON)
