"""The central error handling: every error answer is `{"code", "message"}` with a stable code,
and nothing internal (stack traces, SQL, secrets) ever reaches a client. Request bodies are read as
strict JSON here too (`StrictJSONRoute`), so what is not JSON gets R019 like any syntax error."""

import json
import logging
import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from flow_rules.codes import Code
from flow_rules.limits import Configured

from .answers import JSONAnswer, answer

__all__ = [
    "ErrorOut",
    "FlowError",
    "NonFinite",
    "StrictJSONRoute",
    "error_body",
    "install_error_handlers",
    "strict_loads",
]

_log = logging.getLogger(__name__)
_DEFAULTS = Configured()


class NonFinite:
    """Where a body held NaN, Infinity, -Infinity or a number beyond a double's range (1e400, or an
    underflow such as 1e-400 that would silently read as 0): no field takes it, so the field holding
    it is refused with its own code (a posting's details with R010, its amount with R004...)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


_MAX_DOUBLE = 1.7976931348623157e308


def _parse_float(text: str) -> float | NonFinite:
    value = float(text)
    if value == 0.0:  # 0, 0.0, 0e5 are zero; 1e-400 is not
        mantissa = text.lower().partition("e")[0]
        return NonFinite(text) if mantissa.strip("-0.") else value
    return value if -_MAX_DOUBLE <= value <= _MAX_DOUBLE else NonFinite(text)


def _parse_int(text: str) -> int | NonFinite:
    if len(text) < 300:
        return int(text)
    if len(text) > 310:  # also spares int() very long digit strings
        return NonFinite(text)
    value = int(text)
    return value if -_MAX_DOUBLE <= value <= _MAX_DOUBLE else NonFinite(text)


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _DuplicateKey
    return obj


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_float=_parse_float, parse_constant=NonFinite)
# Integers are read by int() (a Python call for each would slow every body); one longer than int()
# reads (4,300 digits) has the body read again with _parse_int. An integer beyond a double's range but
# shorter stays an exact int: no field takes it (flow_rules.posting refuses it in details).
_DECODER_LONG_INTS = json.JSONDecoder(
    object_pairs_hook=_unique_keys, parse_float=_parse_float, parse_int=_parse_int, parse_constant=NonFinite
)
# The tokens of a JSON text that parsed up to a duplicated key: enough to find where that key is.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\],:]')


def _duplicate_at(text: str) -> int:
    """Where the first key repeated in its object starts (the slow path of a refused body only)."""
    stack: list[set | None] = []
    previous = None
    for token in _TOKEN.finditer(text):
        piece = token.group()
        if piece == "{":
            stack.append(set())
        elif piece == "[":
            stack.append(None)
        elif piece in "]}":
            stack.pop()
        elif piece[0] == '"' and previous in ("{", ",") and stack and stack[-1] is not None:
            key = json.loads(piece)
            if key in stack[-1]:
                return token.start()
            stack[-1].add(key)
        previous = piece
    return 0


def strict_loads(body: bytes | str) -> Any:
    """A JSON text (RFC 8259) read strictly: UTF-8 only (no BOM), and no object with a key twice
    (json.loads keeps the last value), both raised as json.JSONDecodeError with the position, like a
    syntax error. NaN, Infinity and numbers beyond a double's range come back as NonFinite values,
    which every field refuses with its own code (a body that is nothing but one is not JSON).
    Integers stay exact, never floats."""
    if isinstance(body, bytes):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise json.JSONDecodeError(
                "not UTF-8", body.decode("utf-8", "replace"), len(body[: exc.start].decode("utf-8", "replace"))
            ) from None
    else:
        text = body
    try:
        try:
            value = _DECODER.decode(text)
        except json.JSONDecodeError:
            raise
        except ValueError:  # an integer too long for int()
            value = _DECODER_LONG_INTS.decode(text)
    except _DuplicateKey:
        raise json.JSONDecodeError("a key appears twice in one object", text, _duplicate_at(text)) from None
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text, 0) from None
    if type(value) is NonFinite:  # no field to hold it: the body as a whole is not JSON
        raise json.JSONDecodeError("NaN, Infinity or a number beyond a double's range", text, 0)
    return value


class _StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = strict_loads(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """A route whose JSON body is read by `strict_loads` (FastAPI answers its JSONDecodeError as a
    `json_invalid` validation error: R019 with the position)."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def strict(request: Request):
            return await handler(_StrictJSONRequest(request.scope, request.receive, request._send))

        return strict


class ErrorOut(BaseModel):
    """Every error answer (the API documents this shape)."""

    code: str
    message: str
    fields: list[str] | None = None  # a refused request's offending fields, e.g. "amount", "items.3.dateref"
    position: int | None = None  # where a body that is not JSON stops being JSON (character offset)


class FlowError(Exception):
    """An expected failure with its code and HTTP status."""

    def __init__(self, code: Code, status_code: int, message: str | None = None, **detail) -> None:
        super().__init__(message or code.message)
        self.code = code
        self.status_code = status_code
        self.message = message  # None: the code's text, with the limits the service was configured with
        self.detail = detail


def error_body(code: Code, message: str | None = None, configured: Configured = _DEFAULTS, **detail) -> dict:
    return {"code": code.value, "message": message or code.text(configured), **detail}


def install_error_handlers(
    app: FastAPI, validation_code: Callable | None = None, configured: Configured = _DEFAULTS
) -> None:
    """`validation_code(request, errors)` picks the code for a request that failed validation (default R001).
    `configured`: the limits the service enforces, which the codes' texts state."""

    @app.exception_handler(FlowError)
    async def _flow_error(request: Request, exc: FlowError) -> JSONAnswer:
        return answer(error_body(exc.code, exc.message, configured, **exc.detail), exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONAnswer:
        errors = exc.errors()
        syntax = next((err for err in errors if err["type"] == "json_invalid"), None)
        if syntax is not None:  # its loc is ("body", character offset), not a field
            return answer(error_body(Code.INVALID_JSON, position=syntax["loc"][-1]), 422)
        code = validation_code(request, errors) if validation_code else Code.INVALID_BODY
        # A field's path without the "body" prefix; the body as a whole (not an object, empty) has none.
        fields = [path for err in errors if (path := ".".join(str(part) for part in err["loc"] if part != "body"))]
        return answer(
            error_body(code, None, configured, fields=fields) if fields else error_body(code, None, configured), 422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONAnswer:
        code = Code.INVALID_QUERY if exc.status_code < 500 else Code.INTERNAL_ERROR
        return answer(error_body(code, str(exc.detail)), exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONAnswer:
        _log.exception("unhandled error", extra={"path": request.url.path})
        return answer(error_body(Code.INTERNAL_ERROR), 500)
