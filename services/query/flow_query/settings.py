from pydantic import Field
from pydantic_settings import SettingsConfigDict

from flow_kit.settings import DatabaseSettings

__all__ = ["QuerySettings"]


class QuerySettings(DatabaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLOW_QUERY_", extra="ignore", frozen=True)

    http_port: int = Field(8002, ge=1, le=65535)
    max_range_days: int = Field(366, ge=1)
    # Readiness fails while the read replica replays further behind the primary than this.
    max_replica_lag_seconds: float = Field(30.0, gt=0)
