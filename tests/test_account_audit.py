"""The account registry's audit trail (flow.account_audit, sql/0012) in the database: every change leaves
one row naming who made it, what it changed and why, whoever writes flow.account; the engine writes
nothing there; the application's role cannot rewrite the trail."""

import json
import uuid
from decimal import Decimal

import asyncpg
import pytest
from sqlalchemy import text

from flow_engine.apply import apply_batch
from flow_ingest.accounts import AccountRegistry
from flow_kit.db import create_engine
from flow_kit.errors import FlowError
from flow_rules.codes import Code
from tests.app_role import connected_as_app_role
from tests.engine_helpers import posting

_TRAIL = text("""SELECT change, callersub, callerclient, tracekey, reason, before, after FROM flow.account_audit
                 WHERE branch = :branch AND account = :account ORDER BY id""")


@pytest.fixture
async def db(fresh_database):
    engine = create_engine(fresh_database, 2)
    yield engine
    await engine.dispose()


async def _trail(db, account: str, branch: str = "0001") -> list[tuple]:
    async with db.connect() as conn:
        return [tuple(row) for row in (await conn.execute(_TRAIL, {"branch": branch, "account": account})).all()]


async def test_the_admin_api_names_its_caller_and_change_and_the_engine_writes_nothing(db):
    admin = ("alice", "console")
    async with db.begin() as conn:  # opened by its first posting: the engine writes no registry row
        [outcome] = await apply_batch(conn, [posting("A1", "5.00", "C")], 7)
    assert outcome.code is Code.APPLIED and await _trail(db, "A1") == []

    accounts = AccountRegistry(db)
    blocked = await accounts.block("0001", "A1", debits=True, credits=False, reason="court order", caller=admin)
    with pytest.raises(FlowError):  # refused (a balance of 5.00): nothing changes, nothing is audited
        await accounts.close("0001", "A1", reason="left", caller=admin)
    changed = await accounts.change("0001", "A1", limit=Decimal("12.50"))  # authentication disabled: nobody named
    trail = await _trail(db, "A1")
    registry = {"status": "active", "blockdebit": False, "blockcredit": False, "overdraftlimit": None, "holder": None}
    assert trail == [
        ("open", "alice", "console", uuid.UUID(blocked.tracekey), None, None, registry),
        ("block", "alice", "console", uuid.UUID(blocked.updatetracekey), "court order",
         {"status": "active", "blockdebit": False}, {"status": "blocked", "blockdebit": True}),
        ("change", None, None, uuid.UUID(changed.updatetracekey), None, {"overdraftlimit": None},
         {"overdraftlimit": 12.5}),
    ]
    async with db.connect() as conn:  # money kept exactly, as its column holds it
        assert (await conn.execute(text("SELECT after->>'overdraftlimit' FROM flow.account_audit "
                                        "WHERE account = 'A1' AND change = 'change'"))).scalar() == "12.50"


async def test_changes_outside_the_admin_api_are_audited_too(db):
    async with db.begin() as conn:
        await conn.execute(text("INSERT INTO flow.account (branch, account, tracekey, updatetracekey) "
                                "VALUES ('0001', 'S1', gen_random_uuid(), gen_random_uuid()), "
                                "('0001', 'S2', gen_random_uuid(), gen_random_uuid())"))
        await conn.execute(text("UPDATE flow.account SET holder = 'by hand', reason = 'ticket 7' "
                                "WHERE account = 'S1'"))
        await conn.execute(text("DELETE FROM flow.account WHERE account = 'S1'"))
    async with db.begin() as conn:
        await conn.execute(text("TRUNCATE flow.account"))
    registry = {"status": "active", "blockdebit": False, "blockcredit": False, "overdraftlimit": None, "holder": None}
    trail = [(change, reason, before, after) for change, _, _, _, reason, before, after in await _trail(db, "S1")]
    assert trail == [("open", None, None, registry),
                     ("update", "ticket 7", {"holder": None}, {"holder": "by hand"}),
                     ("delete", None, {**registry, "holder": "by hand"}, None)]
    assert [(change, before) for change, _, _, _, _, before, _ in await _trail(db, "S2")] == \
        [("open", None), ("delete", registry)]  # truncated: recorded as deleted first


async def test_the_app_role_cannot_rewrite_the_account_trail(stack, fresh_database):
    """With flow_app's grants (SELECT, INSERT, UPDATE, DELETE on every table), on a database and a role
    of the test's own: its registry changes are audited; the trail is not rewritten, deleted nor truncated."""
    async with connected_as_app_role(stack, fresh_database) as conn:
        assert await conn.fetchval("SELECT has_table_privilege('flow.account_audit', 'SELECT, UPDATE, DELETE')")
        async with conn.transaction():
            await conn.execute("SELECT set_config('flow.caller_sub', 'alice', true), "
                               "set_config('flow.caller_client', 'console', true), "
                               "set_config('flow.account_change', 'block', true)")
            await conn.execute("INSERT INTO flow.account (branch, account, tracekey, updatetracekey) "
                               "VALUES ('0001', 'P1', gen_random_uuid(), gen_random_uuid())")
            await conn.execute("UPDATE flow.account SET status = 'blocked', blockcredit = true, reason = 'r' "
                               "WHERE account = 'P1'")
        rows = await conn.fetch("SELECT change, callersub, callerclient, reason, after FROM flow.account_audit "
                                "WHERE account = 'P1' ORDER BY id")
        assert [tuple(r)[:4] for r in rows] == [("open", "alice", "console", None),
                                                ("block", "alice", "console", "r")]
        assert json.loads(rows[1]["after"]) == {"status": "blocked", "blockcredit": True}
        for rewrite in ("UPDATE flow.account_audit SET callersub = 'mallory'", "DELETE FROM flow.account_audit",
                        "TRUNCATE flow.account_audit"):
            with pytest.raises(asyncpg.PostgresError, match="append-only|permission denied"):
                await conn.execute(rewrite)
        assert await conn.fetchval("SELECT count(*) FROM flow.account_audit WHERE account = 'P1'") == 2
