from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from flow_kit.settings import DatabaseSettings

__all__ = ["EngineSettings"]


class EngineSettings(DatabaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLOW_ENGINE_", extra="ignore", frozen=True)

    http_port: int = Field(8003, ge=1, le=65535)  # health and metrics only
    queue_url: str = Field(..., pattern=r"^https?://")
    callback_topic_arn: str = Field(..., pattern=r"^arn:aws[a-z-]*:sns:")
    pollers: int = Field(2, ge=1, le=64)
    batch_size: int = Field(500, ge=1, le=2000)  # postings gathered from the queue per database transaction
    wait_seconds: int = Field(5, ge=0, le=20)  # SQS long-poll; also bounds how long a stop waits
    retroactive_days: int = Field(7, ge=0, le=366)
    db_retry_attempts: int = Field(5, ge=1)
    # A posting the database refuses for a reason that is not a ledger rule is tried again this much later.
    hold_seconds: int = Field(60, ge=0, le=900)  # SQS's DelaySeconds
    queue_stats_seconds: float = Field(30, gt=0, le=3600)  # how often the queues' depth metrics are sampled
    database_pool_size: int = Field(4, ge=3)
    # A posting to an account with no row in flow.account: `open` applies it (the account opens on its
    # first posting: active, no limit), `reject` refuses it with R029.
    unknown_accounts: Literal["open", "reject"] = "open"

    @model_validator(mode="after")
    def _pool_fits_pollers(self) -> "EngineSettings":
        # each poller holds a connection while it applies; the relay and partition upkeep need theirs
        if self.database_pool_size < self.pollers + 2:
            raise ValueError(f"database_pool_size must be at least pollers + 2 ({self.pollers + 2})")
        return self
