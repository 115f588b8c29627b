"""Health, readiness and metrics endpoints, the same on every service."""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["Check", "health_router"]

Check = Callable[[], Awaitable[None]]
_log = logging.getLogger(__name__)
_CHECK_TIMEOUT_SECONDS = 3.0


def health_router(checks: Callable[[], Mapping[str, Check]]) -> APIRouter:
    """`checks` returns the named dependency checks; each raises when its dependency is not usable."""
    router = APIRouter(include_in_schema=False)

    @router.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        results: dict[str, str] = {}
        for name, check in checks().items():
            try:
                await asyncio.wait_for(check(), _CHECK_TIMEOUT_SECONDS)
                results[name] = "ok"
            except Exception as exc:  # a failing dependency is reported, never raised
                _log.warning("readiness check failed", extra={"check": name, "error": type(exc).__name__})
                results[name] = "unavailable"
        ready = all(value == "ok" for value in results.values())
        return JSONResponse({"status": "ready" if ready else "not ready", "checks": results}, status_code=200 if ready else 503)

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router
