from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from flow_kit.settings import DatabaseSettings

__all__ = ["ArchiveSettings"]


class ArchiveSettings(DatabaseSettings):
    """The archive job's settings (FLOW_ARCHIVE_*); its database is the primary, as the engine's."""

    model_config = SettingsConfigDict(env_prefix="FLOW_ARCHIVE_", extra="ignore", frozen=True)

    bucket: str = Field(min_length=3)
    prefix: str = Field("flow/", pattern=r"^([A-Za-z0-9!_.*'()-]+/)*$")  # the archive role's part of the bucket
    # A month leaves the database once its last day is this many days old.
    retention_days: int = Field(90, ge=1)
    # What a month must outlive before it may leave: the retroactive window, then a posting waiting in
    # FlowTransaction as long as SQS keeps it (MessageRetentionPeriod, 14 days), then a margin. A
    # posting for a month already gone would be held forever (its partition missing).
    retroactive_days: int = Field(7, ge=0)
    queue_retention_days: int = Field(14, ge=0)
    margin_days: int = Field(7, ge=1)
    # Parquet files of at most this many postings (a day takes one or more), row groups of `row_group_rows`.
    file_rows: int = Field(1_000_000, ge=1_000)
    row_group_rows: int = Field(4_096, ge=1_000)  # small: a statement reads one group per day file

    @model_validator(mode="after")
    def _retention_outlives_late_postings(self):
        least = self.retroactive_days + self.queue_retention_days + self.margin_days
        if self.retention_days < least:
            raise ValueError(
                f"retention_days {self.retention_days} is shorter than the retroactive window "
                f"({self.retroactive_days}) + the queue's message retention ({self.queue_retention_days}) "
                f"+ the margin ({self.margin_days}) = {least} days"
            )
        return self
