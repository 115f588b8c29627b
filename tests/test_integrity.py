"""sql/0010: the schema's own integrity checks (outcome codes and daterefs, the outbox's arrays, the day
rows' key), on a new database and on one upgraded with data in it."""

import shutil
import uuid
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest

from flow_kit.migrations import apply_migrations, asyncpg_dsn
from tools.devstack.stack import ROOT

DAY = date(2026, 11, 20)


@pytest.fixture
async def conn(fresh_database):
    connection = await asyncpg.connect(asyncpg_dsn(fresh_database))
    yield connection
    await connection.close()


async def _outcome(conn, code: str = "R000", dateref: date | None = DAY, id: uuid.UUID | None = None) -> None:
    await conn.execute(
        "INSERT INTO flow.outcome (id, tracekey, fingerprint, code, dateref) VALUES ($1, $2, $3, $4, $5)",
        id or uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), code, dateref)


async def test_an_outcome_code_is_r_and_three_digits(conn):
    for code in ("R000", "R028", "R999"):
        await _outcome(conn, code)
    for code in ("R00", "R0000", "r000", "X000", "R00a", " R000", "R000\n", ""):
        with pytest.raises(asyncpg.CheckViolationError, match="outcome_code_format"):
            await _outcome(conn, code)


async def test_a_new_outcome_names_its_dateref(conn):
    with pytest.raises(asyncpg.CheckViolationError, match="outcome_dateref_present"):
        await _outcome(conn, "R021", dateref=None)
    assert await _validated(conn, "outcome_dateref_present")


async def _validated(conn, constraint: str) -> bool:
    return await conn.fetchval("SELECT convalidated FROM pg_constraint WHERE conname = $1", constraint)


def _ids(n: int) -> list[uuid.UUID]:
    return [uuid.uuid4() for _ in range(n)]


async def _outbox(conn, ids, tracekeys, codes, balances=None, availables=None) -> None:
    await conn.execute("INSERT INTO flow.callback_outbox (ids, tracekeys, codes, balances, availables) "
                       "VALUES ($1, $2, $3, $4, $5)", ids, tracekeys, codes, balances, availables)


async def test_the_outbox_arrays_have_one_entry_per_outcome_and_figures_per_applied_one(conn):
    codes = ["R000", "R021", "R000"]  # two applied
    # What the engine and the relay write: the row before its day rows moved, figures with and without
    # limits (an account without one: a null available), a row with nothing applied, what a partly
    # published row keeps.
    await _outbox(conn, _ids(3), _ids(3), codes)
    await _outbox(conn, _ids(3), _ids(3), codes, ["10.00", "-5.00"])
    await _outbox(conn, _ids(3), _ids(3), codes, ["10.00", "-5.00"], ["510.00", None])
    await _outbox(conn, _ids(1), _ids(1), ["R030"])
    await _outbox(conn, _ids(1), _ids(1), ["R021"], [], [])
    await _outbox(conn, _ids(1), _ids(1), ["R000"], [None], [None])  # queued before sql/0008 had figures

    for bad, constraint in [
        ((_ids(3), _ids(2), codes), "one_per_outcome"),
        ((_ids(2), _ids(3), codes), "one_per_outcome"),
        ((_ids(3), _ids(3), codes[:2]), "one_per_outcome"),
        (([uuid.uuid4(), None, uuid.uuid4()], _ids(3), codes), "one_per_outcome"),
        ((_ids(3), [None, *_ids(2)], codes), "one_per_outcome"),
        ((_ids(3), _ids(3), ["R000", None, "R000"]), "one_per_outcome"),
        ((_ids(3), _ids(3), codes, ["1.00"]), "one_per_applied"),
        ((_ids(3), _ids(3), codes, ["1.00", "2.00", "3.00"]), "one_per_applied"),
        ((_ids(3), _ids(3), codes, ["1.00", "2.00"], ["1.00"]), "one_per_applied"),
        ((_ids(3), _ids(3), codes, None, ["1.00", "2.00"]), "one_per_applied"),
        ((_ids(1), _ids(1), ["R021"], ["1.00"]), "one_per_applied"),
    ]:
        with pytest.raises(asyncpg.CheckViolationError, match=f"callback_outbox_{constraint}"):
            await _outbox(conn, *bad)
    # Updates are held to it too (the engine rewrites codes, then adds the figures).
    with pytest.raises(asyncpg.CheckViolationError, match="callback_outbox_one_per_applied"):
        await conn.execute(
            "UPDATE flow.callback_outbox SET codes = '{R000,R000,R000}' WHERE cardinality(balances) = 2")


async def test_a_day_row_is_keyed_by_its_account_and_day(conn):
    columns = await conn.fetch("SELECT attname FROM pg_attribute WHERE attrelid = 'flow.balance'::regclass "
                               "AND attnum > 0 AND NOT attisdropped")
    assert "id" not in {c["attname"] for c in columns}
    key = await conn.fetchval("SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                              "WHERE conrelid = 'flow.balance'::regclass AND contype = 'p'")
    assert key == "PRIMARY KEY (branch, account, dateref)"
    row = ("INSERT INTO flow.balance (branch, account, dateref, tracekey, updatetracekey) "
           "VALUES ('0001', '1', $1, $2, $2)")
    await conn.execute(row, DAY, uuid.uuid4())
    with pytest.raises(asyncpg.UniqueViolationError, match="balance_pkey"):
        await conn.execute(row, DAY, uuid.uuid4())


async def _database_before_0010(stack, tmp_path) -> str:
    """A new database migrated by the scripts before 0010 only."""
    server = stack.database_url.rsplit("/", 1)[0]
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(asyncpg_dsn(f"{server}/postgres"))
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    older = tmp_path / "sql-before-0010"
    older.mkdir()
    for path in (ROOT / "sql").glob("0*.sql"):
        if path.name < "0010":
            shutil.copy(path, older)
    await apply_migrations(f"{server}/{name}", older)
    return f"{server}/{name}"


async def test_an_upgrade_backfills_applied_daterefs_and_keeps_old_rejections_as_they_are(stack, tmp_path):
    """Outcome rows with no dateref, as sql/0002 left those recorded before it: the applied one gets
    its transaction's; the rejected one has none to get, keeps its null, and leaves the check NOT
    VALID, still enforced on new rows, validated once that row is gone. Day rows and waiting
    callbacks come through whole."""
    url = await _database_before_0010(stack, tmp_path)
    applied, rejected, recent = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    today = datetime.now(UTC).date()  # the partitions' calendar
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute("INSERT INTO flow.transaction (id, branch, account, amount, debitcredit, eventcode, "
                           "tracekey, dateref, acceptedat) VALUES ($1, '0001', '1', 10.00, 'C', 1, $2, $3, now())",
                           applied, uuid.uuid4(), today)
        await _outcome(conn, "R000", None, applied)
        await _outcome(conn, "R021", None, rejected)
        await _outcome(conn, "R021", DAY, recent)
        days = [(today - timedelta(days=3), "5.00"), (today, "15.00")]
        for day, credit in days:
            await conn.execute("INSERT INTO flow.balance (branch, account, dateref, accumulatedcredit, tracekey, "
                               "updatetracekey) VALUES ('0001', '1', $1, $2, $3, $3)", day, credit, uuid.uuid4())
        waiting = (_ids(2), _ids(2), ["R000", "R021"])  # queued before sql/0008: no figures
        await _outbox(conn, *waiting)

        assert await apply_migrations(url, ROOT / "sql") == [p.name for p in sorted((ROOT / "sql").glob("0*.sql"))
                                                             if p.name >= "0010"]

        daterefs = dict(await conn.fetch("SELECT id, dateref FROM flow.outcome"))
        assert daterefs == {applied: today, rejected: None, recent: DAY}
        assert not await _validated(conn, "outcome_dateref_present")
        with pytest.raises(asyncpg.CheckViolationError, match="outcome_dateref_present"):
            await _outcome(conn, "R021", dateref=None)
        assert [tuple(r) for r in await conn.fetch(
            "SELECT dateref, accumulatedcredit::text FROM flow.balance ORDER BY dateref")] == days
        outbox = await conn.fetch("SELECT ids, tracekeys, codes FROM flow.callback_outbox")
        assert [tuple(r) for r in outbox] == [waiting]

        await conn.execute("DELETE FROM flow.outcome WHERE id = $1", rejected)
        await conn.execute("ALTER TABLE flow.outcome VALIDATE CONSTRAINT outcome_dateref_present")
        assert await _validated(conn, "outcome_dateref_present")
    finally:
        await conn.close()


async def test_an_upgrade_with_every_dateref_recoverable_validates_the_check(stack, tmp_path):
    url = await _database_before_0010(stack, tmp_path)
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await _outcome(conn, "R021", DAY)
        await apply_migrations(url, ROOT / "sql")
        assert await _validated(conn, "outcome_dateref_present")
    finally:
        await conn.close()
