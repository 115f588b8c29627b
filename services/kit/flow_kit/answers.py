"""The one JSON writer of the APIs' answers, successes and errors alike: pydantic's compact JSON (money
as decimal strings, dates ISO, timestamps with their UTC offset, non-ASCII as is). These are the bytes
FastAPI writes for a response model, and for a dict the bytes of its JSONResponse.

`JSONAnswer` is the apps' default response class, so what an endpoint returns is written here. An
endpoint may also return `answer(model)` itself: FastAPI passes a Response through as it is, where it
would otherwise validate the returned model again against `response_model` before writing it (for a
page of 100 lines that cost more than the database). The routes keep `response_model` for the OpenAPI
document.
"""

from collections.abc import Iterable, Mapping
from typing import Any

import pydantic_core
from fastapi.responses import JSONResponse

__all__ = ["JSONAnswer", "answer", "json_bytes", "json_object"]


def json_bytes(value: Any) -> bytes:
    """`value` (a pydantic model, or dicts, lists, strings, numbers, booleans and None) as JSON."""
    return pydantic_core.to_json(value, by_alias=True)


def json_object(fields: Iterable[tuple[str, bytes]]) -> bytes:
    """A JSON object from (name, value already written as JSON) pairs, in that order."""
    return b"{" + b",".join(json_bytes(name) + b":" + value for name, value in fields) + b"}"


class JSONAnswer(JSONResponse):
    """An answer written by `json_bytes`. Content that is bytes is JSON already written (by
    `json_object`, or by the database) and goes out as it is."""

    def render(self, content: Any) -> bytes:
        return content if isinstance(content, bytes) else json_bytes(content)


def answer(content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None) -> JSONAnswer:
    return JSONAnswer(content, status_code, headers)
