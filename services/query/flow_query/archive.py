"""Reads of archived months: postings whose month left the database are read from the data lake (the
month's Parquet files in S3, written by flow-archive; layout in flow_kit.lake).

The database still says where everything is: an applied posting's outcome row (with its dateref) stays,
so a posting by id or tracekey whose transaction row is gone is looked up in its day's files; the day
rows stay, so a statement knows which days of an archived month hold an account's lines and the
balance each day starts from, and computes its running balances exactly as the database would.
flow.archive_month says which months are archived (it changes in the transaction that drops or
restores a partition, so a month is in exactly one place).

Files are fetched once, checked against the manifest's SHA-256, and kept in a local folder (bounded,
least recently used first out); the ids of a file are kept in memory for reads by id.
"""

import asyncio
import json
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flow_kit import lake
from flow_kit.errors import FlowError
from flow_rules.codes import Code

from .render import dumps

__all__ = ["ArchiveReader", "Segment", "segments"]

_log = logging.getLogger(__name__)


ARCHIVED_MONTHS = """SELECT month, manifest_key, verifiedat FROM flow.archive_month
                     WHERE state = 'archived' AND month BETWEEN date_trunc('month', $1::date) AND $2::date"""
ARCHIVED_MONTH = (
    "SELECT month, manifest_key, verifiedat FROM flow.archive_month WHERE state = 'archived' AND month = $1"
)
# Days of an account with postings (its day rows), and the balance at the end of the day before one.
DAYS_WITH_LINES = """SELECT dateref FROM flow.balance WHERE branch = $1 AND account = $2 AND dateref BETWEEN $3 AND $4
                     ORDER BY dateref"""
BALANCE_BEFORE = """SELECT accumulatedcredit - accumulateddebit AS balance FROM flow.balance
                    WHERE branch = $1 AND account = $2 AND dateref < $3 ORDER BY dateref DESC LIMIT 1"""
OPENING_CLOSING = """SELECT coalesce((SELECT accumulatedcredit - accumulateddebit FROM flow.balance WHERE branch = $1
                                     AND account = $2 AND dateref < $3 ORDER BY dateref DESC LIMIT 1),
                                     0.00)::text AS opening,
                            coalesce((SELECT accumulatedcredit - accumulateddebit FROM flow.balance WHERE branch = $1
                                     AND account = $2 AND dateref <= $4 ORDER BY dateref DESC LIMIT 1),
                                     0.00)::text AS closing"""

_LINE_COLUMNS = ["id", "dateref", "amount", "debitcredit", "eventcode", "description", "tracekey", "createdat"]


def _month_of(day: date) -> date:
    return day.replace(day=1)


def _next_month(month: date) -> date:
    return (month.replace(day=28) + timedelta(days=4)).replace(day=1)


@dataclass(frozen=True)
class Segment:
    start: date
    end: date
    archived: bool


def segments(from_: date, to: date, archived: set[date]) -> list[Segment]:
    """[from_, to] cut into runs of whole archived months and of the rest, in date order."""
    found: list[Segment] = []
    day = from_
    while day <= to:
        month = _month_of(day)
        end = min(to, _next_month(month) - timedelta(days=1))
        is_archived = month in archived
        if found and found[-1].archived == is_archived:
            found[-1] = Segment(found[-1].start, end, is_archived)
        else:
            found.append(Segment(day, end, is_archived))
        day = end + timedelta(days=1)
    return found


def utc_text(moment: datetime) -> str:
    """As queries.utc_text writes it: `2026-11-24T10:00:00.123456Z`, no fraction when it is zero."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{moment.microsecond:06d}" if moment.microsecond else "") + "Z"


def line_json(row: dict, balance: Decimal) -> str:
    """A statement line as PostgreSQL's row_to_json writes it in queries.STATEMENT_PAGE."""
    return (
        "{"
        + ",".join(
            f"{dumps(k)}:{v}"
            for k, v in (
                ("id", dumps(str(row["id"]))),
                ("dateref", dumps(row["dateref"].isoformat())),
                ("amount", dumps(str(row["amount"]))),
                ("debitcredit", dumps(row["debitcredit"])),
                ("eventcode", dumps(row["eventcode"])),
                ("description", dumps(row["description"])),
                ("tracekey", dumps(str(row["tracekey"]))),
                ("createdat", dumps(utc_text(row["createdat"]))),
                ("balance", dumps(str(balance))),
            )
        )
        + "}"
    )


class _Files:
    """The archive's files on local disk, fetched from S3 once and checked; least recently used out."""

    def __init__(self, s3, bucket: str, folder: Path, max_bytes: int) -> None:
        self.s3, self.bucket, self.folder, self.max_bytes = s3, bucket, folder, max_bytes
        self.folder.mkdir(parents=True, exist_ok=True)
        self._used: OrderedDict[str, int] = OrderedDict()
        self._fetching: dict[str, asyncio.Task] = {}

    async def path(self, entry: lake.FileEntry) -> Path:
        path = self.folder / f"{entry.sha256}.parquet"
        if entry.sha256 in self._used and path.exists():
            self._used.move_to_end(entry.sha256)
            return path
        task = self._fetching.get(entry.sha256)
        if task is None:  # one download per file, however many readers want it
            task = self._fetching[entry.sha256] = asyncio.ensure_future(self._fetch(entry, path))
            task.add_done_callback(lambda _: self._fetching.pop(entry.sha256, None))
        return await asyncio.shield(task)

    async def _fetch(self, entry: lake.FileEntry, path: Path) -> Path:
        data = await (await self.s3.get_object(Bucket=self.bucket, Key=entry.key))["Body"].read()
        if len(data) != entry.bytes or lake.sha256_of(data) != entry.sha256:
            _log.error("archive file does not match its manifest", extra={"key": entry.key})
            raise FlowError(Code.UNAVAILABLE, 503)  # the details stay in the log
        partial = path.with_suffix(".partial")
        partial.write_bytes(data)
        os.replace(partial, path)  # whole or absent
        self._used[entry.sha256] = len(data)
        while sum(self._used.values()) > self.max_bytes and len(self._used) > 1:
            old, _ = self._used.popitem(last=False)
            (self.folder / f"{old}.parquet").unlink(missing_ok=True)
        return path


class ArchiveReader:
    def __init__(
        self,
        s3,
        reader,
        bucket: str | None,
        prefix: str,
        cache_dir: Path,
        cache_bytes: int,
        index_bytes: int = 256 << 20,
    ) -> None:
        self.reader, self.bucket, self.prefix = reader, bucket, prefix
        self.files = _Files(s3, bucket, cache_dir, cache_bytes) if bucket else None
        self._manifests: dict[tuple[date, datetime], lake.Manifest] = {}
        self._ids: OrderedDict[str, pa.Array] = OrderedDict()  # a file's ids (binary 16), for reads by id
        self._index_bytes = index_bytes

    def _require(self) -> _Files:
        if self.files is None:
            _log.error("an archived month was asked for and no archive is configured (FLOW_QUERY_ARCHIVE_BUCKET)")
            raise FlowError(Code.UNAVAILABLE, 503)
        return self.files

    async def manifest(self, month: date, key: str, verifiedat: datetime) -> lake.Manifest:
        files = self._require()
        cached = self._manifests.get((month, verifiedat))
        if cached is None:
            raw = await (await files.s3.get_object(Bucket=self.bucket, Key=key))["Body"].read()
            cached = self._manifests[(month, verifiedat)] = lake.Manifest.from_json(raw)
        return cached

    async def archived_months(self, from_: date, to: date) -> dict[date, tuple]:
        return {
            r["month"]: (r["manifest_key"], r["verifiedat"])
            for r in await self.reader.fetch(ARCHIVED_MONTHS, from_, to)
        }

    async def _day_files(self, day: date, known: dict | None = None) -> list[lake.FileEntry]:
        month = _month_of(day)
        if known is not None and month in known:
            key, verifiedat = known[month]
        else:
            row = await self.reader.fetchrow(ARCHIVED_MONTH, month)
            if row is None:
                return []
            key, verifiedat = row["manifest_key"], row["verifiedat"]
        return (await self.manifest(month, key, verifiedat)).files_of(day)

    async def _read(self, entry: lake.FileEntry, read, *args):
        """`read(path, *args)` in a thread, on the file fetched if need be; once more if the cache let the
        file go between fetching and opening it."""
        files = self._require()
        for attempt in (1, 2):
            path = await files.path(entry)
            try:
                return await asyncio.to_thread(read, path, *args)
            except FileNotFoundError:
                if attempt == 2:
                    raise

    # -- by id ------------------------------------------------------------------------------------
    async def _ids_of(self, entry: lake.FileEntry) -> pa.Array:
        ids = self._ids.get(entry.sha256)
        if ids is None:
            ids = await self._read(entry, _ids_in)
            self._ids[entry.sha256] = ids
            while sum(a.nbytes for a in self._ids.values()) > self._index_bytes and len(self._ids) > 1:
                self._ids.popitem(last=False)
        self._ids.move_to_end(entry.sha256)
        return ids

    async def posting(self, id: UUID, dateref: date) -> dict | None:
        """The posting as TRANSACTION_BY_ID answers it (without the caller), from its day's files."""
        self._require()
        for entry in await self._day_files(dateref):
            index = pc.index(await self._ids_of(entry), pa.scalar(id.bytes, pa.binary(16))).as_py()
            if index >= 0:
                return await self._read(entry, _row_at, index)
        return None

    # -- statements -------------------------------------------------------------------------------
    async def _account_day(self, branch: str, account: str, day: date, known: dict) -> list[dict]:
        rows: list[dict] = []
        for entry in await self._day_files(day, known):
            rows += await self._read(entry, _account_rows, branch, account)
        return rows

    async def statement_lines(
        self, branch: str, account: str, segment: Segment, after: tuple, want: int, known: dict
    ) -> list[tuple[tuple, str]]:
        """Up to `want` lines of an archived segment after the key `after`: (key, line JSON)."""
        self._require()
        lines: list[tuple[tuple, str]] = []
        start = max(segment.start, after[0])
        days = [r["dateref"] for r in await self.reader.fetch(DAYS_WITH_LINES, branch, account, start, segment.end)]
        if not days:
            return lines
        before = await self.reader.fetchrow(BALANCE_BEFORE, branch, account, days[0])
        balance = before["balance"] if before else Decimal("0.00")
        for day in days:
            for row in await self._account_day(branch, account, day, known):
                balance += row["amount"] if row["debitcredit"] == "C" else -row["amount"]
                key = (row["dateref"], row["createdat"], row["id"])
                if key > after:
                    lines.append((key, line_json(row, balance)))
            if len(lines) >= want:
                break
        return lines[:want]


_OPEN: OrderedDict[Path, pq.ParquetFile] = OrderedDict()  # open files, metadata read once
_OPEN_LOCK = threading.Lock()  # files are read in threads (asyncio.to_thread)


def _parquet(path: Path) -> pq.ParquetFile:
    with _OPEN_LOCK:
        file = _OPEN.get(path)
        if file is None or not path.exists():
            file = _OPEN[path] = pq.ParquetFile(path)
            while len(_OPEN) > 256:
                _OPEN.popitem(last=False)  # closed when no reader holds it any more
        _OPEN.move_to_end(path)
        return file


def _ids_in(path: Path) -> pa.Array:
    return pq.read_table(path, columns=["id"])["id"].combine_chunks().storage


def _row_at(path: Path, index: int) -> dict:
    file = _parquet(path)
    for group in range(file.num_row_groups):
        rows = file.metadata.row_group(group).num_rows
        if index < rows:
            row = file.read_row_group(group).slice(index, 1).to_pylist()[0]
            row["details"] = json.loads(row["details"]) if row["details"] is not None else None
            return row
        index -= rows
    raise IndexError(index)


def _may_hold(statistics, value: str) -> bool:
    return statistics is None or not statistics.has_min_max or statistics.min <= value <= statistics.max


def _account_rows(path: Path, branch: str, account: str) -> list[dict]:
    """The account's postings in a day file, in the file's order (createdat, id): only the row groups
    whose branch and account statistics may hold it are read (files are sorted by branch, account)."""
    file = _parquet(path)
    branch_at, account_at = file.schema_arrow.get_field_index("branch"), file.schema_arrow.get_field_index("account")
    groups = [
        g
        for g in range(file.num_row_groups)
        if _may_hold(file.metadata.row_group(g).column(branch_at).statistics, branch)
        and _may_hold(file.metadata.row_group(g).column(account_at).statistics, account)
    ]
    if not groups:
        return []
    table = file.read_row_groups(groups, columns=[*_LINE_COLUMNS, "branch", "account"])
    table = table.filter(pc.and_(pc.equal(table["branch"], branch), pc.equal(table["account"], account)))
    return table.select(_LINE_COLUMNS).to_pylist()


async def statement_page(
    archive: ArchiveReader,
    branch: str,
    account: str,
    from_: date,
    to: date,
    limit: int,
    after: tuple,
    archived: dict,
    page_sql: str,
):
    """A statement page over a range that touches archived months, as queries.STATEMENT_PAGE would answer
    it were they still in the database: (items JSON, more, last line's key or None, opening, closing).
    The range is read segment by segment in date order, archived months from the archive and the rest
    with `page_sql`, until the page is full and one more line is known to follow (or none does)."""
    reader = archive.reader
    items: list[str] = []
    last = None
    more = False
    for segment in segments(from_, to, set(archived)):
        if more or (last or after)[0] > segment.end:
            continue
        need = limit - len(items)
        key = last or after
        if segment.archived:
            lines = await archive.statement_lines(branch, account, segment, key, need + 1, archived)
            items += [line for _, line in lines[:need]]
            if lines[:need]:
                last = lines[:need][-1][0]
            more = len(lines) > need
        else:
            page = await reader.fetchrow(page_sql, branch, account, segment.start, segment.end, need, *key)
            found = page["items"][1:-1]
            if found:
                items.append(found)
                last = (page["last_dateref"], page["last_createdat"], page["last_id"])
            more = page["more"]
    balances = await reader.fetchrow(OPENING_CLOSING, branch, account, from_, to)
    return "[" + ",".join(items) + "]", more, last, balances["opening"], balances["closing"]
