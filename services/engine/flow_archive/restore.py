"""Restore: an archived month back into flow.transaction, from its files in S3.

All in one database transaction: flow.restore_table() makes an empty table shaped like
flow.transaction (with the owner's rights), the month's postings are copied into it from the
Parquet files (each checked against the manifest's size and SHA-256 first), and
flow.restore_archived_month() checks its count and sums against what was archived, attaches it as the
month's partition and forgets the month's archive rows. A crash leaves nothing behind: run it again.
The files stay in S3 (Object Lock keeps them anyway); archiving the month again rewrites them.
"""

import io
from datetime import date

import pyarrow.parquet as pq
from sqlalchemy import text

from flow_kit import lake

from .job import ArchiveError, _read_back, read_manifest
from .settings import ArchiveSettings

__all__ = ["restore_month"]


async def restore_month(db, s3, settings: ArchiveSettings, month: date) -> int:
    manifest = await read_manifest(s3, settings, month)
    if manifest is None:
        raise ArchiveError(
            f"{month:%Y-%m}: no manifest in s3://{settings.bucket}/{lake.manifest_key(settings.prefix, month)}"
        )
    async with db.begin() as conn:
        name = (await conn.execute(text("SELECT flow.restore_table(:month)"), {"month": month})).scalar()
        driver = (await conn.get_raw_connection()).driver_connection
        for entry in manifest.files:
            table = pq.read_table(io.BytesIO(await _read_back(s3, settings, entry)))
            columns = table.column_names
            records = zip(*(table[c].to_pylist() for c in columns), strict=True)
            await driver.copy_records_to_table(name, schema_name="flow", columns=columns, records=records)
        return (await conn.execute(text("SELECT flow.restore_archived_month(:month)"), {"month": month})).scalar()
