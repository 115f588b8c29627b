"""The data lake's format, shared by the archive job (which writes it) and the query service (which
reads it): where a month's files go in the bucket, their Parquet schema, and the manifest.

Layout under the archive prefix (`flow/` by default):

    transaction/month=2026-09/day=2026-09-01/part-00000.parquet   the postings of a day, in statement order
    transaction/month=2026-09/sums.parquet                        per account and day: debits, credits, postings
    transaction/month=2026-09/manifest.json                       written last: the month's inventory

Hive-style folders, so Athena, DuckDB, Spark or pyarrow.dataset see `month` and `day` as partitions.
"""

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import date

import pyarrow as pa

__all__ = [
    "COLUMNS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "SUMS_SCHEMA",
    "FileEntry",
    "Manifest",
    "day_key",
    "manifest_key",
    "month_prefix",
    "sha256_of",
    "sums_key",
]

SCHEMA_VERSION = 1

# flow.transaction's columns, typed: money as DECIMAL(15,2) (never a float), UUIDs as Parquet UUIDs,
# dates as DATE, timestamps in microseconds UTC, details as the JSON text the database kept.
SCHEMA = pa.schema(
    [
        pa.field("id", pa.uuid(), nullable=False),
        pa.field("branch", pa.string(), nullable=False),
        pa.field("account", pa.string(), nullable=False),
        pa.field("amount", pa.decimal128(15, 2), nullable=False),
        pa.field("debitcredit", pa.string(), nullable=False),
        pa.field("eventcode", pa.int32(), nullable=False),
        pa.field("description", pa.string()),
        pa.field("tracekey", pa.uuid(), nullable=False),
        pa.field("details", pa.json_()),
        pa.field("dateref", pa.date32(), nullable=False),
        pa.field("acceptedat", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("createdat", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("callersub", pa.string()),
        pa.field("callerclient", pa.string()),
    ]
)
COLUMNS = SCHEMA.names


def month_prefix(prefix: str, month: date) -> str:
    return f"{prefix}transaction/month={month:%Y-%m}/"


def day_key(prefix: str, day: date, part: int) -> str:
    return f"{month_prefix(prefix, day.replace(day=1))}day={day.isoformat()}/part-{part:05d}.parquet"


def manifest_key(prefix: str, month: date) -> str:
    return month_prefix(prefix, month) + "manifest.json"


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class FileEntry:
    key: str
    day: str  # YYYY-MM-DD
    rows: int
    bytes: int
    sha256: str


# The per account and day sums of a month, as the partition had them: a Parquet file of its own
# beside the manifest (a month can hold hundreds of thousands of account-days).
SUMS_SCHEMA = pa.schema(
    [
        pa.field("branch", pa.string(), nullable=False),
        pa.field("account", pa.string(), nullable=False),
        pa.field("dateref", pa.date32(), nullable=False),
        pa.field("totaldebit", pa.decimal128(38, 2), nullable=False),
        pa.field("totalcredit", pa.decimal128(38, 2), nullable=False),
        pa.field("postings", pa.int64(), nullable=False),
    ]
)


def sums_key(prefix: str, month: date) -> str:
    return month_prefix(prefix, month) + "sums.parquet"


@dataclass
class Manifest:
    month: str  # YYYY-MM-01
    schema_version: int
    postings: int
    totaldebit: str
    totalcredit: str
    partition: str  # the partition's name, which a restore gives it again
    files: list[FileEntry] = field(default_factory=list)  # the postings, day by day
    sums: FileEntry | None = None  # the per account and day sums (SUMS_SCHEMA)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> "Manifest":
        data = json.loads(raw)
        files = [FileEntry(**f) for f in data.pop("files")]
        sums = data.pop("sums")
        return cls(**data, files=files, sums=FileEntry(**sums) if sums else None)

    def files_of(self, day: date) -> list[FileEntry]:
        return [f for f in self.files if f.day == day.isoformat()]
