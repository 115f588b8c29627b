"""Starts a service: settings validated first (a bad one stops the process with a clear message),
then JSON logging and traces (when OTEL_* asks for them), then uvicorn. With the argument `health` it
asks the service running beside it for /healthz instead (the container image's HEALTHCHECK), on its
health port when it has one. `include_routes` puts the endpoint modules' routes on an app.

With FLOW_<SERVICE>_HEALTH_PORT set, one uvicorn server listens on both ports and `asgi_app` sends
each request by the port it came in on: /healthz, /readyz and /metrics on the health port only, the
API on the API port only."""

import sys
import urllib.request
from collections.abc import Callable
from typing import TypeVar

import uvicorn
from fastapi import APIRouter, FastAPI
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from .logs import configure_logging
from .settings import ServiceSettings
from .tracing import configure_tracing, shutdown_tracing

__all__ = ["asgi_app", "include_routes", "load_settings", "probe", "serve"]

S = TypeVar("S", bound=BaseSettings)


def load_settings(service: str, settings_class: type[S]) -> S:
    try:
        return settings_class()
    except ValidationError as exc:
        prefix = settings_class.model_config.get("env_prefix", "")
        lines = [f"{service}: invalid settings:"]
        for error in exc.errors():
            name = prefix + "_".join(str(part) for part in error["loc"]).upper()
            lines.append(f"  {name}: {error['msg']}")
        print("\n".join(lines), file=sys.stderr)
        sys.exit(2)


def serve(
    service: str,
    settings_class: type[ServiceSettings],
    create_app: Callable[..., FastAPI],
    *more_settings: type[BaseSettings],
) -> None:
    """`more_settings` are further settings classes (e.g. AuthSettings) handed to create_app after
    the service's own, validated the same way."""
    settings = load_settings(service, settings_class)
    if sys.argv[1:] == ["health"]:
        sys.exit(probe(settings))
    extra = [load_settings(service, cls) for cls in more_settings]
    configure_logging(service, settings.log_level)
    configure_tracing(service)
    try:
        config = uvicorn.Config(
            asgi_app(create_app(settings, *extra)),
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            timeout_graceful_shutdown=30,
        )
        sockets = None
        if settings.health_port is not None:
            health = uvicorn.Config(config.app, host=settings.http_host, port=settings.health_port, log_config=None)
            sockets = [config.bind_socket(), health.bind_socket()]
        uvicorn.Server(config).run(sockets=sockets)
    finally:
        shutdown_tracing()


def include_routes(app: FastAPI, *routers: APIRouter) -> None:
    """The routers' routes, on `app` itself. Not `app.include_router`: FastAPI keeps an included
    router's routes behind one entry of the app's routes, and the TokenGate (flow_kit.auth) and the
    access log look for a request's route among those entries, before the app routes it."""
    for router in routers:
        app.router.routes.extend(router.routes)


def asgi_app(app: FastAPI):
    """What uvicorn runs: `app` itself, or, when flow_kit.health.mount_health put the health endpoints
    on a port of their own, `app` on every port but that one, where its health app answers. The
    lifespan is `app`'s."""
    health_app = getattr(app.state, "health_app", None)
    if health_app is None:
        return app
    health_port = app.state.health_port

    async def dispatch(scope, receive, send) -> None:
        server = scope.get("server") if scope["type"] in ("http", "websocket") else None
        if server and server[1] == health_port:
            await health_app(scope, receive, send)
        else:
            await app(scope, receive, send)

    return dispatch


def probe(settings: ServiceSettings) -> int:
    """0 when the service on this host answers /healthz (on its health port when it has one), 1
    otherwise (exit statuses, as HEALTHCHECK wants)."""
    host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::", "") else settings.http_host
    if ":" in host:
        host = f"[{host}]"
    port = settings.health_port or settings.http_port
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=3) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
