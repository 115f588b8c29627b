"""Database credentials from AWS Secrets Manager, so a password rotation needs no restart.

The secret holds RDS's JSON (`username`, `password`, and optionally `host`, `port`, `dbname`). The
provider caches it, fetches it again when it is older than `database_secret_refresh_seconds`, and
at once (at most every `min_refresh_interval` seconds) when a connection attempt was refused for
its credentials. Connections already open are not affected by a rotation: PostgreSQL keeps them.

Nothing here logs the password, and `Credentials` leaves it out of its repr.
"""

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field

from .aws import AwsClients
from .settings import DatabaseSettings

__all__ = ["Credentials", "DatabaseCredentials", "SecretFormatError"]

_log = logging.getLogger(__name__)


class _NoSecretBodies(logging.Filter):
    """At DEBUG botocore logs every request and response body, secret values included: drop those."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "SecretString" not in repr(record.args)


for _name in ("botocore.parsers", "botocore.endpoint"):
    logging.getLogger(_name).addFilter(_NoSecretBodies())


class SecretFormatError(ValueError):
    """The secret is not RDS-style JSON with at least a username and a password."""


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)
    host: str | None = None
    port: int | None = None
    dbname: str | None = None

    @classmethod
    def from_secret(cls, secret_id: str, secret_string: str | None) -> "Credentials":
        try:
            data = json.loads(secret_string or "")
        except ValueError:
            raise SecretFormatError(f"secret {secret_id} is not JSON") from None
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("username"), str)
            or not isinstance(data.get("password"), str)
        ):
            raise SecretFormatError(f"secret {secret_id} lacks a username or a password")
        port = data.get("port")
        try:
            port = int(port) if port not in (None, "") else None
        except (TypeError, ValueError):
            raise SecretFormatError(f"secret {secret_id} has a port that is not a number") from None
        return cls(
            username=data["username"],
            password=data["password"],
            host=data.get("host") or None,
            port=port,
            dbname=data.get("dbname") or None,
        )


class DatabaseCredentials:
    """The current credentials of `settings.database_secret_id`, cached.

    `clients` defaults to `AwsClients(settings)` (endpoint, region, timeouts and retries of the
    service). `fetches` counts the calls to Secrets Manager that answered.
    """

    def __init__(
        self, settings: DatabaseSettings, clients: AwsClients | None = None, *, min_refresh_interval: float = 2.0
    ) -> None:
        if not settings.database_secret_id:
            raise ValueError("database_secret_id is not set")
        self.secret_id = settings.database_secret_id
        self._clients = clients or AwsClients(settings)
        self._max_age = settings.database_secret_refresh_seconds
        self._min_interval = min_refresh_interval
        self._credentials: Credentials | None = None
        self._fetched_at = float("-inf")  # monotonic time of the last answer (or failed attempt)
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def _fetch(self, reason: str) -> Credentials:
        """Asks Secrets Manager; keeps the credentials in hand if it cannot answer (a stale password
        is better than none while the secret store is away), raises if there are none yet. Returns the
        credentials in hand after it."""
        self._fetched_at = time.monotonic()
        try:
            async with self._clients.client("secretsmanager") as client:
                response = await client.get_secret_value(SecretId=self.secret_id)
            credentials = Credentials.from_secret(self.secret_id, response.get("SecretString"))
        except Exception as exc:
            if self._credentials is None:
                raise
            _log.warning(
                "database secret could not be read; keeping the credentials in hand",
                extra={"secret_id": self.secret_id, "reason": reason, "error": type(exc).__name__},
            )
            return self._credentials
        self.fetches += 1
        changed = self._credentials is not None and credentials != self._credentials
        self._credentials = credentials
        self._fetched_at = time.monotonic()
        _log.info(
            "database secret read",
            extra={"secret_id": self.secret_id, "reason": reason, "username": credentials.username, "changed": changed},
        )
        return credentials

    async def current(self) -> Credentials:
        """The cached credentials, read again first when older than the refresh period."""
        credentials = self._credentials
        if credentials is None or time.monotonic() - self._fetched_at >= self._max_age:
            async with self._lock:
                credentials = self._credentials
                if credentials is None or time.monotonic() - self._fetched_at >= self._max_age:
                    credentials = await self._fetch("first use" if credentials is None else "refresh period")
        return credentials

    async def after_auth_failure(self, used: Credentials, failed_at: float) -> Credentials | None:
        """The server refused `used` (at monotonic time `failed_at`): newer credentials, or None
        when the secret holds nothing newer. Reads the secret again unless that was done after the
        failure; waits out `min_refresh_interval` since the last read, so failing clients cannot
        hammer Secrets Manager."""
        async with self._lock:
            if self._credentials != used:
                return self._credentials  # another connection attempt already found newer ones
            if self._fetched_at >= failed_at:
                return None  # read after this failure, and the same: nothing newer yet
            wait = self._fetched_at + self._min_interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await self._fetch("authentication failed")
            return self._credentials if self._credentials != used else None
