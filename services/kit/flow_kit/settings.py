"""Settings every FLOW service shares; each service subclasses with its own env prefix."""

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DatabaseSettings", "ServiceSettings"]


class ServiceSettings(BaseSettings):
    """Read from environment variables at start-up; a bad value stops the process with a clear error."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    log_level: str = Field("INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    http_host: str = "127.0.0.1"
    http_port: int = Field(8000, ge=1, le=65535)
    # /healthz, /readyz and /metrics on a port of their own (the API port then no longer answers
    # them); unset, they are served on http_port.
    health_port: int | None = Field(None, ge=1, le=65535)
    # Seconds a /readyz result is reused (concurrent callers also share one check under way).
    health_cache_seconds: float = Field(5.0, ge=0)
    # /docs, /redoc and /openapi.json.
    docs: bool = True
    # None talks to AWS itself; a URL talks to an emulator such as LocalStack.
    aws_endpoint_url: str | None = None
    aws_region: str = "us-east-1"
    aws_connect_timeout_seconds: float = Field(3.0, gt=0)
    aws_read_timeout_seconds: float = Field(30.0, gt=0)
    aws_max_attempts: int = Field(5, ge=1)

    @model_validator(mode="after")
    def _health_port_apart(self):
        if self.health_port is not None and self.health_port == self.http_port:
            raise ValueError("health_port must differ from http_port")
        return self


class DatabaseSettings(ServiceSettings):
    database_url: str = Field(..., pattern=r"^postgresql\+asyncpg://")
    database_pool_size: int = Field(5, ge=1)
    # An AWS Secrets Manager secret in RDS's JSON format (username, password, and optionally host,
    # port, dbname): it supplies those parts of the connection, the URL the rest. See flow_kit.secrets.
    database_secret_id: str | None = None
    database_secret_refresh_seconds: float = Field(300.0, gt=0)
    # False: only the secret's user and password are used, the URL names the server. For a read replica
    # that shares the primary's login, whose secret (RDS's rotation needs it so) names the primary.
    database_server_from_secret: bool = True
    # TLS to the database (flow_kit.tls): verify-full checks the server's certificate against
    # database_sslrootcert (RDS: its global CA bundle) and its host name; unset, asyncpg's default (prefer).
    database_sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] | None = None
    database_sslrootcert: str | None = None

    @model_validator(mode="after")
    def _rootcert_needs_verification(self):
        if self.database_sslrootcert and self.database_sslmode not in ("verify-ca", "verify-full"):
            raise ValueError("database_sslrootcert is only used with database_sslmode verify-ca or verify-full")
        return self
