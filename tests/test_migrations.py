"""The schema runner: applies each numbered script once, and refuses to run over edited history."""

import json
import os
import shutil
import subprocess
import sys
import uuid

import asyncpg
import pytest

from flow_engine.outcome import Outcome
from flow_rules.codes import Code
from flow_kit.migrations import MigrationError, apply_migrations, asyncpg_dsn
from tools.devstack.stack import ROOT


@pytest.fixture
def sql_dir(tmp_path):
    target = tmp_path / "sql"
    shutil.copytree(ROOT / "sql", target)
    return target


async def test_applied_scripts_are_not_run_again_and_new_ones_are(fresh_database, sql_dir):
    assert await apply_migrations(fresh_database, sql_dir) == []
    (sql_dir / "9999_extra.sql").write_text("CREATE TABLE flow.extra (id int);")
    assert await apply_migrations(fresh_database, sql_dir) == ["9999_extra.sql"]
    assert await apply_migrations(fresh_database, sql_dir) == []


async def test_an_edited_script_stops_the_runner(fresh_database, sql_dir):
    script = sorted(sql_dir.glob("0001_*.sql"))[0]
    script.write_text(script.read_text() + "\n-- edited\n")
    (sql_dir / "9999_extra.sql").write_text("CREATE TABLE flow.extra (id int);")
    with pytest.raises(MigrationError, match="edited"):
        await apply_migrations(fresh_database, sql_dir)
    done = subprocess.run([sys.executable, "-m", "flow_kit.migrations", "--database-url", fresh_database,
                           "--sql-dir", str(sql_dir)], capture_output=True, text=True)
    assert done.returncode == 2 and "edited" in done.stderr


async def test_a_removed_script_or_a_badly_named_one_stops_the_runner(fresh_database, sql_dir):
    (sql_dir / "extra.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="0001_description.sql"):
        await apply_migrations(fresh_database, sql_dir)
    (sql_dir / "extra.sql").unlink()
    sorted(sql_dir.glob("0001_*.sql"))[0].unlink()
    with pytest.raises(MigrationError, match="gone"):
        await apply_migrations(fresh_database, sql_dir)


async def test_a_failing_script_leaves_nothing_behind(fresh_database, sql_dir):
    (sql_dir / "9998_half.sql").write_text("CREATE TABLE flow.half (id int); SELECT * FROM flow.no_such_table;")
    with pytest.raises(Exception, match="no_such_table"):
        await apply_migrations(fresh_database, sql_dir)
    (sql_dir / "9998_half.sql").write_text("CREATE TABLE flow.half (id int);")
    assert await apply_migrations(fresh_database, sql_dir) == ["9998_half.sql"]


async def test_callbacks_waiting_in_the_outbox_survive_the_move_to_arrays(stack, sql_dir):
    """0005 turns the outbox's JSON rows into arrays: a callback queued before the upgrade is still
    relayed after it, with the same facts (so the same messageid)."""
    server = stack.database_url.rsplit("/", 1)[0]
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(asyncpg_dsn(f"{server}/postgres"))
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = f"{server}/{name}"
    later = [path for path in sql_dir.glob("*.sql") if path.name >= "0005"]
    held = {path: path.read_text() for path in later}
    for path in later:
        path.unlink()
    await apply_migrations(url, sql_dir)

    queued = [Outcome(uuid.uuid4(), uuid.uuid4(), Code.APPLIED), Outcome(uuid.uuid4(), uuid.uuid4(), Code.EVENT_INACTIVE)]
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute("INSERT INTO flow.callback_outbox (callbacks) VALUES ($1), ('[]')",
                           json.dumps([o.callback() for o in queued]))
        for path, text in held.items():
            path.write_text(text)
        assert "0005_lean_engine_writes.sql" in await apply_migrations(url, sql_dir)
        rows = await conn.fetch("SELECT ids, tracekeys, codes FROM flow.callback_outbox")
        assert [list(zip(r["ids"], r["tracekeys"], map(Code, r["codes"]))) for r in rows] == \
            [[(o.id, o.tracekey, o.code) for o in queued]]
    finally:
        await conn.close()


async def test_an_event_is_never_deleted_nor_renumbered(fresh_database):
    """flow.transaction keeps no foreign key to the catalogue (its per-row check cost every posting a
    lock on the event row): the catalogue refuses to lose an event instead."""
    conn = await asyncpg.connect(asyncpg_dsn(fresh_database))
    try:
        for statement in ("DELETE FROM flow.event WHERE code = 1", "UPDATE flow.event SET code = 77 WHERE code = 1",
                          "TRUNCATE flow.event"):
            with pytest.raises(asyncpg.RestrictViolationError, match="never deleted"):
                await conn.execute(statement)
        await conn.execute("UPDATE flow.event SET active = false WHERE code = 1")  # deactivating is fine
    finally:
        await conn.close()


def test_the_runner_takes_the_database_url_from_the_environment_not_the_command_line(fresh_database, sql_dir):
    done = subprocess.run([sys.executable, "-m", "flow_kit.migrations", "--sql-dir", str(sql_dir)],
                          capture_output=True, text=True, env={**os.environ, "FLOW_DATABASE_URL": fresh_database})
    assert (done.returncode, done.stdout.strip()) == (0, "flow-migrate: 0 script(s) applied")
    bare = {k: v for k, v in os.environ.items() if k != "FLOW_DATABASE_URL"}
    done = subprocess.run([sys.executable, "-m", "flow_kit.migrations", "--sql-dir", str(sql_dir)],
                          capture_output=True, text=True, env=bare)
    assert done.returncode == 2 and "FLOW_DATABASE_URL" in done.stderr
