"""The archive job: months of flow.transaction older than the retention leave the database for S3.

For each such month, oldest first, under one advisory lock (a second run at once does nothing):

1. export: in one snapshot, each day of the partition as Parquet files (COPY out as CSV, typed by
   pyarrow), uploaded whole (a PUT is all or nothing: no half-written object is ever visible), then
   the per account/day sums, then the manifest, last;
2. verify: every file read back from S3, its size and SHA-256 checked against the manifest, its
   schema against the lake's, and its postings' count and per account/day sums against the partition
   as it is now;
3. record the month as verified (flow.archive_month), then have flow.drop_archived_month() detach and
   drop the partition: it re-counts the partition under an exclusive lock and refuses if anything
   changed, keeps the day sums in flow.archived_day and marks the month archived, all in one
   transaction.

A crash anywhere leaves the partition in place until step 3 commits; the next run finds the manifest,
verifies it again (or exports again if it does not match) and finishes. pg_partman's own retention
stays off: only this job drops partitions.
"""

import asyncio
import io
import logging
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from sqlalchemy import text

from flow_kit import lake

from .settings import ArchiveSettings

__all__ = [
    "ArchiveError",
    "LOCK_KEY",
    "MonthResult",
    "archivable_months",
    "archive_month",
    "day_sums_of_table",
    "partition_months",
    "read_manifest",
    "verify_month",
]

_log = logging.getLogger("flow.archive")
LOCK_KEY = 0x464C4F57_41524348  # "FLOWARCH": one archive job at a time (also restores)


class ArchiveError(Exception):
    pass


@dataclass(frozen=True)
class MonthResult:
    month: date
    postings: int
    files: int
    parquet_bytes: int
    seconds: float


# Days of a partition, read in statement order; timestamps as epoch microseconds (exact) and UUIDs as
# 32 hex digits, so pyarrow reads the CSV without guessing.
_DAY_ROWS = """SELECT replace(id::text, '-', ''), branch, account, amount, debitcredit, eventcode, description,
                     replace(tracekey::text, '-', ''), details, dateref,
                     (extract(epoch FROM acceptedat) * 1000000)::bigint,
                     (extract(epoch FROM createdat) * 1000000)::bigint, callersub, callerclient
              FROM {part} WHERE dateref = '{day}' ORDER BY branch, account, createdat, id"""
_CSV_TYPES = {
    "id": pa.string(),
    "branch": pa.string(),
    "account": pa.string(),
    "amount": pa.decimal128(15, 2),
    "debitcredit": pa.string(),
    "eventcode": pa.int32(),
    "description": pa.string(),
    "tracekey": pa.string(),
    "details": pa.string(),
    "dateref": pa.date32(),
    "acceptedat": pa.int64(),
    "createdat": pa.int64(),
    "callersub": pa.string(),
    "callerclient": pa.string(),
}
_SUMS = """SELECT branch, account, dateref, coalesce(sum(amount) FILTER (WHERE debitcredit = 'D'), 0) AS totaldebit,
                  coalesce(sum(amount) FILTER (WHERE debitcredit = 'C'), 0) AS totalcredit, count(*) AS postings
           FROM {part} GROUP BY branch, account, dateref"""
_PARTITIONS = """SELECT c.relname,
                        substring(pg_get_expr(c.relpartbound, c.oid) FROM 'FROM \\(''([0-9-]+)''\\)')::date AS month
                 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = 'flow.transaction'::regclass
                   AND pg_get_expr(c.relpartbound, c.oid) LIKE 'FOR VALUES FROM%'
                 ORDER BY 2"""


def _uuids(hex_column: pa.ChunkedArray) -> pa.Array:
    raw = b"".join(bytes.fromhex(h) for h in hex_column.to_pylist())
    storage = pa.Array.from_buffers(pa.binary(16), len(hex_column), [None, pa.py_buffer(raw)])
    return pa.ExtensionArray.from_storage(pa.uuid(), storage)


def _day_table(csv: bytes) -> pa.Table:
    """One day's COPY output as a table of the lake's schema."""
    if not csv:
        return lake.SCHEMA.empty_table()
    raw = pacsv.read_csv(
        io.BytesIO(csv),
        read_options=pacsv.ReadOptions(column_names=list(_CSV_TYPES)),
        convert_options=pacsv.ConvertOptions(
            column_types=_CSV_TYPES, strings_can_be_null=True, quoted_strings_can_be_null=False
        ),
    )
    utc = pa.timestamp("us", tz="UTC")
    columns = {
        "id": _uuids(raw["id"]),
        "tracekey": _uuids(raw["tracekey"]),
        "details": pa.ExtensionArray.from_storage(pa.json_(), raw["details"].combine_chunks()),
        "acceptedat": raw["acceptedat"].cast(utc),
        "createdat": raw["createdat"].cast(utc),
    }
    return pa.table(
        [columns.get(name, raw[name] if name in raw.column_names else None) for name in lake.COLUMNS],
        schema=lake.SCHEMA,
    )


def day_sums_of_table(table: pa.Table) -> dict[tuple[str, str, date], tuple[Decimal, Decimal, int]]:
    """Per account and day: debits, credits, postings, of postings in the lake's schema."""
    if table.num_rows == 0:
        return {}
    zero = pa.scalar(Decimal("0.00"), pa.decimal128(15, 2))
    debit = pc.equal(table["debitcredit"], "D")
    table = (
        table.select(["branch", "account", "dateref"])
        .append_column("debit", pc.if_else(debit, table["amount"], zero))
        .append_column("credit", pc.if_else(debit, zero, table["amount"]))
    )
    grouped = table.group_by(["branch", "account", "dateref"]).aggregate(
        [("debit", "sum"), ("credit", "sum"), ("debit", "count")]
    )
    return {
        (r["branch"], r["account"], r["dateref"]): (r["debit_sum"], r["credit_sum"], r["debit_count"])
        for r in grouped.to_pylist()
    }


def _parquet(table: pa.Table, row_group_rows: int) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=row_group_rows, compression="zstd", write_statistics=True)
    return sink.getvalue()


async def partition_months(conn) -> dict[date, str]:
    """Month -> partition name, of flow.transaction's monthly partitions (not the default one)."""
    return {row.month: row.relname for row in await conn.execute(text(_PARTITIONS))}


def archivable_months(months, today: date, retention_days: int) -> list[date]:
    """Months whose last day is at least `retention_days` old."""
    cutoff = today - timedelta(days=retention_days)
    return sorted(
        m for m in months if (m.replace(day=28) + timedelta(days=4)).replace(day=1) <= cutoff + timedelta(days=1)
    )


async def read_manifest(s3, settings: ArchiveSettings, month: date) -> lake.Manifest | None:
    """The month's manifest in S3, if an export got that far (listed first: without s3:ListBucket S3
    answers a missing key with AccessDenied, not NoSuchKey)."""
    key = lake.manifest_key(settings.prefix, month)
    listed = await s3.list_objects_v2(Bucket=settings.bucket, Prefix=key, MaxKeys=1)
    if not any(item["Key"] == key for item in listed.get("Contents", [])):
        return None
    answer = await s3.get_object(Bucket=settings.bucket, Key=key)
    return lake.Manifest.from_json(await answer["Body"].read())


async def _put(s3, settings: ArchiveSettings, key: str, data: bytes, day: str, rows: int) -> lake.FileEntry:
    await s3.put_object(Bucket=settings.bucket, Key=key, Body=data)
    return lake.FileEntry(key=key, day=day, rows=rows, bytes=len(data), sha256=lake.sha256_of(data))


async def _export(db, s3, settings: ArchiveSettings, month: date, partition: str) -> lake.Manifest:
    """Writes the month's files and its manifest (last), from one snapshot of the partition."""
    part = f'flow."{partition}"'
    files: list[lake.FileEntry] = []
    async with db.connect() as conn:
        await conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
        driver = (await conn.get_raw_connection()).driver_connection
        sums = [dict(r) for r in (await conn.execute(text(_SUMS.format(part=part)))).mappings()]
        days = sorted({s["dateref"] for s in sums})
        for day in days:
            chunks: list[bytes] = []
            await driver.copy_from_query(
                _DAY_ROWS.format(part=part, day=day.isoformat()), format="csv", output=_collector(chunks)
            )
            table = _day_table(b"".join(chunks))
            for part_no, start in enumerate(range(0, table.num_rows, settings.file_rows)):
                piece = table.slice(start, settings.file_rows)
                files.append(
                    await _put(
                        s3,
                        settings,
                        lake.day_key(settings.prefix, day, part_no),
                        _parquet(piece, settings.row_group_rows),
                        day.isoformat(),
                        piece.num_rows,
                    )
                )
        await conn.rollback()
    sums_table = pa.Table.from_pylist(sums, schema=lake.SUMS_SCHEMA)
    sums_entry = await _put(
        s3,
        settings,
        lake.sums_key(settings.prefix, month),
        _parquet(sums_table, settings.row_group_rows),
        "",
        sums_table.num_rows,
    )
    manifest = lake.Manifest(
        month=month.isoformat(),
        schema_version=lake.SCHEMA_VERSION,
        partition=partition,
        postings=sum(s["postings"] for s in sums),
        totaldebit=str(sum((s["totaldebit"] for s in sums), Decimal("0.00"))),
        totalcredit=str(sum((s["totalcredit"] for s in sums), Decimal("0.00"))),
        files=files,
        sums=sums_entry,
    )
    await s3.put_object(Bucket=settings.bucket, Key=lake.manifest_key(settings.prefix, month), Body=manifest.to_json())
    return manifest


def _collector(chunks: list[bytes]):
    async def collect(chunk: bytes) -> None:
        chunks.append(bytes(chunk))

    return collect


async def _read_back(s3, settings: ArchiveSettings, entry: lake.FileEntry) -> bytes:
    data = await (await s3.get_object(Bucket=settings.bucket, Key=entry.key))["Body"].read()
    if len(data) != entry.bytes or lake.sha256_of(data) != entry.sha256:
        raise ArchiveError(f"{entry.key}: size or SHA-256 differs from the manifest")
    return data


async def verify_month(db, s3, settings: ArchiveSettings, manifest: lake.Manifest, partition: str) -> list[str]:
    """What differs between the archive (read back from S3) and the partition now; empty: they match."""
    problems = []
    if manifest.schema_version != lake.SCHEMA_VERSION or manifest.partition != partition:
        return [f"manifest of schema {manifest.schema_version} for {manifest.partition!r}"]
    archived: dict = {}
    for entry in manifest.files:
        try:
            table = pq.read_table(io.BytesIO(await _read_back(s3, settings, entry)))
        except (ArchiveError, pa.ArrowException) as exc:
            problems.append(str(exc))
            continue
        if not table.schema.equals(lake.SCHEMA):
            problems.append(f"{entry.key}: schema differs from the lake's")
        if table.num_rows != entry.rows:
            problems.append(f"{entry.key}: {table.num_rows} rows, manifest says {entry.rows}")
        for key, (debit, credit, count) in day_sums_of_table(table).items():
            before = archived.get(key, (Decimal(0), Decimal(0), 0))
            archived[key] = (before[0] + debit, before[1] + credit, before[2] + count)
    async with db.connect() as conn:
        now = {
            (r.branch, r.account, r.dateref): (r.totaldebit, r.totalcredit, r.postings)
            for r in await conn.execute(text(_SUMS.format(part=f'flow."{partition}"')))
        }
    if archived != now:
        differing = sorted(set(archived.items()) ^ set(now.items()))[:5]
        problems.append(f"per account/day sums differ from the partition (e.g. {differing})")
    if sum(n for _, _, n in now.values()) != manifest.postings:
        problems.append(
            f"the partition holds {sum(n for _, _, n in now.values())} postings, the manifest {manifest.postings}"
        )
    return problems


async def archive_month(db, s3, settings: ArchiveSettings, month: date, partition: str) -> MonthResult:
    started = time.monotonic()
    manifest = await read_manifest(s3, settings, month)  # an earlier run's export: used if it still matches
    if manifest is None or await verify_month(db, s3, settings, manifest, partition):
        manifest = await _export(db, s3, settings, month, partition)
        problems = await verify_month(db, s3, settings, manifest, partition)
        if problems:
            raise ArchiveError(f"{month:%Y-%m}: the export read back does not match the partition: {problems}")
    async with db.begin() as conn:
        await conn.execute(
            text(
                """INSERT INTO flow.archive_month (month, state, partition_name, manifest_key, postings, totaldebit,
                                                totalcredit)
               VALUES (:month, 'verified', :partition, :key, :postings, :debit, :credit)
               ON CONFLICT (month) DO UPDATE SET state = 'verified', partition_name = excluded.partition_name,
                   manifest_key = excluded.manifest_key, postings = excluded.postings,
                   totaldebit = excluded.totaldebit, totalcredit = excluded.totalcredit, verifiedat = now()
               WHERE flow.archive_month.state = 'verified'"""
            ),
            {
                "month": month,
                "partition": partition,
                "key": lake.manifest_key(settings.prefix, month),
                "postings": manifest.postings,
                "debit": Decimal(manifest.totaldebit),
                "credit": Decimal(manifest.totalcredit),
            },
        )
    async with db.begin() as conn:
        await conn.execute(text("SELECT flow.drop_archived_month(:month)"), {"month": month})
    return MonthResult(
        month, manifest.postings, len(manifest.files), sum(f.bytes for f in manifest.files), time.monotonic() - started
    )


def today_utc() -> date:
    return datetime.now(UTC).date()


async def run(db, s3, settings: ArchiveSettings, today: date | None = None) -> list[MonthResult] | None:
    """Archives every month due; None when another run holds the lock."""
    async with db.connect() as lock_conn:
        if not (await lock_conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": LOCK_KEY})).scalar():
            return None
        await lock_conn.commit()
        try:
            async with db.begin() as conn:
                run_id = (await conn.execute(text("INSERT INTO flow.archive_run DEFAULT VALUES RETURNING id"))).scalar()
            done: list[MonthResult] = []
            try:
                async with db.connect() as conn:
                    partitions = await partition_months(conn)
                for month in archivable_months(partitions, today or today_utc(), settings.retention_days):
                    result = await archive_month(db, s3, settings, month, partitions[month])
                    _log.info(
                        "month archived",
                        extra={
                            "month": month.isoformat(),
                            "postings": result.postings,
                            "files": result.files,
                            "seconds": round(result.seconds, 1),
                        },
                    )
                    done.append(result)
            except BaseException as exc:
                await asyncio.shield(_finish(db, run_id, "failed", len(done), repr(exc)[:2000]))
                raise
            await _finish(db, run_id, "succeeded", len(done), None)
            return done
        finally:
            await lock_conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
            await lock_conn.commit()


async def _finish(db, run_id: int, status: str, months: int, error: str | None) -> None:
    async with db.begin() as conn:
        await conn.execute(
            text(
                "UPDATE flow.archive_run SET status = :status, finishedat = now(), months = :months, "
                "error = :error WHERE id = :id"
            ),
            {"status": status, "months": months, "error": error, "id": run_id},
        )
