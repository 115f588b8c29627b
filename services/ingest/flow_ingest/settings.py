from pydantic import Field
from pydantic_settings import SettingsConfigDict

from flow_kit.settings import ServiceSettings

__all__ = ["IngestSettings"]


class IngestSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="FLOW_INGEST_", extra="ignore", frozen=True)

    http_port: int = Field(8001, ge=1, le=65535)
    request_topic_arn: str = Field(..., pattern=r"^arn:aws[a-z-]*:sns:")
    retroactive_days: int = Field(7, ge=0, le=366)
