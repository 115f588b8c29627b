from pydantic import Field
from pydantic_settings import SettingsConfigDict

from flow_kit.settings import DatabaseSettings
from flow_rules.limits import Configured

__all__ = ["IngestSettings"]


class IngestSettings(DatabaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLOW_INGEST_", extra="ignore", frozen=True)

    http_port: int = Field(8001, ge=1, le=65535)
    request_topic_arn: str = Field(..., pattern=r"^arn:aws[a-z-]*:sns:")
    retroactive_days: int = Field(7, ge=0, le=366)
    # Event flags are read from the catalogue at most this often; the engine checks again at apply time.
    event_cache_seconds: float = Field(5.0, ge=0)
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    # 1000 postings with 4 KiB details take 4.4 MiB; parsing 5 MiB costs 20-145 MiB (bench/ingest_memory.py).
    max_batch_body_bytes: int = Field(5 * 1024 * 1024, ge=1024)
    max_details_bytes: int = Field(4096, ge=2)
    # Calls to FlowRequest under way before fewer than 10 waiting postings are sent (10 are sent at
    # once): while they are, postings of concurrent requests gather and share calls.
    publish_calls: int = Field(8, ge=1, le=50)

    @property
    def configured(self) -> Configured:
        """The limits set here that the message codes' texts state."""
        return Configured(max_details_bytes=self.max_details_bytes)
