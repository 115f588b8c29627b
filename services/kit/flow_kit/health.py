"""Health, readiness and metrics endpoints, the same on every service.

/readyz is unauthenticated, so it must be cheap to call: its result is reused for
`health_cache_seconds` (a failure too), concurrent callers share the one check under way, and the
database checks run on a connection of their own (`mount_health(..., database=...)`), never on the
pool the API's requests use. With `health_port` set the three endpoints are served only there (see
flow_kit.serve.asgi_app), apart from the API."""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from .settings import DatabaseSettings, ServiceSettings

__all__ = ["Check", "docs_options", "health_router", "mount_health"]

Check = Callable[[], Awaitable[None]]
_log = logging.getLogger(__name__)
_CHECK_TIMEOUT_SECONDS = 3.0


def docs_options(settings: ServiceSettings) -> dict:
    """FastAPI(...) keywords: /docs, /redoc and /openapi.json only when `settings.docs`."""
    return {} if settings.docs else {"docs_url": None, "redoc_url": None, "openapi_url": None}


def health_router(checks: Callable[[], Mapping[str, Check]], cache_seconds: float = 5.0) -> APIRouter:
    """`checks` returns the named dependency checks; each raises when its dependency is not usable."""
    router = APIRouter(include_in_schema=False)
    cached: tuple[float, int, dict] | None = None  # (monotonic time, status, body)
    running: asyncio.Future | None = None

    async def run_checks() -> tuple[int, dict]:
        results: dict[str, str] = {}
        for name, check in checks().items():
            try:
                await asyncio.wait_for(check(), _CHECK_TIMEOUT_SECONDS)
                results[name] = "ok"
            except Exception as exc:  # a failing dependency is reported, never raised
                _log.warning("readiness check failed", extra={"check": name, "error": type(exc).__name__})
                results[name] = "unavailable"
        ready = all(value == "ok" for value in results.values())
        return 200 if ready else 503, {"status": "ready" if ready else "not ready", "checks": results}

    @router.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        nonlocal running
        if cached is not None and time.monotonic() - cached[0] < cache_seconds:
            return JSONResponse(cached[2], status_code=cached[1])
        if running is None:  # the first caller runs the checks; the others wait for its answer
            running = asyncio.ensure_future(run_checks())

            def done(task: asyncio.Future) -> None:
                nonlocal cached, running
                running = None
                if not task.cancelled() and task.exception() is None:
                    status, body = task.result()
                    cached = (time.monotonic(), status, body)

            running.add_done_callback(done)
        status, body = await asyncio.shield(running)  # a caller that goes away does not cancel the others'
        return JSONResponse(body, status_code=status)

    @router.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def mount_health(
    app: FastAPI, settings: ServiceSettings, checks: Callable[[], Mapping[str, Check]], database: str | None = None
) -> AsyncEngine | None:
    """Serves /healthz, /readyz and /metrics for `app`: on the app itself, or, when
    `settings.health_port` is set, on a separate app (`app.state.health_app`) that
    flow_kit.serve.asgi_app puts on that port.

    `database` (an application_name, e.g. "flow-query-health") gives the checks an engine of their
    own, one connection, off the API's pool: its "database" check (SELECT 1) replaces any in
    `checks`. The engine is returned (and kept as `app.state.health_db`) for further checks, and
    disposed when the app stops."""
    engine = None
    if database is not None:
        from .db import create_database  # here: flow_kit.db is only needed by services with a database

        if not isinstance(settings, DatabaseSettings):
            raise TypeError("mount_health(database=...) needs the service's DatabaseSettings")
        # pool_pre_ping: a connection the server ended while idle (a restart, a password rotation that
        # ends sessions) is replaced before the check, not reported as the database being down.
        engine = create_database(
            settings.model_copy(update={"database_pool_size": 1}),
            database,
            max_overflow=0,
            pool_pre_ping=True,
            isolation_level="AUTOCOMMIT",
        )
        app.state.health_db = engine

        async def database_check() -> None:
            async with engine.connect() as conn:  # a broken connection is invalidated, a new one made next time
                await conn.execute(text("SELECT 1"))

        given = checks

        def checks() -> Mapping[str, Check]:
            return {"database": database_check, **{k: v for k, v in given().items() if k != "database"}}

        inner = app.router.lifespan_context

        @asynccontextmanager
        async def lifespan(application):
            try:
                async with inner(application) as state:
                    yield state
            finally:
                await engine.dispose()

        app.router.lifespan_context = lifespan
    router = health_router(checks, settings.health_cache_seconds)
    if settings.health_port is None:
        app.include_router(router)
    else:
        health_app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
        health_app.include_router(router)
        app.state.health_app = health_app
        app.state.health_port = settings.health_port
    return engine
