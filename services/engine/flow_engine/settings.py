from pydantic import Field
from pydantic_settings import SettingsConfigDict

from flow_kit.settings import DatabaseSettings

__all__ = ["EngineSettings"]


class EngineSettings(DatabaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLOW_ENGINE_", extra="ignore", frozen=True)

    http_port: int = Field(8003, ge=1, le=65535)  # health and metrics only
    queue_url: str = Field(..., pattern=r"^https?://")
    callback_topic_arn: str = Field(..., pattern=r"^arn:aws[a-z-]*:sns:")
    pollers: int = Field(2, ge=1, le=64)
    wait_seconds: int = Field(5, ge=0, le=20)  # SQS long-poll; also bounds how long a stop waits
    retroactive_days: int = Field(7, ge=0, le=366)
    db_retry_attempts: int = Field(5, ge=1)
