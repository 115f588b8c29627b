"""The database engine factory: SQLAlchemy Core on asyncpg, UTC sessions."""

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import asyncpg
from sqlalchemy import URL, make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from .secrets import Credentials, DatabaseCredentials
from .settings import DatabaseSettings
from .tls import database_ssl

__all__ = ["create_database", "create_engine", "is_transient", "ping"]

_log = logging.getLogger(__name__)
# What PostgreSQL answers when it refuses a login for its credentials (28P01, 28000).
_AUTH_ERRORS = (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError)
# Options SQLAlchemy's asyncpg adapter takes for itself; asyncpg.connect() does not know them.
_ADAPTER_OPTIONS = ("prepared_statement_cache_size", "prepared_statement_name_func", "async_creator_fn")


# SQLSTATEs worth another try: serialization failure, deadlock, shutdown, lost connections.
_TRANSIENT_SQLSTATES = {"40001", "40P01", "57P01", "57P02", "57P03", "08000", "08003", "08006"}


def is_transient(exc: BaseException) -> bool:
    """Whether trying the same database work again may well succeed."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        return getattr(exc.orig, "sqlstate", None) in _TRANSIENT_SQLSTATES
    return isinstance(exc, (ConnectionError, OSError, asyncio.TimeoutError))


def create_engine(url: str, pool_size: int = 5, application_name: str = "flow", ssl=None, **options) -> AsyncEngine:
    """`options` go to create_async_engine over these defaults (e.g. pool_pre_ping=False). Errors never
    quote the statement's parameters (hide_parameters): a failed batch's log must not hold postings.
    `ssl` is asyncpg's (flow_kit.tls.database_ssl); it wins over an ?ssl= of the URL."""
    connect_args = {"server_settings": {"timezone": "UTC", "application_name": application_name}}
    if ssl is not None:
        connect_args["ssl"] = ssl
    return create_async_engine(
        url,
        **{
            "pool_size": pool_size,
            "max_overflow": 0,
            "pool_pre_ping": True,
            "hide_parameters": True,
            "connect_args": connect_args,
            **options,
        },
    )


def create_database(
    settings: DatabaseSettings, application_name: str, credentials: DatabaseCredentials | None = None, **options
) -> AsyncEngine:
    """The service's engine. Without `settings.database_secret_id` it is exactly
    `create_engine(settings.database_url, settings.database_pool_size, application_name, ssl, **options)`.

    With one, every new connection takes its user and password (and host, port and database name
    when the secret has them, unless `settings.database_server_from_secret` is false) from the secret,
    through `credentials` (by default a `DatabaseCredentials` of these settings); a login refused for
    its credentials reads the secret again and tries once more. Pooled connections outlive a rotation;
    new ones use the new password.

    Every connection, the health checks' too, uses `settings.database_sslmode` and `_sslrootcert`.
    """
    ssl = database_ssl(settings.database_sslmode, settings.database_sslrootcert)
    if not settings.database_secret_id:
        return create_engine(settings.database_url, settings.database_pool_size, application_name, ssl, **options)
    provider = credentials or DatabaseCredentials(settings)
    given = make_url(settings.database_url)  # a password in it would be stale anyway: left out
    url = URL.create(given.drivername, given.username, None, given.host, given.port, given.database, given.query)
    _, base = url.get_dialect()().create_connect_args(url)
    for option in _ADAPTER_OPTIONS:
        base.pop(option, None)
    base["server_settings"] = {"timezone": "UTC", "application_name": application_name}
    if ssl is not None:
        base["ssl"] = ssl

    async def connect() -> asyncpg.Connection:
        used = await provider.current()
        try:
            return await asyncpg.connect(**_options(base, used, settings.database_server_from_secret))
        except _AUTH_ERRORS as exc:
            failed_at = time.monotonic()
            newer = await provider.after_auth_failure(used, failed_at)
            if newer is None:
                raise
            _log.info(
                "database login refused; trying again with the secret's newer credentials",
                extra={"secret_id": provider.secret_id, "error": type(exc).__name__},
            )
            return await asyncpg.connect(**_options(base, newer, settings.database_server_from_secret))

    return create_async_engine(
        url,
        **{
            "pool_size": settings.database_pool_size,
            "max_overflow": 0,
            "pool_pre_ping": True,
            "hide_parameters": True,
            "async_creator": connect,
            **options,
        },
    )


def _options(base: Mapping[str, Any], credentials: Credentials, server_from_secret: bool = True) -> dict:
    """asyncpg.connect() options: the URL's, with what the secret has put over them (its user and
    password; and its host, port and database unless `server_from_secret` is false)."""
    options = {**base, "user": credentials.username, "password": credentials.password}
    if not server_from_secret:
        return options
    if credentials.host:
        options["host"] = credentials.host
        if isinstance(options.get("port"), list):  # the URL named several hosts; the secret names one
            options.pop("port")
    if credentials.port:
        options["port"] = credentials.port
    if credentials.dbname:
        options["database"] = credentials.dbname
    return options


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
