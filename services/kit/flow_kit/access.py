"""The access log: one JSON line per API request (logger `flow.access`), saying who called what and
how it went, never what they sent.

    app.add_middleware(AccessLog)      # last, so it is outermost: it sees the TokenGate's refusals too

Each line carries `sub` and `client` (the verified token's subject and client: azp, client_id or
Entra appid; null when the request was not authenticated or was refused before its token was
verified), `method`, `route` (the path template, e.g. /v1/accounts/{branch}/{account}/statement; null
when no route matched), `status`, `duration_ms` and `tracekey` (the request's `X-Tracekey` header when
it is a UUID, else null). Never the token, the Authorization header, the query string nor the body.
Health and metrics requests (/healthz, /readyz, /metrics) are left out: probes call them every few
seconds and they carry no caller.
"""

import logging
import re
import time

__all__ = ["AccessLog", "SKIPPED_PATHS"]

_log = logging.getLogger("flow.access")
_CLAIMS_KEY = "flow.claims"  # where flow_kit.auth.TokenGate leaves the verified claims in the ASGI scope
SKIPPED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_UUID = re.compile(rb"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _route_of(scope) -> str | None:
    """The path template of the route that answered (FastAPI leaves it in the scope), or of the one
    that matches (a request refused before routing, by the TokenGate or the body limit)."""
    route = scope.get("route")
    if route is None:
        from starlette.routing import Match  # starlette comes with FastAPI

        for candidate in getattr(getattr(scope.get("app"), "router", None), "routes", ()):
            if candidate.matches(scope)[0] is Match.FULL:
                route = candidate
                break
    return getattr(route, "path", None)


def _claims_of(scope):
    claims = scope.get(_CLAIMS_KEY)
    if claims is None:  # authentication disabled, or a route the TokenGate does not guard
        state = scope.get("state")
        claims = state.get("claims") if isinstance(state, dict) else None
    return claims


class AccessLog:
    """ASGI middleware writing the access log (see the module)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") in SKIPPED_PATHS:
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status: list[int] = []

        async def sending(message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except BaseException:
            if not status:
                status.append(500)  # the error handler outside answers 500
            raise
        finally:
            self._write(scope, status[0] if status else None, started)

    @staticmethod
    def _write(scope, status: int | None, started: float) -> None:
        tracekey = None
        for name, value in scope.get("headers") or ():
            if name == b"x-tracekey":
                tracekey = value.decode("ascii").lower() if _UUID.fullmatch(value) else None
                break
        claims = _claims_of(scope)
        _log.info(
            "request",
            extra={
                "sub": getattr(claims, "subject", None),
                "client": getattr(claims, "client_id", None),
                "method": scope.get("method"),
                "route": _route_of(scope),
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                "tracekey": tracekey,
            },
        )
