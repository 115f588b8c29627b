"""Starts a service: settings validated first (a bad one stops the process with a clear message),
then JSON logging and traces (when OTEL_* asks for them), then uvicorn. With the argument `health` it
asks the service running beside it for /healthz instead (the container image's HEALTHCHECK)."""

import sys
import urllib.request
from collections.abc import Callable
from typing import TypeVar

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from .logs import configure_logging
from .settings import ServiceSettings
from .tracing import configure_tracing, shutdown_tracing

__all__ = ["load_settings", "probe", "serve"]

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


def serve(service: str, settings_class: type[ServiceSettings], create_app: Callable[..., FastAPI],
          *more_settings: type[BaseSettings]) -> None:
    """`more_settings` are further settings classes (e.g. AuthSettings) handed to create_app after
    the service's own, validated the same way."""
    settings = load_settings(service, settings_class)
    if sys.argv[1:] == ["health"]:
        sys.exit(probe(settings))
    extra = [load_settings(service, cls) for cls in more_settings]
    configure_logging(service, settings.log_level)
    configure_tracing(service)
    try:
        uvicorn.run(
            create_app(settings, *extra),
            host=settings.http_host,
            port=settings.http_port,
            log_config=None,
            timeout_graceful_shutdown=30,
        )
    finally:
        shutdown_tracing()


def probe(settings: ServiceSettings) -> int:
    """0 when the service on this host answers /healthz, 1 otherwise (exit statuses, as HEALTHCHECK wants)."""
    host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::", "") else settings.http_host
    try:
        with urllib.request.urlopen(f"http://{host}:{settings.http_port}/healthz", timeout=3) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
