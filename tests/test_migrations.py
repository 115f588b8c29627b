"""The schema runner: applies each numbered script once, and refuses to run over edited history."""

import shutil
import subprocess
import sys

import pytest

from flow_kit.migrations import MigrationError, apply_migrations
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
