from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from flow_kit.settings import DatabaseSettings
from flow_rules.limits import Configured

__all__ = ["QuerySettings"]


class QuerySettings(DatabaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLOW_QUERY_", extra="ignore", frozen=True)

    http_port: int = Field(8002, ge=1, le=65535)
    max_range_days: int = Field(366, ge=1)
    # Readiness fails while the read replica replays further behind the primary than this.
    max_replica_lag_seconds: float = Field(30.0, gt=0)
    # The HMAC-SHA256 key that signs statement cursors (at least 32 characters). Unset: a random key
    # drawn at start-up, so cursors do not survive a restart nor work on another replica.
    cursor_key: SecretStr | None = None
    # The archive (flow-archive's bucket and prefix): reads that reach an archived month are served
    # from its Parquet files, kept in `archive_cache_dir` up to `archive_cache_bytes`. No bucket: such
    # reads answer 503 R090.
    archive_bucket: str | None = None
    archive_prefix: str = Field("flow/", pattern=r"^([A-Za-z0-9!_.*'()-]+/)*$")
    archive_cache_dir: Path = Path("/tmp/flow-archive")
    archive_cache_bytes: int = Field(2 << 30, ge=1 << 20)

    @field_validator("cursor_key")
    @classmethod
    def _long_enough(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and len(key.get_secret_value().encode()) < 32:
            raise ValueError("at least 32 characters")
        return key

    @property
    def configured(self) -> Configured:
        """The limits set here that the message codes' texts state."""
        return Configured(max_range_days=self.max_range_days)
