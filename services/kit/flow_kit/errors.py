"""The central error handling: every error answer is `{"code", "message"}` with a stable code,
and nothing internal (stack traces, SQL, secrets) ever reaches a client."""

import logging
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from .codes import Code

__all__ = ["ErrorOut", "FlowError", "error_body", "install_error_handlers"]

_log = logging.getLogger(__name__)


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
        self.message = message or code.message
        self.detail = detail


def error_body(code: Code, message: str | None = None, **detail) -> dict:
    return {"code": code.value, "message": message or code.message, **detail}


def install_error_handlers(app: FastAPI, validation_code: Callable | None = None) -> None:
    """`validation_code(request, errors)` picks the code for a request that failed validation (default R001)."""

    @app.exception_handler(FlowError)
    async def _flow_error(request: Request, exc: FlowError) -> JSONResponse:
        return JSONResponse(error_body(exc.code, exc.message, **exc.detail), status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        syntax = next((err for err in errors if err["type"] == "json_invalid"), None)
        if syntax is not None:  # its loc is ("body", character offset), not a field
            return JSONResponse(error_body(Code.INVALID_JSON, position=syntax["loc"][-1]), status_code=422)
        code = validation_code(request, errors) if validation_code else Code.INVALID_BODY
        # A field's path without the "body" prefix; the body as a whole (not an object, empty) has none.
        fields = [path for err in errors if (path := ".".join(str(part) for part in err["loc"] if part != "body"))]
        return JSONResponse(error_body(code, **({"fields": fields} if fields else {})), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = Code.INVALID_QUERY if exc.status_code < 500 else Code.INTERNAL_ERROR
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        _log.exception("unhandled error", extra={"path": request.url.path})
        return JSONResponse(error_body(Code.INTERNAL_ERROR), status_code=500)
